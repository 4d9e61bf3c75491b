"""Resuming keeps the run's own optimizer hyper-parameters and schedule.

Loading an optimizer's and a scheduler's state brings back the learning rate, betas, epsilon and weight
decay they were saved with, and the schedule's base learning rate: a changed `--train.lr` would be
silently ignored. A resume may change them only when the user allows it (checkpoint/fingerprint.py), and
then the change must take effect; so after loading, each parameter group gets the values the run was
configured with, and its learning rate is where this run's schedule (its lr, warm-up, min_lr_ratio and
length) is at the restored step. With the config unchanged these are the saved values, bit for bit.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

HYPER = ("initial_lr", "betas", "eps", "weight_decay")


@contextmanager
def configured_hyperparameters(optimizer: torch.optim.Optimizer,
                               scheduler: torch.optim.lr_scheduler.LambdaLR) -> Iterator[None]:
    """Wrap the loading of `optimizer`'s and `scheduler`'s states (see the module doc)."""
    mine = [{k: g[k] for k in HYPER if k in g} for g in optimizer.param_groups]
    yield
    for group, values in zip(optimizer.param_groups, mine, strict=True):
        group.update(values)
    scheduler.base_lrs = [g["initial_lr"] for g in mine]
    lrs = [base * fn(scheduler.last_epoch) for base, fn in zip(scheduler.base_lrs, scheduler.lr_lambdas, strict=True)]
    for group, lr in zip(optimizer.param_groups, lrs, strict=True):
        group["lr"] = lr
    scheduler._last_lr = lrs  # what get_last_lr() reports for the next step (as LRScheduler.step sets it)
