"""Metrics of on-policy distillation: how far the policy's samples are from the teacher, per token."""

from __future__ import annotations

import torch

from alignkit.algos.aggregate import token_mean
from alignkit.algos.metric import Metric, mean
from alignkit.algos.positions import bucket_name, position_bucket, response_positions
from alignkit.workers.experience import Experience


def teacher_metrics(exp: Experience) -> dict[str, Metric]:
    """Means over the response tokens of `exp` (which holds `old_logp` and `teacher_logp`):

    - ``teacher/kl``: ``log pi(y_t) - log pi_teacher(y_t)`` on the sampled tokens y_t, the single-sample
      estimate of the per-token reverse KL(policy || teacher), whose negative is opd's advantage;
    - ``teacher/kl/pos_B``: the same over the tokens at response positions B (0, 1, 2-3, 4-7, ..., 512+,
      counted from a sample's first response token: algos/positions.py, as `alignkit distill`'s);
    - ``logp/student``, ``logp/teacher``: the two log-probs of the sampled tokens.
    """
    on = exp.response_mask.bool()
    log_ratio = exp.old_logp - exp.teacher_logp
    out = {"teacher/kl": token_mean(log_ratio, on), "logp/student": token_mean(exp.old_logp, on),
           "logp/teacher": token_mean(exp.teacher_logp, on)}
    rows, cols = on.nonzero(as_tuple=True)
    bucket = position_bucket(response_positions(rows, cols))
    per_token = log_ratio[on]
    for b in torch.unique(bucket).tolist():
        sel = per_token[bucket == b]
        out[f"teacher/kl/pos_{bucket_name(b)}"] = mean(float(sel.mean()), sel.numel())
    return out
