"""Plain-text report of a planning run."""

from __future__ import annotations

from alignkit.planner.hardware import GIB
from alignkit.planner.planning import PlanOutcome


def _table(rows: list[list[str]], right: set[int]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    out = []
    for k, r in enumerate(rows):
        cells = [
            c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))
        ]
        out.append("  ".join(cells).rstrip())
        if k == 0:
            out.append("  ".join("-" * w for w in widths))
    return out


def _params(n: int) -> str:
    return f"{n / 1e9:.2f}B" if n >= 1e9 else f"{n / 1e6:.0f}M"


def render(outcome: PlanOutcome, model_labels: dict[str, str] | None = None) -> str:
    p, sched, res = outcome.problem, outcome.schedule, outcome.result
    g, w, e = p.graph, p.graph.workload, p.eff
    labels = model_labels or {}
    lines = [
        f"alignkit plan: {g.algo.upper()} on {p.cluster.describe()}; {w.batch} prompts x {w.group_size} "
        f"sample(s), {w.prompt_len} prompt + {w.gen_len} generated tokens, {w.minibatches} minibatch(es)"
        f" x {w.epochs} epoch(s) per train call",
        "models: " + ", ".join(
            f"{name} {labels.get(name, m.name)} ({_params(m.n_params)}{'' if m.lm_head else ', value head'})"
            for name, m in g.models.items()
        ),
        f"efficiency ({e.source}): compute {e.compute:.2f}, attention {e.attention:.2f}, memory "
        f"{e.memory:.2f}, comm {e.comm:.2f}, overhead {e.overhead_s * 1e3:.2f} ms per forward pass",
        "",
        f"Chosen plan ({res.method}: {res.evaluations:,} plans scored in {res.seconds:.1f} s; search space "
        f"{p.space_size:.2g} plans; costing {outcome.build_seconds:.1f} s)",
    ]  # fmt: skip
    rows = [["call", "devices", "strategy", "start s", "end s", "time s", "mem GiB/dev"]]
    for ev in sched.events:
        if ev.kind == "call":
            c = g.index(ev.name)
            strat = p.strategy_of(c, res.choice[c]).label()
            mem = f"{sched.call_memory[c] / GIB:.1f}"
        else:
            strat, mem = "(weight move)", ""
        rows.append([
            ev.name, ",".join(m.label() for m in ev.meshes), strat,
            f"{ev.start:.2f}", f"{ev.end:.2f}", f"{ev.end - ev.start:.2f}", mem,
        ])  # fmt: skip
    lines += _table(rows, {3, 4, 5, 6})
    worst = max(range(len(sched.peak_memory)), key=lambda d: sched.peak_memory[d])
    lines += [
        "",
        f"peak memory: {sched.peak_memory[worst] / GIB:.1f} GiB on device {worst} "
        f"(usable {p.usable_memory / GIB:.1f} GiB per device)",
        "critical path: " + " -> ".join(sched.critical_path),
        f"estimated seconds per iteration: {sched.makespan:.2f}",
        "",
        "Heuristic baselines (same cost model; each tuned within its placement rule)",
    ]
    rows = [["baseline", "placement", "s/iter", "plan speed-up"]]
    for b in outcome.baselines:
        if b.result is None or not b.result.feasible:
            rows.append([b.name, f"n/a: {b.note}", "-", "-"])
            continue
        rows.append([b.name, b.description, f"{b.result.makespan:.2f}", f"{outcome.speedup_over(b):.2f}x"])
    lines += _table(rows, {2, 3})
    return "\n".join(lines) + "\n"
