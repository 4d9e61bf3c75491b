"""Every example config parses with its command (a renamed field would break them silently), keeps its
preset's algorithm, and each preset's distinguishing setting changes the numbers it should: the
advantages, the KL's place, the clipping, the ratio's level (the real code on a fixed batch)."""

import functools
import math
import statistics
from pathlib import Path

import pytest
import torch
import yaml

from alignkit.algos.advantages import whiten
from alignkit.algos.objective import policy_objective
from alignkit.config.distill import DistillConfig
from alignkit.config.parse import PRESETS_DIR, parse_config, presets
from alignkit.config.rl import RLConfig
from alignkit.config.schema import DPOConfig, KTOConfig, RMConfig, SFTConfig
from alignkit.orchestration.roles import roles
from alignkit.trainers.rl.experience import with_advantages
from alignkit.trainers.rl.objectives import policy_objective_of
from alignkit.workers.experience import Experience

EXAMPLES = sorted((Path(__file__).parents[3] / "examples").glob("*.yaml"))
CLASSES = {"sft": SFTConfig, "rm": RMConfig, "dpo": DPOConfig, "kto": KTOConfig, "distill": DistillConfig}


def _stem(path: Path) -> str:
    return path.stem.removesuffix("_arithmetic").removesuffix("_sort").removesuffix("_guess")


@functools.cache
def example(preset: str) -> RLConfig:
    path = next(p for p in EXAMPLES if _stem(p) == preset)
    return parse_config(RLConfig, ["--preset", preset, "--config", str(path)], "alignkit rl")


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_parses(path):
    stem = _stem(path)
    if stem in presets():
        cfg = example(stem)
        preset = yaml.safe_load((PRESETS_DIR / f"{stem}.yaml").read_text())["algo"]
        assert {k: getattr(cfg.algo, k) for k in preset} == preset  # the example keeps its algorithm
    else:
        cfg = parse_config(CLASSES[stem], ["--config", str(path)], f"alignkit {stem}")
    assert cfg.model.path and cfg.data.train_files


def test_every_preset_has_an_example():
    assert {_stem(p) for p in EXAMPLES} >= set(presets())


# Two prompts of three samples: rewards [1, 0, 0] and [2, 2, 5]; responses of 2, 3, 1, 2, 2, 3 tokens.
REWARDS = [1.0, 0.0, 0.0, 2.0, 2.0, 5.0]
GROUPS = [0, 0, 0, 1, 1, 1]
LENGTHS = [2, 3, 1, 2, 2, 3]
MASK = (torch.arange(3)[None, :] < torch.tensor(LENGTHS)[:, None]).float()


def batch(ref_shift: float = 0.0, teacher_shift: torch.Tensor | float = 0.0) -> Experience:
    """Old log-probs -1 on every response token; the reference's `ref_shift` above them, the teacher's
    `teacher_shift`."""
    old = -MASK
    return Experience(torch.zeros(6, 3, dtype=torch.long), torch.tensor(LENGTHS), MASK, torch.tensor(GROUPS),
                      torch.tensor(REWARDS), old, old_logp=old, ref_logp=old + ref_shift * MASK, values=0 * MASK,
                      teacher_logp=old + teacher_shift * MASK)


def advantages(preset: str, ref_shift: float = 0.0) -> torch.Tensor:
    cfg = example(preset)
    return with_advantages(batch(ref_shift), cfg.algo, cfg.algo.kl_coef).advantages


def per_sequence(adv: torch.Tensor) -> list[float]:
    """The one advantage of each sequence (asserting it is the same on all its tokens)."""
    assert torch.equal(adv, adv[:, :1] * MASK)
    return adv[:, 0].tolist()


def _groups(fn) -> list[float]:
    out = []
    for g in (REWARDS[:3], REWARDS[3:]):
        out += [fn(r, g) for r in g]
    return out


def test_grpo_divides_by_the_group_std():
    expected = _groups(lambda r, g: (r - statistics.mean(g)) / (statistics.stdev(g) + 1e-6))
    assert per_sequence(advantages("grpo")) == pytest.approx(expected)


def test_dr_grpo_has_no_std_division():
    assert per_sequence(advantages("dr_grpo")) == pytest.approx(_groups(lambda r, g: r - statistics.mean(g)))


def test_rloo_leaves_one_out():
    expected = _groups(lambda r, g: r - (sum(g) - r) / (len(g) - 1))
    assert per_sequence(advantages("rloo")) == pytest.approx(expected)


@pytest.mark.parametrize("preset", ["ppo", "reinforce_pp", "reinforce_pp_baseline"])
def test_batch_whitened_advantages(preset):
    """ppo (--algo.whiten_advantages), reinforce_pp and its baseline variant: zero mean and unit std
    over the batch's response tokens."""
    adv = advantages(preset)[MASK.bool()]
    assert float(adv.mean()) == pytest.approx(0.0, abs=1e-6)
    assert float(adv.pow(2).mean().sqrt()) == pytest.approx(1.0, abs=1e-5)


def test_reinforce_pp_baseline_subtracts_the_group_mean_first():
    centred = torch.tensor(_groups(lambda r, g: r - statistics.mean(g)))[:, None] * MASK
    torch.testing.assert_close(advantages("reinforce_pp_baseline"), whiten(centred, MASK).float())


def test_opd_gives_each_token_the_teachers_log_ratio():
    """The teacher 0.1, 0.2, 0.3 nats above the policy at positions 0, 1, 2: those are the advantages, whatever
    the rewards."""
    shift = torch.tensor([0.1, 0.2, 0.3]).expand(6, 3)
    cfg = example("opd")
    exp = batch(teacher_shift=shift)
    torch.testing.assert_close(with_advantages(exp, cfg.algo, 0.0).advantages, shift * MASK)
    torch.testing.assert_close(with_advantages(exp.with_(rewards=-exp.rewards), cfg.algo, 0.0).advantages, shift * MASK)
    assert "teacher" in roles(cfg) and all("teacher" not in roles(example(p)) for p in presets() if p != "opd")


def test_ppo_has_a_critic():
    assert "critic" in roles(example("ppo")) and all("critic" not in roles(example(p)) for p in presets() if p != "ppo")


@pytest.mark.parametrize("preset", sorted(presets()))
def test_the_kl_goes_where_the_preset_puts_it(preset):
    """A reference 0.5 nats above the policy on every token: in the reward it moves the advantages and
    stays out of the loss; in the loss it leaves the advantages and adds kl_coef * k3 per token."""
    cfg = example(preset)
    place = cfg.algo.kl_placement
    moved = not torch.allclose(advantages(preset, 0.5), advantages(preset, 0.0))
    assert moved == (place == "reward"), place
    assert ("reference" in roles(cfg)) == (place != "none")
    exp = batch(0.5)
    terms, m = policy_objective(policy_objective_of(cfg, cfg.algo.kl_coef), exp.old_logp, None, MASK, MASK,
                                ref_logp=exp.ref_logp)
    k3 = math.exp(0.5) - 1.5
    if place == "loss":
        assert m["kl_loss"].value == pytest.approx(cfg.algo.kl_coef * k3)
        assert m["loss"].value == pytest.approx(m["pg_loss"].value + m["kl_loss"].value)
    else:
        assert "kl_loss" not in m


def _ratio_case(preset: str, log_ratio: torch.Tensor) -> dict[str, float]:
    """The preset's objective where the policy moved by `log_ratio` per token, every advantage +1."""
    old = -MASK
    _, m = policy_objective(policy_objective_of(example(preset), 0.0), old + log_ratio * MASK, old, MASK, MASK)
    return {k: v.value for k, v in m.items()}


def test_dapo_clip_higher_keeps_a_ratio_that_grpo_clips():
    up = torch.full((6, 3), math.log(1.25))  # ratio 1.25 on every token, advantage +1
    dapo, grpo = _ratio_case("dapo", up), _ratio_case("grpo", up)
    assert dapo["clip_frac"] == 0.0 and dapo["pg_loss"] == pytest.approx(-1.25)  # 1.25 <= 1 + 0.28
    assert grpo["clip_frac"] == 1.0 and grpo["pg_loss"] == pytest.approx(-1.2)  # clipped at 1 + 0.2


def test_gspo_ratio_is_per_sequence():
    """Token log-ratios 0.1, 0.3 (and 0.2) in a row: GSPO's ratio is exp(their mean) for the whole row."""
    steps = torch.tensor([[0.1, 0.3, 0.2]]).expand(6, 3)
    gspo, grpo = _ratio_case("gspo", steps), _ratio_case("grpo", steps)
    row_means = [sum(steps[0, :n].tolist()) / n for n in LENGTHS]
    assert gspo["ratio_max"] == pytest.approx(math.exp(max(row_means)))
    assert gspo["ratio_mean"] == pytest.approx(statistics.mean(math.exp(v) for v in row_means))  # over sequences
    assert grpo["ratio_max"] == pytest.approx(math.exp(0.3))  # token level
