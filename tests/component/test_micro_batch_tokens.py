"""Token-budget micro-batches (`--train.micro_batch_tokens`) give the gradient and the logged loss of one
big batch and of fixed micro-batches, on the tiny fp32 model (1e-6): the supervised loop's step for SFT,
DPO (pairs whole) and a reward model, and the RL policy update in every loss aggregation mode (the
step's denominators do not depend on how the step is cut); the policy's log-probs are the same too."""

from __future__ import annotations

import dataclasses
import random

import pytest
import torch

from alignkit.algos.aggregate import AGG_MODES, loss_count
from alignkit.algos.losses.preference import PreferenceConfig
from alignkit.algos.metric import values
from alignkit.algos.objective import PolicyObjective
from alignkit.backends.factory import build_backend
from alignkit.config.rl import RLConfig
from alignkit.config.schema import ModelConfig, RefConfig, TrainConfig
from alignkit.data.packing import PairPacker, first_fit_decreasing
from alignkit.data.samples import SampleGroup, TokenizedPair, TokenizedSample
from alignkit.models.load import load_causal_lm, load_reward_model
from alignkit.models.reference import Reference, load_frozen
from alignkit.trainers.supervised.loop import train_step
from alignkit.trainers.supervised.preference import LOSSES, PairwiseObjective, RefPair
from alignkit.trainers.supervised.reward_model import RewardObjective
from alignkit.trainers.supervised.sft import SFTObjective
from alignkit.workers.experience import Experience
from alignkit.workers.policy import PolicyWorker

CPU = torch.device("cpu")
TOL = 1e-6


def sample(rng: random.Random, prompt: list[int], n: int) -> TokenizedSample:
    return TokenizedSample(prompt + [rng.randrange(5, 500) for _ in range(n)], [0] * len(prompt) + [1] * n, "t")


def sft_batch() -> list[SampleGroup]:
    """SFT records; every third has two rows sharing a prompt (a chat record trained one row per turn)."""
    rng = random.Random(0)
    out = []
    for i in range(10):
        prompt = [rng.randrange(5, 500) for _ in range(3)]
        out.append(SampleGroup(tuple(sample(rng, prompt, rng.randint(1, 24)) for _ in range(1 + (i % 3 == 0))), "t"))
    return out


def pair_batch() -> list[TokenizedPair]:
    rng = random.Random(1)
    out = []
    for _ in range(8):
        prompt = [rng.randrange(5, 500) for _ in range(rng.randint(2, 4))]
        out.append(TokenizedPair(sample(rng, prompt, rng.randint(1, 12)), sample(rng, prompt, rng.randint(1, 12)),
                                 0.0, "t"))
    return out


def gradients(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The accumulated gradients, taken and cleared."""
    out = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    return out


def assert_same(got: tuple[dict, dict], want: tuple[dict, dict], keys: tuple[str, ...]) -> None:
    (gm, gg), (wm, wg) = got, want
    for k in keys:
        assert gm[k] == pytest.approx(wm[k], abs=TOL), k
    assert gg.keys() == wg.keys() and gg
    for name, g in gg.items():
        torch.testing.assert_close(g, wg[name], rtol=0, atol=TOL, msg=name)


def step_three_ways(model, objective, batch, budget: int, keys: tuple[str, ...]) -> None:
    """train_step on `batch` as one micro-batch, in fixed micro-batches of 2 and with a token budget that
    makes several groups (one of them a sample over the budget, alone): same loss and gradient."""
    lengths = [objective.sample_tokens(s) for s in batch]
    assert max(lengths) > budget and 2 < len(first_fit_decreasing(lengths, budget)) < len(batch)
    backend = build_backend(model, TrainConfig(), 1, CPU)
    backend.step = dict  # keep the accumulated gradients, no optimizer step

    def run(micro: int, tokens: int = 0) -> tuple[dict, dict]:
        metrics = train_step(backend, objective, batch, micro, tokens)
        return metrics, gradients(model)

    whole = run(len(batch))
    assert_same(run(2), whole, keys)
    assert_same(run(len(batch), budget), whole, keys)


def test_sft_step(tiny_dir):
    model = load_causal_lm(ModelConfig(path=str(tiny_dir)), CPU)
    step_three_ways(model, SFTObjective(0, 64, True, CPU), sft_batch(), 20, ("loss", "nll", "tokens"))


def test_dpo_step_keeps_pairs_whole(tiny_dir):
    model = load_causal_lm(ModelConfig(path=str(tiny_dir)), CPU)
    reference = Reference(model=load_frozen(ModelConfig(path=str(tiny_dir)), RefConfig(), CPU))
    objective = PairwiseObjective(LOSSES["dpo"], PreferenceConfig(beta=0.5), reference,
                                  PairPacker(0, 64, True, True, CPU))
    items = [RefPair(p) for p in pair_batch()]
    step_three_ways(model, objective, items, 24, ("loss", "reward_acc", "margin", "tokens"))


def test_reward_model_step(tiny_dir):
    torch.manual_seed(0)
    model = load_reward_model(ModelConfig(path=str(tiny_dir)), CPU)
    objective = RewardObjective(PairPacker(0, 64, True, True, CPU), "sigmoid", False)
    step_three_ways(model, objective, pair_batch(), 24, ("loss", "accuracy", "tokens"))


def experience(n: int = 12) -> Experience:
    """`n` rows: a prompt of 2-5 tokens and a response of 1-12, and advantages."""
    g = torch.Generator().manual_seed(0)
    prompts, responses = torch.randint(2, 6, (n,), generator=g), torch.randint(1, 13, (n,), generator=g)
    lengths = prompts + responses
    width = int(lengths.max())
    ids = torch.randint(5, 500, (n, width), generator=g)
    cols = torch.arange(width)[None, :]
    ids[cols >= lengths[:, None]] = 0
    mask = ((cols >= prompts[:, None]) & (cols < lengths[:, None])).float()
    adv = torch.randn(n, 1, generator=g).expand(n, width) * mask
    return Experience(ids, lengths, mask, torch.arange(n) // 2, torch.zeros(n), torch.zeros(n, width),
                      advantages=adv.contiguous())


def rl_config(tiny_dir, **train) -> RLConfig:
    cfg = RLConfig(model=ModelConfig(path=str(tiny_dir)), train=TrainConfig(device="cpu", **train))
    return dataclasses.replace(cfg, rollout=dataclasses.replace(cfg.rollout, max_new_tokens=8))


@pytest.fixture(scope="module")
def policy(tiny_dir) -> PolicyWorker:
    worker = PolicyWorker(rl_config(tiny_dir), 1)
    worker.backend.step = dict  # keep the accumulated gradients, no optimizer step
    return worker


def test_rl_policy_logprobs(policy, tiny_dir):
    exp = experience()
    policy.cfg = rl_config(tiny_dir, micro_batch_size=exp.n)
    whole = policy.logprobs(exp)
    policy.cfg = rl_config(tiny_dir, micro_batch_tokens=16)
    got = policy.logprobs(exp)
    # a row's first token has no prediction (garbage, never used); past its length: 0
    cols = torch.arange(exp.input_ids.shape[1])[None, :]
    predicted = (cols >= 1) & (cols < exp.lengths[:, None])
    torch.testing.assert_close(got[predicted], whole[predicted], rtol=0, atol=TOL)
    assert not got[cols >= exp.lengths[:, None]].any()


@pytest.mark.parametrize("agg", AGG_MODES)
def test_rl_policy_update(policy, tiny_dir, agg):
    exp = experience()
    logp = policy.logprobs(exp)
    noise = torch.randn(exp.input_ids.shape, generator=torch.Generator().manual_seed(1)) * exp.response_mask
    old = exp.with_(old_logp=logp + 0.3 * noise, ref_logp=logp - 0.3 * noise)  # some ratios clipped
    assert 2 < len(first_fit_decreasing(exp.lengths.tolist(), 16)) < exp.n
    obj = PolicyObjective(agg=agg, max_len=8, kl_coef=0.05, entropy_coef=0.01)
    denominator = loss_count(old.response_mask, agg)  # the step's one count, however the step is cut

    def run(**train) -> tuple[dict, dict]:
        policy.cfg = rl_config(tiny_dir, **train)
        return values(policy.update(old, obj, denominator)), gradients(policy.model)

    whole = run(micro_batch_size=exp.n)
    assert whole[0]["clip_frac"] > 0
    keys = ("loss", "pg_loss", "kl", "clip_frac", "entropy")
    assert_same(run(micro_batch_size=3), whole, keys)
    assert_same(run(micro_batch_tokens=16), whole, keys)
