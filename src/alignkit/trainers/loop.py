"""The supervised training loop shared by SFT, reward models and the preference trainers.

An `Objective` says how samples become micro-batches and a loss; the loop owns everything else:
deterministic data order, gradient accumulation with a global denominator, evaluation, logging,
checkpoints and exact resume.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Sequence
from typing import Any, Generic, Protocol, TypeVar

from alignkit.backends.base import LossFn, TrainBackend
from alignkit.checkpoint.state import TrainerState, load_checkpoint, save_checkpoint
from alignkit.errors import AlignkitError
from alignkit.metrics.logger import MetricsLogger
from alignkit.metrics.progress import progress_bar, short
from alignkit.trainers.run import Run, config_dict

log = logging.getLogger("alignkit")

S = TypeVar("S")


class Objective(Protocol, Generic[S]):
    """How a trainer turns samples into micro-batches and a loss."""

    def collate(self, samples: Sequence[S]) -> Any:
        """Samples -> one micro-batch on the training device."""

    def denominator(self, samples: Sequence[S]) -> float:
        """What the step's loss is averaged over (tokens, pairs, ...), for the whole step."""

    def loss_fn(self, denom: float) -> LossFn:
        """The loss of one micro-batch, divided by the step's `denom`; its metrics add up over
        micro-batches to the step's means."""

    def n_tokens(self, batch: Any) -> int:
        """Non-padding tokens in a micro-batch (for tokens/s)."""


def plan_steps(n_train: int, batch_size: int, max_steps: int, epochs: int) -> tuple[int, int]:
    """(steps per epoch, total steps). The last partial batch of an epoch is dropped."""
    per_epoch = n_train // batch_size
    if per_epoch == 0:
        raise AlignkitError(f"{n_train} training samples are fewer than --train.batch_size {batch_size}")
    return per_epoch, (max_steps or per_epoch * epochs)


def epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    """The sample order of an epoch: a function of (seed, epoch) only, so resume needs no saved RNG."""
    order = list(range(n))
    random.Random(seed * 1_000_003 + epoch).shuffle(order)
    return order


def chunks(items: Sequence[S], size: int) -> list[Sequence[S]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def evaluate(backend: TrainBackend, objective: Objective, samples: Sequence, micro: int) -> dict[str, float]:
    denom = objective.denominator(samples)
    fn = objective.loss_fn(denom)
    total: dict[str, float] = {}
    for part in chunks(samples, micro):
        for k, v in backend.evaluate(objective.collate(part), fn).items():
            total[k] = total.get(k, 0.0) + v
    return {f"eval_{k}": v for k, v in total.items()}


def train_supervised(
    run: Run,
    backend: TrainBackend,
    objective: Objective,
    train: Sequence,
    evals: Sequence,
    total_steps: int,
) -> dict[str, float]:
    """Run to `total_steps`; returns the last logged metrics (eval included when there is eval data)."""
    cfg = run.cfg
    t = cfg.train
    per_epoch = len(train) // t.batch_size
    state = TrainerState()
    if run.resume_from is not None:
        state, backend_states = load_checkpoint(run.resume_from, {"model": backend.model})
        backend.load_state_dict(backend_states["model"])
        log.info("resumed from %s at step %d", run.resume_from, state.step)
    logger = MetricsLogger(run.dir, cfg.logging, state.step if run.resume_from else None, config_dict(cfg))
    bar = progress_bar(total_steps, state.step, run.dir.name, cfg.logging.progress)
    last: dict[str, float] = {}
    start = time.perf_counter()
    try:
        while state.step < total_steps:
            state.epoch, index = divmod(state.step, per_epoch)
            state.sample_offset = index * t.batch_size
            order = epoch_order(len(train), cfg.seed, state.epoch)
            batch = [train[i] for i in order[state.sample_offset : state.sample_offset + t.batch_size]]
            t0 = time.perf_counter()
            denom = objective.denominator(batch)
            fn = objective.loss_fn(denom)
            metrics: dict[str, float] = {}
            tokens = 0
            for part in chunks(batch, t.micro_batch_size):
                micro = objective.collate(part)
                tokens += objective.n_tokens(micro)
                for k, v in backend.forward_backward(micro, fn).items():
                    metrics[k] = metrics.get(k, 0.0) + v
            metrics |= backend.step()
            state.step += 1
            dt = time.perf_counter() - t0
            metrics |= {"epoch": state.epoch, "tokens": tokens, "tokens_per_s": tokens / dt, "step_time_s": dt}
            is_last = state.step == total_steps
            if evals and (is_last or (t.eval_steps and state.step % t.eval_steps == 0)):
                metrics |= evaluate(backend, objective, evals, t.micro_batch_size)
            metrics["elapsed_s"] = time.perf_counter() - start
            if state.step % cfg.logging.log_steps == 0 or is_last or any(k.startswith("eval_") for k in metrics):
                logger.log(state.step, metrics)
            last = metrics
            bar.update(1)
            bar.set_postfix(short(metrics, ("loss", "accuracy", "eval_loss", "tokens_per_s")))
            if cfg.checkpoint.save_steps and state.step % cfg.checkpoint.save_steps == 0 and not is_last:
                save_checkpoint(run.ckpt_dir, {"model": backend.model}, {"model": backend.state_dict()}, state,
                                cfg.checkpoint.keep)
    finally:
        bar.close()
        logger.close()
    if not math.isfinite(last.get("loss", 0.0)):
        raise AlignkitError("training ended with a non-finite loss")
    return last
