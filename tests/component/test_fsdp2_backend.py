"""FSDP2 over 2 CPU processes (gloo) against the one-process torch backend on the same tiny runs: SFT
on a causal LM, and a critic's and reward model's loss on a sequence-classification model (whose
forward the backend's hooks must see, models/forward.py). SFT log-probs go through the chunked LM head
(models/chunked_head.py) 8 tokens at a time, so its backward, which reads the output layer's weight after
the forward, runs on sharded models too.

Each worker takes half of every step's batch (the caller's data-parallel split) in micro-batches of 2;
the loss is summed over the GLOBAL token (or sample) count of the step, so the workers' gradients must
add up to the one-process gradient. Tolerances:
- first-step loss: 1e-6 (same weights, same micro-batches: only the order the partial sums are added);
- later losses, grad norms and final weights: 1e-4 (the summed gradients differ from the one-process
  accumulation in reduction order, ~1e-7 relative, and AdamW's first steps magnify that: its update is
  about lr * sign(grad) where a gradient is tiny). Measured on CPU: first loss equal, later losses within
  2e-7, grad norms 2e-6, weights 1e-7.
Resume: state saved after step 1 and restored into fresh workers continues with the same losses (1e-6).
Checkpoints are backend-neutral: the workers' checkpoint loads into the one-process torch backend, and
the torch run's into the workers, with weights and optimizer state equal to the saved ones (exactly)
and the later steps of the torch run (1e-4).
"""

from __future__ import annotations

import contextlib
import copy
import datetime
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from alignkit.algos.losses.sft import sft_loss
from alignkit.backends.base import LossFn
from alignkit.backends.distributed import all_reduce_metrics
from alignkit.backends.factory import ONE_PROCESS, build_backend
from alignkit.config.schema import BackendConfig, ModelConfig, TrainConfig
from alignkit.data.packing import pack
from alignkit.data.samples import TokenizedSample
from alignkit.models.forward import causal_logprobs, reward_scores, token_values
from alignkit.models.load import load_causal_lm, load_reward_model

STEPS = 3
WORKERS = 2
BATCH = 8
MICRO = 2
CPU = torch.device("cpu")
TRAIN = TrainConfig(lr=1e-3, warmup_ratio=0.0, min_lr_ratio=0.1, weight_decay=0.01, max_grad_norm=1.0)
TORCH_CKPT = "torch_ckpt.pt"  # the one-process run's checkpoint after step 1, for the workers to resume


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


def sft_loss_fn(step_samples: list[TokenizedSample]) -> LossFn:
    """Summed token NLL of a micro-batch over the target tokens of the WHOLE step (all workers')."""
    denom = float(sum(sum(s.loss_mask[1:]) for s in step_samples))  # a sample's first token is no target
    return lambda model, batch: sft_loss(causal_logprobs(model, batch), batch.loss_mask, denom)


def head_loss_fn(step_samples: list[TokenizedSample]) -> LossFn:
    """A critic's loss (squared error of every target token's value) plus a reward model's (of each
    sample's score), over the WHOLE step's target tokens and samples."""
    tokens = float(sum(sum(s.loss_mask[1:]) for s in step_samples))
    samples = float(len(step_samples))

    def loss_fn(model, batch):
        value = ((token_values(model, batch) - 1.0) ** 2 * batch.loss_mask).sum() / tokens
        score = ((reward_scores(model, batch) + 1.0) ** 2).sum() / samples
        return value + score, {"value_loss": value.detach(), "score_loss": score.detach()}

    return loss_fn


LossFactory = Callable[[list[TokenizedSample]], LossFn]


def run_steps(backend, ranks: list[int], steps: range, combine, loss: LossFactory = sft_loss_fn,
              device: torch.device = CPU) -> list[dict[str, float]]:
    """Train `steps`, running the micro-batches of `ranks` here (on `device`); `combine` adds the workers'
    metrics."""
    out = []
    for step in steps:
        batch = step_batch(step)
        fn = loss(batch)
        metrics: dict[str, float] = {}
        for r in ranks:
            for part in worker_micro_batches(batch, r):
                for k, v in backend.forward_backward(pack(part, pad_id=0).to(device), fn).items():
                    metrics[k] = metrics.get(k, 0.0) + v
        out.append(combine(metrics) | backend.step())
    return out


def load(model_dir: str) -> torch.nn.Module:
    # Log-probs 8 tokens at a time (models/chunked_head.py): a micro-batch spans several chunks, whose
    # backward reads the output layer's weight outside the forward (gathered again under ZeRO-3).
    return load_causal_lm(ModelConfig(path=model_dir, logprob_chunk_tokens=8), CPU)


def load_value_model(model_dir: str) -> torch.nn.Module:
    """The causal LM body with a new scalar head, initialised alike in every process."""
    torch.manual_seed(0)
    return load_reward_model(ModelConfig(path=model_dir), CPU)


def checkpoint(backend) -> dict[str, Any]:
    """What a checkpoint holds of a trained role (collective; full on rank 0). A copy: one process's
    optimizer state holds the live moments, as `torch.optim.Optimizer.state_dict` does."""
    return copy.deepcopy({"state": backend.state_dict(), "weights": backend.trainable_weights()})


def resumed_from(ckpt: dict[str, Any], model_dir: str, backend_cfg: BackendConfig):
    """A fresh backend restored from `ckpt` as `TrainedRole.load_checkpoint_state` restores one."""
    backend = build_backend(load(model_dir), TRAIN, STEPS, CPU, backend_cfg)
    backend.load_full_weights(ckpt["weights"])
    backend.load_state_dict(ckpt["state"])
    return backend


def checkpoint_mismatch(got: dict[str, Any], want: dict[str, Any]) -> list[str]:
    """Names of the weights, moments and steps that differ between two checkpoints (bit-exactly), and
    of the lr of any param group."""
    bad = [n for n, t in want["weights"].items() if not torch.equal(got["weights"][n], t)]
    got_state, want_state = got["state"]["optimizer"]["state"], want["state"]["optimizer"]["state"]
    for name, moments in want_state.items():
        bad += [f"{name}:{k}" for k, t in moments.items() if not torch.equal(got_state[name][k], t)]
    groups = zip(got["state"]["optimizer"]["param_groups"], want["state"]["optimizer"]["param_groups"], strict=True)
    return bad + [f"group{i}:lr" for i, (g, w) in enumerate(groups) if g["lr"] != w["lr"]]


def init_group(rank: int, init_file: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORKERS,
                            timeout=datetime.timedelta(seconds=60))


def sharded_worker(rank: int, init_file: str, model_dir: str, out: str, backend_cfg: BackendConfig) -> None:
    """One worker: 3 SFT steps saving a checkpoint after the first, then fresh workers resumed from it and
    from the one-process run's checkpoint."""
    init_group(rank, init_file)
    try:
        backend = build_backend(load(model_dir), TRAIN, STEPS, CPU, backend_cfg)
        first = run_steps(backend, [rank], range(1), all_reduce_metrics)
        ckpt = checkpoint(backend)
        if rank == 0:
            torch.save(ckpt, Path(out) / "ckpt.pt")
        rest = run_steps(backend, [rank], range(1, STEPS), all_reduce_metrics)
        weights = {n: t.detach().clone() for n, t in backend.full_weights()}
        dist.barrier()  # rank 0 has written the checkpoint

        resumed = resumed_from(torch.load(Path(out) / "ckpt.pt", weights_only=False), model_dir, backend_cfg)
        again = run_steps(resumed, [rank], range(1, STEPS), all_reduce_metrics)
        torch_ckpt = torch.load(Path(out) / TORCH_CKPT, weights_only=False)
        from_torch = resumed_from(torch_ckpt, model_dir, backend_cfg)
        reloaded = checkpoint(from_torch)  # what the workers hold after loading it, gathered on rank 0
        mismatch = checkpoint_mismatch(reloaded, torch_ckpt) if rank == 0 else []
        continued = run_steps(from_torch, [rank], range(1, STEPS), all_reduce_metrics)
        torch.save({"metrics": first + rest, "resumed": again, "weights": weights, "from_torch": continued,
                    "from_torch_mismatch": mismatch}, Path(out) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def value_worker(rank: int, init_file: str, model_dir: str, out: str, backend_cfg: BackendConfig) -> None:
    """One worker: 3 steps of the critic + reward-model loss on the sequence-classification model."""
    init_group(rank, init_file)
    try:
        backend = build_backend(load_value_model(model_dir), TRAIN, STEPS, CPU, backend_cfg)
        metrics = run_steps(backend, [rank], range(STEPS), all_reduce_metrics, head_loss_fn)
        weights = {n: t.detach().clone() for n, t in backend.full_weights()}
        torch.save({"metrics": metrics, "weights": weights}, Path(out) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def spawn(worker, tmp: Path, model_dir: Path, backend_cfg: BackendConfig, timeout_s: float = 240.0) -> list[dict]:
    """Run `worker` in WORKERS processes; fail (never hang) past `timeout_s`. Returns each rank's results."""
    ctx = mp.start_processes(worker, args=(str(tmp / "pg"), str(model_dir), str(tmp), backend_cfg),
                             nprocs=WORKERS, join=False, start_method="spawn")
    deadline = time.monotonic() + timeout_s
    while not ctx.join(timeout=max(deadline - time.monotonic(), 0.0)):
        if time.monotonic() >= deadline:
            for p in ctx.processes:
                p.kill()
            pytest.fail(f"{backend_cfg.backend} workers did not finish within {timeout_s:.0f} s")
    return [torch.load(tmp / f"rank{r}.pt", weights_only=False) for r in range(WORKERS)]


@dataclass
class Reference:
    """The one-process torch run: its per-step metrics, final weights and checkpoint after step 1."""

    metrics: list[dict[str, float]]
    weights: dict[str, torch.Tensor]
    checkpoint: dict[str, Any] | None = None


def spawn_workers(tmp: Path, model_dir: Path, backend_cfg: BackendConfig, reference: Reference) -> list[dict]:
    """The SFT run on WORKERS processes (`sharded_worker`), given the reference run's checkpoint."""
    torch.save(reference.checkpoint, tmp / TORCH_CKPT)
    return spawn(sharded_worker, tmp, model_dir, backend_cfg)


def reference_run(model_dir: Path) -> Reference:
    """One process, the whole batch: the same micro-batches, all run here."""
    backend = build_backend(load(str(model_dir)), TRAIN, STEPS, CPU)
    metrics = run_steps(backend, list(range(WORKERS)), range(1), dict)
    ckpt = checkpoint(backend)
    metrics += run_steps(backend, list(range(WORKERS)), range(1, STEPS), dict)
    return Reference(metrics, {n: t.detach().clone() for n, t in backend.full_weights()}, ckpt)


def value_reference_run(model_dir: Path) -> Reference:
    backend = build_backend(load_value_model(str(model_dir)), TRAIN, STEPS, CPU)
    metrics = run_steps(backend, list(range(WORKERS)), range(STEPS), dict, head_loss_fn)
    return Reference(metrics, {n: t.detach().clone() for n, t in backend.full_weights()})


@pytest.fixture(scope="module")
def runs(tiny_dir, tmp_path_factory) -> tuple[Path, list[dict], Reference]:
    """(the workers' folder, each worker's results, the one-process run)."""
    tmp, reference = tmp_path_factory.mktemp("fsdp2"), reference_run(tiny_dir)
    return tmp, spawn_workers(tmp, tiny_dir, BackendConfig(backend="fsdp2"), reference), reference


SFT_KEYS = ("loss", "nll", "grad_norm", "lr")
HEAD_KEYS = ("loss", "value_loss", "score_loss", "grad_norm", "lr")


def assert_matches(sharded: list[dict], reference: Reference, first_tol: float, tol: float, keys=SFT_KEYS) -> None:
    for result in sharded:
        metrics = result["metrics"]
        assert abs(metrics[0]["loss"] - reference.metrics[0]["loss"]) <= first_tol
        for got, want in zip(metrics, reference.metrics, strict=True):
            for key in keys:
                assert got[key] == pytest.approx(want[key], abs=tol), key
        assert result["weights"].keys() == reference.weights.keys()
        for name, tensor in result["weights"].items():
            torch.testing.assert_close(tensor, reference.weights[name], rtol=0, atol=tol, msg=name)


def assert_same_steps(got: list[dict[str, float]], want: list[dict[str, float]], tol: float) -> None:
    for g, w in zip(got, want, strict=True):
        for key in ("loss", "grad_norm", "lr"):
            assert g[key] == pytest.approx(w[key], abs=tol), key


def assert_resumes(sharded: list[dict], reference: Reference, tmp: Path, model_dir: Path) -> None:
    """The run restored from the state saved after step 1 repeats the uninterrupted steps 2 and 3; the
    workers' checkpoint (in `tmp`) and the one-process run's load into each other's backend, bit-equal,
    and continue as the one-process run did."""
    for result in sharded:
        assert_same_steps(result["resumed"], result["metrics"][1:], 1e-6)
        assert_same_steps(result["from_torch"], reference.metrics[1:], 1e-4)
    assert sharded[0]["from_torch_mismatch"] == []
    saved = torch.load(tmp / "ckpt.pt", weights_only=False)
    on_torch = resumed_from(saved, str(model_dir), ONE_PROCESS)
    assert checkpoint_mismatch(checkpoint(on_torch), saved) == []
    assert_same_steps(run_steps(on_torch, list(range(WORKERS)), range(1, STEPS), dict), reference.metrics[1:], 1e-4)


def test_fsdp2_matches_the_torch_backend(runs):
    _, sharded, reference = runs
    assert_matches(sharded, reference, first_tol=1e-6, tol=1e-4)


def test_fsdp2_workers_agree_on_step_metrics(runs):
    _, sharded, _ = runs
    assert sharded[0]["metrics"] == sharded[1]["metrics"]


def test_fsdp2_checkpoints_resume_on_any_backend(runs, tiny_dir):
    tmp, sharded, reference = runs
    assert_resumes(sharded, reference, tmp, tiny_dir)


def test_fsdp2_value_and_reward_model_match_the_torch_backend(tiny_dir, tmp_path):
    # The critic's and reward model's forward runs through the sharded root: its hooks gather the
    # embeddings, final norm and score head, which a direct call on the backbone left sharded.
    sharded = spawn(value_worker, tmp_path, tiny_dir, BackendConfig(backend="fsdp2"))
    assert sharded[0]["metrics"] == sharded[1]["metrics"]
    assert_matches(sharded, value_reference_run(tiny_dir), first_tol=1e-6, tol=1e-4, keys=HEAD_KEYS)


@contextlib.contextmanager
def group_of_one(device: torch.device, tmp: Path) -> Iterator[None]:
    """This process alone in a process group: NCCL on a GPU, gloo on the CPU."""
    if device.type == "cuda":
        torch.cuda.set_device(device.index or 0)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", init_method=f"file://{tmp / 'pg1'}",
                            rank=0, world_size=1, timeout=datetime.timedelta(seconds=60))
    try:
        yield
    finally:
        dist.destroy_process_group()


def whole_batch_run(model_dir: Path, device: torch.device, backend_cfg: BackendConfig) -> Reference:
    """Every micro-batch of every step in this process, on `device`; the final weights on the CPU."""
    backend = build_backend(load_causal_lm(ModelConfig(path=str(model_dir)), device), TRAIN, STEPS, device,
                            backend_cfg)
    metrics = run_steps(backend, list(range(WORKERS)), range(STEPS), dict, device=device)
    return Reference(metrics, {n: t.detach().cpu().clone() for n, t in backend.full_weights()})


def test_fsdp2_in_a_group_of_one_matches_the_torch_backend(tiny_dir, device, tmp_path):
    # Under `pytest --device cuda` this is FSDP2 over NCCL (bench/gpu); on the CPU, over gloo.
    want = whole_batch_run(tiny_dir, device, ONE_PROCESS)
    with group_of_one(device, tmp_path):
        got = whole_batch_run(tiny_dir, device, BackendConfig(backend="fsdp2"))
    assert_matches([{"metrics": got.metrics, "weights": got.weights}], want, first_tol=1e-6, tol=1e-4)
