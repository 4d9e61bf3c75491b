"""SFT through torchrun with one process and a sharded backend, on the kit's model in the setting's dtype:
`--backend fsdp2` (FSDP2 over NCCL on the GPU, gloo on the CPU) or `--backend deepspeed` (ZeRO-2; skipped
where DeepSpeed is not installed). The RL command has no torchrun launch (its sharded backends run on the
Ray executor), so the supervised trainer carries this check. Figures: each step's loss and tokens/s, the
run's wall time (start-up and export included), and whether the final weights were exported."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
import time

from partlib import REPO, Args, child_env, model_dir, part_main, step_rows


def options(p) -> None:
    p.add_argument("--backend", required=True, choices=("fsdp2", "deepspeed"))


def run(a: Args) -> dict:
    from alignkit.data.synth import make_records, write_jsonl

    s = a.setting
    if a.backend == "deepspeed" and importlib.util.find_spec("deepspeed") is None:
        reason = "DeepSpeed is not installed (scripts/gpu_wheels.sh builds its wheel into .whl/)"
        return {"status": "skipped", "reason": reason, "summary": reason, "figures": {}}
    out = a.work / f"sft_{a.backend}"
    shutil.rmtree(out, ignore_errors=True)  # a rerun on a warm machine starts afresh
    data = a.work / "sft.jsonl"
    write_jsonl(make_records("arithmetic", "sft", s.sft_batch * s.sft_steps, 0), data)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1",
           "-m", "alignkit.cli", "sft", "--model.path", str(model_dir(a.work)), "--data.train_files", str(data),
           "--output_dir", str(out), "--train.max_steps", str(s.sft_steps), "--train.batch_size", str(s.sft_batch),
           "--train.micro_batch_size", str(s.sft_micro_batch), "--data.max_length", "64", "--train.lr", "1e-5",
           "--model.dtype", s.dtype, "--train.device", a.device, "--policy.backend", a.backend,
           "--logging.progress", "false"]
    if a.backend == "deepspeed":
        cmd += ["--policy.zero_stage", "2"]
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=REPO, env=child_env(DS_ACCELERATOR=a.device))
    wall = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(f"torchrun sft --policy.backend {a.backend} exited with {done.returncode}")
    rows = step_rows(out)
    figures = {"losses": [r["loss"] for r in rows], "tokens_per_s": [r.get("tokens_per_s") for r in rows],
               "wall_s": wall, "exported": any((out / "final").glob("*.safetensors"))}
    name = "ZeRO-2" if a.backend == "deepspeed" else "FSDP2"
    losses = ", ".join(f"{x:.4f}" for x in figures["losses"])
    return {"figures": figures, "summary": f"{name}, 1 process: {len(rows)} steps, loss {losses}, "
                                           f"{'exported' if figures['exported'] else 'NOT exported'}, {wall:.0f} s"}


if __name__ == "__main__":
    part_main(run, options)
