"""Plots of a run (`alignkit report RUN_DIR`, and written after every rl run): report.png."""

from __future__ import annotations

from pathlib import Path

from alignkit.errors import AlignkitError
from alignkit.metrics.logger import read_metrics

PANELS = [
    ("reward", ["reward/mean", "eval_reward"]),
    ("KL to reference", ["kl"]),
    ("KL to teacher", ["kl/forward", "kl/reverse", "eval_kl/forward", "eval_kl/reverse"]),
    ("response length", ["response_length/mean", "response_length/max"]),
    ("entropy", ["entropy"]),
    ("loss", ["loss", "eval_loss"]),
    ("accuracy", ["accuracy", "eval_accuracy", "reward_acc", "eval_reward_acc"]),
]


def write_report(run_dir: str | Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")  # no display: files only
    import matplotlib.pyplot as plt

    run_dir = Path(run_dir)
    if not (run_dir / "metrics.jsonl").is_file():
        raise AlignkitError(f"{run_dir} has no metrics.jsonl: not a run directory")
    rows = read_metrics(run_dir)
    panels = [(t, [k for k in keys if any(r.get(k) is not None for r in rows)]) for t, keys in PANELS]
    panels = [(t, keys) for t, keys in panels if keys]
    if not panels:
        raise AlignkitError(f"{run_dir}/metrics.jsonl has no metrics to plot")
    fig, axes = plt.subplots(len(panels), 1, figsize=(7, 2.4 * len(panels)), sharex=True, squeeze=False)
    for ax, (title, keys) in zip(axes[:, 0], panels, strict=True):
        for k in keys:
            pts = [(r["step"], r[k]) for r in rows if r.get(k) is not None]
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o" if len(pts) < 30 else None, ms=3, label=k)
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[-1, 0].set_xlabel("step")
    fig.suptitle(run_dir.name)
    fig.tight_layout()
    out = run_dir / "report.png"
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out
