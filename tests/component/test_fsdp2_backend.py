"""FSDP2 over 2 CPU processes (gloo) against the one-process torch backend on the same tiny SFT run.

Each worker takes half of every step's batch (the caller's data-parallel split) in micro-batches of 2;
the loss is summed token NLL over the GLOBAL token count of the step, so the workers' gradients must
add up to the one-process gradient. Tolerances:
- first-step loss: 1e-6 (same weights, same micro-batches: only the order the partial sums are added);
- later losses, grad norms and final weights: 1e-4 (the summed gradients differ from the one-process
  accumulation in reduction order, ~1e-7 relative, and AdamW's first steps magnify that: its update is
  about lr * sign(grad) where a gradient is tiny). Measured on CPU: first loss equal, later losses within
  2e-7, grad norms 2e-6, weights 1e-7.
Resume: state saved after step 1 and restored into fresh workers continues with the same losses (1e-6).
"""

from __future__ import annotations

import datetime
import random
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from alignkit.algos.losses.sft import sft_loss
from alignkit.backends.distributed import all_reduce_metrics
from alignkit.backends.factory import build_backend
from alignkit.backends.torch_local import TorchBackend
from alignkit.config.schema import BackendConfig, ModelConfig, TrainConfig
from alignkit.data.packing import pack
from alignkit.data.samples import TokenizedSample
from alignkit.models.forward import causal_logprobs
from alignkit.models.load import load_causal_lm

STEPS = 3
WORKERS = 2
BATCH = 8
MICRO = 2
CPU = torch.device("cpu")
TRAIN = TrainConfig(lr=1e-3, warmup_ratio=0.0, min_lr_ratio=0.1, weight_decay=0.01, max_grad_norm=1.0)


def step_batch(step: int) -> list[TokenizedSample]:
    """The step's batch: BATCH sequences of 6..14 tokens, the first 3 a prompt (not targets)."""
    rng = random.Random(1000 + step)
    out = []
    for _ in range(BATCH):
        n = rng.randint(6, 14)
        out.append(TokenizedSample([rng.randrange(5, 500) for _ in range(n)], [0] * 3 + [1] * (n - 3), "test"))
    return out


def worker_micro_batches(samples: list[TokenizedSample], rank: int) -> list[list[TokenizedSample]]:
    """Worker `rank`'s share of the step (every WORKERS-th sample), in micro-batches of MICRO."""
    mine = samples[rank::WORKERS]
    return [mine[i : i + MICRO] for i in range(0, len(mine), MICRO)]


def sft_loss_fn(step_samples: list[TokenizedSample]):
    """Summed token NLL of a micro-batch over the target tokens of the WHOLE step (all workers')."""
    denom = float(sum(sum(s.loss_mask[1:]) for s in step_samples))  # a sample's first token is no target
    return lambda model, batch: sft_loss(causal_logprobs(model, batch), batch.loss_mask, denom)


def run_steps(backend, ranks: list[int], steps: range, combine) -> list[dict[str, float]]:
    """Train `steps`, running the micro-batches of `ranks` here; `combine` adds the workers' metrics."""
    out = []
    for step in steps:
        batch = step_batch(step)
        fn = sft_loss_fn(batch)
        metrics: dict[str, float] = {}
        for r in ranks:
            for part in worker_micro_batches(batch, r):
                for k, v in backend.forward_backward(pack(part, pad_id=0), fn).items():
                    metrics[k] = metrics.get(k, 0.0) + v
        out.append(combine(metrics) | backend.step())
    return out


def load(model_dir: str) -> torch.nn.Module:
    return load_causal_lm(ModelConfig(path=model_dir), CPU)


def sharded_worker(rank: int, init_file: str, model_dir: str, out: str, backend_cfg: BackendConfig) -> None:
    """One worker: 3 steps saving the state after the first, then fresh workers resumed from it."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORKERS,
                            timeout=datetime.timedelta(seconds=60))
    try:
        backend = build_backend(load(model_dir), TRAIN, STEPS, CPU, backend_cfg)
        first = run_steps(backend, [rank], range(1), all_reduce_metrics)
        ckpt = {"state": backend.state_dict(), "weights": backend.trainable_weights()}
        if rank == 0:
            torch.save(ckpt, Path(out) / "ckpt.pt")
        rest = run_steps(backend, [rank], range(1, STEPS), all_reduce_metrics)
        weights = {n: t.detach().clone() for n, t in backend.full_weights()}
        dist.barrier()  # rank 0 has written the checkpoint

        resumed = build_backend(load(model_dir), TRAIN, STEPS, CPU, backend_cfg)
        saved = torch.load(Path(out) / "ckpt.pt", weights_only=False)
        resumed.load_full_weights(saved["weights"])
        resumed.load_state_dict(saved["state"])
        again = run_steps(resumed, [rank], range(1, STEPS), all_reduce_metrics)
        torch.save({"metrics": first + rest, "resumed": again, "weights": weights}, Path(out) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def spawn_workers(tmp: Path, model_dir: Path, backend_cfg: BackendConfig, timeout_s: float = 240.0) -> list[dict]:
    """Run `sharded_worker` in WORKERS processes; fail (never hang) past `timeout_s`. Returns each rank's
    results."""
    ctx = mp.start_processes(sharded_worker, args=(str(tmp / "pg"), str(model_dir), str(tmp), backend_cfg),
                             nprocs=WORKERS, join=False, start_method="spawn")
    deadline = time.monotonic() + timeout_s
    while not ctx.join(timeout=max(deadline - time.monotonic(), 0.0)):
        if time.monotonic() >= deadline:
            for p in ctx.processes:
                p.kill()
            pytest.fail(f"{backend_cfg.backend} workers did not finish within {timeout_s:.0f} s")
    return [torch.load(tmp / f"rank{r}.pt", weights_only=False) for r in range(WORKERS)]


def reference_run(model_dir: Path) -> tuple[list[dict[str, float]], dict[str, torch.Tensor]]:
    """One process, the whole batch: the same micro-batches, all run here."""
    backend = build_backend(load(str(model_dir)), TRAIN, STEPS, CPU)
    assert isinstance(backend, TorchBackend)
    metrics = run_steps(backend, list(range(WORKERS)), range(STEPS), dict)
    return metrics, {n: t.detach().clone() for n, t in backend.full_weights()}


@pytest.fixture(scope="module")
def runs(tiny_dir, tmp_path_factory):
    sharded = spawn_workers(tmp_path_factory.mktemp("fsdp2"), tiny_dir, BackendConfig(backend="fsdp2"))
    return sharded, reference_run(tiny_dir)


def assert_matches(sharded: list[dict], reference, first_tol: float, tol: float) -> None:
    ref_metrics, ref_weights = reference
    for result in sharded:
        metrics = result["metrics"]
        assert abs(metrics[0]["loss"] - ref_metrics[0]["loss"]) <= first_tol
        for got, want in zip(metrics, ref_metrics, strict=True):
            for key in ("loss", "nll", "grad_norm", "lr"):
                assert got[key] == pytest.approx(want[key], abs=tol), key
        assert result["weights"].keys() == ref_weights.keys()
        for name, tensor in result["weights"].items():
            torch.testing.assert_close(tensor, ref_weights[name], rtol=0, atol=tol, msg=name)


def assert_resumes(sharded: list[dict]) -> None:
    """The run restored from the state saved after step 1 repeats the uninterrupted steps 2 and 3."""
    for result in sharded:
        for got, want in zip(result["resumed"], result["metrics"][1:], strict=True):
            for key in ("loss", "grad_norm", "lr"):
                assert got[key] == pytest.approx(want[key], abs=1e-6), key


def test_fsdp2_matches_the_torch_backend(runs):
    sharded, reference = runs
    assert_matches(sharded, reference, first_tol=1e-6, tol=1e-4)


def test_fsdp2_workers_agree_on_step_metrics(runs):
    sharded, _ = runs
    assert sharded[0]["metrics"] == sharded[1]["metrics"]


def test_fsdp2_resume_from_state_dict_continues_the_run(runs):
    assert_resumes(runs[0])
