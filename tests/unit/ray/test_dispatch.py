"""Splitting a batch over a role's workers by tokens, and gathering the results back in order."""

import pytest
import torch

from alignkit.algos.aggregate import loss_count
from alignkit.algos.metric import maximum, mean, values
from alignkit.config.sampling import SamplingParams
from alignkit.config.schema import RayConfig
from alignkit.errors import ConfigError
from alignkit.orchestration.ray import dispatch
from alignkit.orchestration.ray.placement import plan_layout
from alignkit.orchestration.ray.scatter import scatter
from alignkit.rewards.base import RewardOutput
from alignkit.rollout.base import Generation
from alignkit.workers.experience import Experience


def _exp(lengths: list[int], prompt: int = 2) -> Experience:
    n, width = len(lengths), max(lengths)
    ids = torch.zeros((n, width), dtype=torch.long)
    mask = torch.zeros((n, width))
    for i, ln in enumerate(lengths):
        ids[i, :ln] = torch.arange(1, ln + 1) + 100 * i
        mask[i, prompt:ln] = 1.0
    return Experience(ids, torch.tensor(lengths), mask, torch.arange(n), torch.arange(n).float(), mask * -0.5)


def test_split_balances_tokens_not_samples():
    costs = [100, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10]
    parts = dispatch.balanced_split(costs, 2)
    loads = [sum(costs[i] for i in p) for p in parts]
    assert loads == [100, 100]  # by samples it would be 6 vs 5 rows, 150 vs 50 tokens
    assert parts == [[0], list(range(1, 11))]
    assert all(p == sorted(p) for p in parts)
    assert sorted(i for p in parts for i in p) == list(range(len(costs)))


def test_equal_counts_split_for_sharded_roles():
    costs = [100, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10]
    parts = dispatch.balanced_split(costs, 2, equal_counts=True)
    assert sorted(len(p) for p in parts) == [5, 6]
    assert sorted(sum(costs[i] for i in p) for p in parts) == [50, 150]  # greedy within the counts
    assert sorted(i for p in parts for i in p) == list(range(len(costs)))


def test_padding_rows_add_nothing_to_the_loss():
    from alignkit.algos.objective import PolicyObjective, policy_objective

    exp = _exp([9, 3, 7])
    exp = exp.with_(advantages=torch.randn(exp.input_ids.shape, generator=torch.Generator().manual_seed(0)))
    padded = dispatch.shard(exp, [0, 1, 2], rows=5)
    assert padded.n == 5 and padded.lengths.tolist() == [9, 3, 7, 1, 1]
    for agg in ("token_mean", "seq_mean_token_mean", "seq_mean_token_sum_norm"):
        assert loss_count(padded.response_mask, agg) == loss_count(exp.response_mask, agg)
        obj = PolicyObjective(agg=agg, max_len=6)
        a, _ = policy_objective(obj, exp.behaviour_logp, None, exp.advantages, exp.response_mask)
        b, _ = policy_objective(obj, padded.behaviour_logp, None, padded.advantages, padded.response_mask)
        assert torch.equal(a.total, b.total) and torch.equal(a.count, b.count), agg


def test_sharded_forward_gets_equal_rows_and_drops_padding():
    exp = _exp([9, 3, 7, 4, 8])
    plan = scatter("rows", "logprobs", 2, True, exp)
    shards = [p.args[1] for p in plan.parts]
    assert [s.n for s in shards] == [3, 3]
    out = plan.gather([s.input_ids.float() for s in shards])
    assert torch.equal(out, exp.input_ids.float())


def test_split_one_worker_and_more_workers_than_items():
    assert dispatch.balanced_split([3, 1, 2], 1) == [[0, 1, 2]]
    assert dispatch.balanced_split([3, 1], 3) == [[0], [1], []]


def test_shard_and_gather_rows_restore_order():
    exp = _exp([9, 3, 7, 4, 8, 2])
    parts = dispatch.split_rows(exp, 3)
    assert [int(exp.lengths[p].sum()) for p in parts] == [11, 11, 11]
    shards = [dispatch.shard(exp, p) for p in parts]
    assert all(s.input_ids.shape[1] == int(s.lengths.max()) for s in shards)  # trimmed to the longest row
    # a "forward pass" that returns each token id as a float: gathering must give back the ids
    out = dispatch.gather_rows(parts, [s.input_ids.float() for s in shards], tuple(exp.input_ids.shape))
    assert torch.equal(out, exp.input_ids.float())
    assert dispatch.shard(exp, list(range(exp.n))) is exp


def test_generations_renumbered_prompt_major():
    prompts = [[1] * 5, [2], [3] * 4, [4] * 2]
    plan = scatter("prompts", "generate", 2, False, prompts, SamplingParams(n=2, seed=7))
    calls = {p.worker: p.args for p in plan.parts}
    assert [len(p) for p in calls[0][1]] == [5, 1] and [len(p) for p in calls[1][1]] == [4, 2]
    assert calls[0][2].seed == 7 and calls[1][2].seed == 8  # workers do not share random numbers

    def fake(prompt_ids):  # what one engine returns: n samples per prompt, its own prompt indices
        return [Generation(i, [p[0], j], [0.0, 0.0], "stop", f"{p[0]}.{j}") for i, p in enumerate(prompt_ids)
                for j in range(2)]

    gens = plan.gather([fake(calls[0][1]), fake(calls[1][1])])
    assert [g.text for g in gens] == ["1.0", "1.1", "2.0", "2.1", "3.0", "3.1", "4.0", "4.1"]
    assert [g.prompt_index for g in gens] == [0, 0, 1, 1, 2, 2, 3, 3]


def test_rewards_back_in_order():
    prompts, responses = ["a", "b", "c"], ["xxxxxxxx", "y", "zz"]
    plan = scatter("samples", "score", 2, False, prompts, responses, [None] * 3)
    outs = [RewardOutput(torch.tensor([float(ord(r[0])) for r in p.args[2]]),
                         {"len": torch.tensor([float(len(r)) for r in p.args[2]])}) for p in plan.parts]
    out = plan.gather(outs)
    assert out.scores.tolist() == [ord("x"), ord("y"), ord("z")]
    assert out.components["len"].tolist() == [8, 1, 2]


def test_train_plan_passes_the_step_denominator_and_combines_metrics_by_their_reduction():
    exp = _exp([9, 3, 7, 4])
    plan = scatter("train", "update", 2, True, exp, "obj", 21.0)
    assert [p.args[1].n for p in plan.parts] == [2, 2] and all(p.args[2:] == ("obj", 21.0) for p in plan.parts)
    m = plan.gather([
        {"loss": mean(0.25, 12.0), "ratio_max": maximum(1.5, 12.0), "grad_norm": mean(2.0, 1.0)},
        {"loss": mean(0.5, 9.0), "ratio_max": maximum(1.25, 9.0), "grad_norm": mean(2.0, 1.0)},
    ])
    assert values(m) == {"loss": pytest.approx((0.25 * 12 + 0.5 * 9) / 21), "ratio_max": 1.5, "grad_norm": 2.0}
    one = scatter("train", "update", 1, False, exp, "obj", 21.0)
    assert one.parts[0].args == ("update", exp, "obj", 21.0) and not one.parts[0].kwargs  # as a local call


def test_layouts():
    workers = {"policy": 2, "rollout": 1, "reward": 1}
    colo = plan_layout(workers, RayConfig(cpus_per_worker=1.0))
    assert len(colo.bundles) == 2
    assert [s.bundle for s in colo.seats["policy"]] == [0, 1] and colo.seats["reward"][0].bundle == 0
    assert colo.seats["policy"][0].cpus == 0.3333 and colo.seats["policy"][1].cpus == 1.0
    sep = plan_layout(workers, RayConfig(placement="separate", cpus_per_worker=0.5))
    assert len(sep.bundles) == 4 and [s.bundle for s in sep.seats["reward"]] == [3]
    assert all(s.cpus == 0.5 for seats in sep.seats.values() for s in seats)
    explicit = plan_layout(workers, RayConfig(bundles={"policy": [0, 1, 2, 3], "rollout": [4], "reward": [4]},
                                              gpus_per_worker=1.0))
    assert [s.bundle for s in explicit.seats["policy"]] == [0, 2]  # two workers spread over four bundles
    assert explicit.bundles[0] == {"CPU": 1.0, "GPU": 1.0} and explicit.seats["rollout"][0].gpus == 0.5
    with pytest.raises(ConfigError, match="gives no bundle to reward"):
        plan_layout(workers, RayConfig(bundles={"policy": [0], "rollout": [1]}))
    with pytest.raises(ConfigError, match="unknown role"):
        plan_layout(workers, RayConfig(bundles={"policy": [0], "rollout": [1], "reward": [1], "actor": [2]}))
