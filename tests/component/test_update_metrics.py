"""The metrics of a policy update are those of the whole mini-batch, whether it runs as several
micro-batches on one worker or is split over two workers as the Ray executor splits it: a max is the
max (not a sum of shares), a mean is weighted by what it averages, and `loss` is the objective."""

import copy

import pytest
import torch

from alignkit.algos.aggregate import loss_count
from alignkit.algos.metric import values
from alignkit.algos.objective import PolicyObjective, policy_objective
from alignkit.config.rl import RLConfig
from alignkit.config.rollout import RolloutConfig
from alignkit.config.schema import ModelConfig, TrainConfig
from alignkit.orchestration.ray.scatter import scatter
from alignkit.workers.experience import Experience
from alignkit.workers.policy import PolicyWorker

KEYS = ("loss", "pg_loss", "clip_frac", "approx_kl", "ratio_mean", "ratio_max", "ratio_min", "entropy")


@pytest.fixture(scope="module")
def worker(tiny_dir):
    cfg = RLConfig(model=ModelConfig(path=str(tiny_dir)), train=TrainConfig(device="cpu", micro_batch_size=3),
                   rollout=RolloutConfig(max_new_tokens=6))
    return PolicyWorker(cfg, 10)


def _batch(worker) -> Experience:
    """8 rows: a 3-token prompt and 1 to 6 response tokens; old log-probs moved off the current ones so
    the ratios spread (some clipped), advantages of both signs."""
    g = torch.Generator().manual_seed(0)
    lengths = torch.tensor([4, 9, 5, 8, 6, 9, 7, 4])
    ids = torch.randint(3, 500, (8, 9), generator=g) * (torch.arange(9) < lengths[:, None])
    mask = ((torch.arange(9) >= 3) & (torch.arange(9) < lengths[:, None])).float()
    exp = Experience(ids, lengths, mask, torch.arange(8) // 4, torch.zeros(8), torch.zeros(8, 9))
    logp = worker.logprobs(exp)
    old = logp + 0.3 * torch.randn(logp.shape, generator=g)
    return exp.with_(old_logp=old * mask, advantages=torch.randn(logp.shape, generator=g) * mask)


@pytest.mark.parametrize("agg", ["token_mean", "seq_mean_token_mean", "seq_mean_token_sum_norm"])
def test_micro_batches_and_workers_report_the_whole_batch(worker, agg):
    exp = _batch(worker)
    obj = PolicyObjective(clip_high=0.28, agg=agg, max_len=6)
    logp, ent = worker._forward(worker.model, exp, with_entropy=True)
    whole, m = policy_objective(obj, logp.detach(), exp.old_logp, exp.advantages, exp.response_mask, entropy=ent)
    expected = values(m)
    ratios = (logp.detach() - exp.old_logp).exp()[exp.response_mask.bool()]
    assert expected["ratio_max"] == pytest.approx(float(ratios.max()), rel=1e-6)
    assert expected["loss"] == pytest.approx(float(whole.mean()), rel=1e-6)

    denominator = loss_count(exp.response_mask, agg)
    one, two = copy.deepcopy(worker), [copy.deepcopy(worker), copy.deepcopy(worker)]
    local = values(one.update(exp, obj, denominator))  # micro-batches of 3, 3 and 2 rows
    plan = scatter("train", "update", 2, True, exp, obj, denominator)  # two shards of 4 rows: 3 + 1 each
    split = values(plan.gather([w.update(*p.args[1:]) for w, p in zip(two, plan.parts, strict=True)]))
    for got in (local, split):
        for key in KEYS:
            assert got[key] == pytest.approx(expected[key], rel=1e-4, abs=1e-6), key
        assert got["grad_norm"] > 0 and got["lr"] >= 0
