"""Token-budget micro-batches on 2 FSDP2 workers (gloo, CPU) against one process with fixed micro-batches:
the supervised loop's step and the RL policy's log-probs and updates (one per loss aggregation mode).

The loop forms the groups on the whole step before sharding, so every worker walks the same groups; a
group of one sample leaves the second worker a stand-in. An RL worker groups its own shard, so the
workers agree on the most groups any has (collective) and the one with fewer runs blank stand-ins: here
the shards make 5 and 4 groups. Tolerances as in test_fsdp2_backend.py: the first step 1e-6 (grad norms
relative), later steps and weights 1e-4 (AdamW magnifies the ~1e-7 differences of the summed gradients).
Measured on CPU: SFT loss 4e-7, grad norm 1e-7, weights 1e-5; RL pg_loss 6e-8, grad norms 1e-6 (abs).
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.distributed as dist
from test_fsdp2_backend import TRAIN, init_group, spawn
from test_micro_batch_tokens import experience, rl_config, sft_batch

from alignkit.algos.aggregate import AGG_MODES, loss_count
from alignkit.algos.metric import merge_all, values
from alignkit.algos.objective import PolicyObjective
from alignkit.backends.factory import build_backend
from alignkit.config.schema import BackendConfig, ModelConfig
from alignkit.data.packing import first_fit_decreasing
from alignkit.models.load import load_causal_lm
from alignkit.orchestration.ray import dispatch
from alignkit.trainers.supervised.data_parallel import micro_batches
from alignkit.trainers.supervised.loop import train_step
from alignkit.trainers.supervised.sft import SFTObjective
from alignkit.workers.policy import PolicyWorker

CPU = torch.device("cpu")
SFT_TOKENS, RL_TOKENS = 20, 14
OBJECTIVE = SFTObjective(0, 64, True, CPU)


def policy_config(model_dir, backend: str, **train):
    cfg = rl_config(model_dir, lr=1e-3, warmup_ratio=0.0, **train)
    return dataclasses.replace(cfg, policy=dataclasses.replace(cfg.policy, backend=backend))


def shards() -> list[list[int]]:
    """The rows of each worker, as the Ray executor splits an update (orchestration/ray/scatter.py)."""
    return dispatch.split_rows(experience(), 2, equal_counts=True)


def rl_updates(policy: PolicyWorker, exp, whole) -> list[dict]:
    """One update per aggregation mode on `exp` (the whole batch or this worker's shard of `whole`), each
    divided by the whole batch's count; partial metrics."""
    return [policy.update(exp, PolicyObjective(agg=agg, max_len=8, entropy_coef=0.01),
                          loss_count(whole.response_mask, agg)) for agg in AGG_MODES]


def worker(rank: int, init_file: str, model_dir: str, out: str, backend_cfg: BackendConfig) -> None:
    init_group(rank, init_file)
    try:
        backend = build_backend(load_causal_lm(ModelConfig(path=model_dir), CPU), TRAIN, 1, CPU, backend_cfg)
        sft = train_step(backend, OBJECTIVE, sft_batch(), 2, SFT_TOKENS)
        sft_weights = {n: t.detach().clone() for n, t in backend.full_weights()}
        policy = PolicyWorker(policy_config(model_dir, backend_cfg.backend, micro_batch_tokens=RL_TOKENS), 3)
        parts, exp = shards(), experience()
        mine = dispatch.shard(exp, parts[rank], max(len(p) for p in parts))
        logp = policy.logprobs(mine)
        rl = rl_updates(policy, mine, exp)
        torch.save({"sft": sft, "sft_weights": sft_weights, "logp": logp, "rl": rl}, f"{out}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_token_budgets_on_two_fsdp2_workers_match_one_process(tiny_dir, tmp_path):
    # the setting exercises stand-ins: a group of one sample, and shards that make 5 and 4 groups
    assert min(len(g) for g in micro_batches(sft_batch(), 0, SFT_TOKENS, OBJECTIVE.sample_tokens)) == 1
    exp = experience()
    sizes = [len(first_fit_decreasing(dispatch.shard(exp, p, 6).lengths.tolist(), RL_TOKENS)) for p in shards()]
    assert sizes == [5, 4]

    ranks = spawn(worker, tmp_path, tiny_dir, BackendConfig(backend="fsdp2"))

    backend = build_backend(load_causal_lm(ModelConfig(path=str(tiny_dir)), CPU), TRAIN, 1, CPU)
    sft = train_step(backend, OBJECTIVE, sft_batch(), 2)
    for r in ranks:
        for key in ("loss", "nll", "grad_norm", "tokens"):
            assert r["sft"][key] == pytest.approx(sft[key], rel=1e-6, abs=1e-6), key
        for name, t in backend.full_weights():
            torch.testing.assert_close(r["sft_weights"][name], t, rtol=0, atol=1e-4, msg=name)

    policy = PolicyWorker(policy_config(str(tiny_dir), "torch", micro_batch_size=exp.n), 3)
    logp = policy.logprobs(exp)
    cols = torch.arange(exp.input_ids.shape[1])[None, :]
    predicted = (cols >= 1) & (cols < exp.lengths[:, None])  # a row's first token has no prediction
    for part, r in zip(shards(), ranks, strict=True):
        got = r["logp"][: len(part)]  # the shard's rows (then its padding), as wide as its longest
        rows, width = torch.tensor(part), got.shape[1]
        keep = predicted[rows, :width]
        assert keep.sum() == predicted[rows].sum()
        torch.testing.assert_close(got[keep], logp[rows, :width][keep], rtol=0, atol=1e-6)
    want = [values(m) for m in rl_updates(policy, exp, exp)]
    got = [values(merge_all([ranks[0]["rl"][i], ranks[1]["rl"][i]])) for i in range(len(AGG_MODES))]
    for step, (g, w) in enumerate(zip(got, want, strict=True)):
        for key in ("pg_loss", "entropy", "grad_norm", "lr"):
            tol = {"rel": 1e-6, "abs": 1e-6} if step == 0 else {"abs": 1e-4}
            assert g[key] == pytest.approx(w[key], **tol), (AGG_MODES[step], key)
