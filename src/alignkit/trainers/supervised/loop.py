"""The supervised training loop shared by SFT, reward models and the preference trainers.

An `Objective` says how samples become micro-batches and a loss; the loop owns everything else:
deterministic data order, gradient accumulation with a global denominator, evaluation, logging,
checkpoints and exact resume.

Data parallel (a sharded backend over several workers, trainers/supervised/launch.py): every worker runs this
loop with the same data order and takes its share of each micro-batch (data_parallel.py); the step's
metrics are summed over the workers, and only rank 0 writes (metrics, progress, checkpoints), while
every worker takes part in the collective calls that gather what it writes.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from typing import Any, Generic, Protocol, TypeVar

from alignkit.backends.base import LossFn, TrainBackend
from alignkit.backends.distributed import add_metrics, all_reduce_metrics, first_signal, rank
from alignkit.checkpoint.state import TrainerState, read_state, save_state
from alignkit.data.order import epoch_order
from alignkit.errors import AlignkitError
from alignkit.metrics.logger import MetricsLogger
from alignkit.metrics.progress import progress_bar, short
from alignkit.runtime.signals import requested
from alignkit.trainers.run import Run, config_dict, stop_with_checkpoint
from alignkit.trainers.supervised.data_parallel import STAND_IN, shares
from alignkit.workers.trained import RoleState, restore, role_state

log = logging.getLogger("alignkit")

S = TypeVar("S")

StepSamples = Callable[[list, int], tuple[list, dict[str, float]]]
"""(the step's samples, the step index) -> (the samples to train on, metrics of the step): a step-level
transform that reads the current weights (on-policy generation). It must be a function of those and
the step, so that a resumed run redoes it exactly; every data-parallel worker calls it."""


class Objective(Protocol, Generic[S]):
    """How a trainer turns samples into micro-batches and a loss."""

    def collate(self, samples: Sequence[S]) -> Any:
        """Samples -> one micro-batch on the training device."""

    def denominator(self, samples: Sequence[S]) -> Any:
        """What the step's loss is averaged over (tokens, pairs, ...), for the whole step: a float, or an
        object of the step's counts that the objective's `loss_fn` reads (distill.py)."""

    def loss_fn(self, denom: Any) -> LossFn:
        """The loss of one micro-batch, divided by the step's `denom`; its metrics add up over
        micro-batches (and workers) to the step's means. `denom` is `STAND_IN` (infinite) for a worker's
        stand-in call (data_parallel.py): the loss is then 0, and any collective a real call makes, the
        stand-in makes too."""

    def n_tokens(self, batch: Any) -> int:
        """Non-padding tokens in a micro-batch (for tokens/s)."""

    def sample_tokens(self, sample: S) -> int:
        """Tokens of one sample, all its sequences in full (what `--train.micro_batch_tokens` counts)."""


def plan_steps(n_train: int, batch_size: int, max_steps: int, epochs: int) -> tuple[int, int]:
    """(steps per epoch, total steps). The last partial batch of an epoch is dropped."""
    per_epoch = n_train // batch_size
    if per_epoch == 0:
        raise AlignkitError(f"{n_train} training samples are fewer than --train.batch_size {batch_size}")
    return per_epoch, (max_steps or per_epoch * epochs)


def evaluate(backend: TrainBackend, objective: Objective, samples: Sequence, micro: int,
             tokens: int = 0) -> dict[str, float]:
    """Loss and metrics over `samples` (collective: every worker evaluates its shares). Micro-batches of
    `micro` samples, or of at most `tokens` tokens when `tokens` > 0 (data_parallel.py)."""
    fn, stand_in = objective.loss_fn(objective.denominator(samples)), objective.loss_fn(STAND_IN)
    total: dict[str, float] = {}
    for mine, real in shares(samples, micro, tokens, objective.sample_tokens):
        out = backend.evaluate(objective.collate(mine), fn if real else stand_in)
        if real:
            add_metrics(total, out)
    return {f"eval_{k}": v for k, v in all_reduce_metrics(total).items()}


def train_step(backend: TrainBackend, objective: Objective, batch: Sequence, micro: int,
               tokens: int = 0) -> dict[str, float]:
    """One optimizer step on `batch`: this worker's shares of its micro-batches (`micro` samples, or at
    most `tokens` tokens when `tokens` > 0), gradients accumulated (summed over the workers by a sharded
    backend); loss metrics and tokens summed over the workers."""
    fn, stand_in = objective.loss_fn(objective.denominator(batch)), objective.loss_fn(STAND_IN)
    metrics: dict[str, float] = {"tokens": 0}
    for mine, real in shares(batch, micro, tokens, objective.sample_tokens):
        mb = objective.collate(mine)
        out = backend.forward_backward(mb, fn if real else stand_in)
        if real:
            add_metrics(metrics, out | {"tokens": objective.n_tokens(mb)})
    return all_reduce_metrics(metrics) | backend.step()


def save(run: Run, backend: TrainBackend, state: TrainerState) -> None:
    """A checkpoint of the step: gathered from every worker (collective), written by rank 0."""
    part = role_state(backend)
    if rank() == 0:
        save_state(run.ckpt_dir, {"model": part.weights}, {"model": part.optim}, state, run.cfg.checkpoint.keep, run.record)


def resume(run: Run, backend: TrainBackend) -> TrainerState:
    """The state of `run.resume_from`, loaded into the (sharded) backend by every worker."""
    state, weights, optims = read_state(run.resume_from, ["model"])
    restore(backend, RoleState(weights["model"], optims["model"]))
    log.info("resumed from %s at step %d", run.resume_from, state.step)
    return state


def train_supervised(
    run: Run,
    backend: TrainBackend,
    objective: Objective,
    train: Sequence,
    evals: Sequence,
    total_steps: int,
    step_samples: StepSamples | None = None,
) -> dict[str, float]:
    """Run to `total_steps`; returns the last logged metrics (eval included when there is eval data).
    `step_samples` transforms each step's samples before they are split (evaluation never)."""
    cfg = run.cfg
    t = cfg.train
    per_epoch = len(train) // t.batch_size
    state = resume(run, backend) if run.resume_from is not None else TrainerState()
    writer = rank() == 0
    logger = (MetricsLogger(run.dir, cfg.logging, state.step if run.resume_from else None, config_dict(cfg))
              if writer else None)
    bar = progress_bar(total_steps, state.step, run.dir.name, cfg.logging.progress and writer)
    last: dict[str, float] = {}
    start = time.perf_counter()
    try:
        while state.step < total_steps:
            state.epoch, index = divmod(state.step, per_epoch)
            state.sample_offset = index * t.batch_size
            order = epoch_order(len(train), cfg.seed, state.epoch)
            batch = [train[i] for i in order[state.sample_offset : state.sample_offset + t.batch_size]]
            t0 = time.perf_counter()
            extra: dict[str, float] = {}
            if step_samples is not None:
                batch, extra = step_samples(batch, state.step)
            metrics = train_step(backend, objective, batch, t.micro_batch_size, t.micro_batch_tokens) | extra
            state.step += 1
            dt = time.perf_counter() - t0
            metrics |= {"epoch": state.epoch, "tokens_per_s": metrics["tokens"] / dt, "step_time_s": dt}
            is_last = state.step == total_steps
            if evals and (is_last or (t.eval_steps and state.step % t.eval_steps == 0)):
                metrics |= evaluate(backend, objective, evals, t.micro_batch_size, t.micro_batch_tokens)
            metrics["elapsed_s"] = time.perf_counter() - start
            logged = state.step % cfg.logging.log_steps == 0 or is_last or any(k.startswith("eval_") for k in metrics)
            if logger is not None and logged:
                logger.log(state.step, metrics)
            last = metrics
            bar.update(1)
            bar.set_postfix(short(metrics, ("loss", "accuracy", "eval_loss", "tokens_per_s")))
            periodic = bool(cfg.checkpoint.save_steps) and state.step % cfg.checkpoint.save_steps == 0 and not is_last
            if periodic:
                save(run, backend, state)
            if not is_last and (signum := first_signal(requested(run.dir))) is not None:  # runtime/signals.py
                stop_with_checkpoint(run, signum, None if periodic else lambda: save(run, backend, state), state.step)
    finally:
        bar.close()
        if logger is not None:
            logger.close()
    if not math.isfinite(last.get("loss", 0.0)):
        raise AlignkitError("training ended with a non-finite loss")
    return last
