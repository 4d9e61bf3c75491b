"""Which roles a run has is one function of its config, `roles(cfg)`, read off registry entries (a
critic when the estimator reads values, a reference when the KL goes somewhere); and every choice field's
values are its registry's names."""

import typing

import pytest

from alignkit.algos.advantages import ADVANTAGE_ESTIMATORS
from alignkit.algos.losses.policy import POLICY_LOSSES
from alignkit.backends.factory import BACKENDS
from alignkit.config.parse import parse_config, presets
from alignkit.config.rl import AlgoConfig, RLConfig
from alignkit.config.rollout import RolloutConfig
from alignkit.config.schema import BackendConfig, DPOConfig
from alignkit.orchestration.roles import ROLE_NAMES, Role, roles
from alignkit.rollout.engines import ENGINES
from alignkit.trainers.supervised.preference import LOSSES

BASE = {"policy", "rollout", "reward"}
# preset -> (roles beyond policy, rollout, reward; where the KL goes)
PRESETS = {
    "ppo": ({"reference", "critic"}, "reward"),
    "grpo": ({"reference"}, "loss"),
    "dr_grpo": (set(), "none"),
    "rloo": ({"reference"}, "reward"),
    "reinforce_pp": ({"reference"}, "reward"),
    "reinforce_pp_baseline": ({"reference"}, "loss"),
    "dapo": (set(), "none"),
    "gspo": (set(), "none"),
    "opd": ({"teacher"}, "none"),
}


def _preset(name, *flags):
    return parse_config(RLConfig, ["--preset", name, *flags], "alignkit rl")


def test_every_preset_is_listed():
    assert set(PRESETS) == set(presets())


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_roles_of_each_preset(name):
    extra, kl = PRESETS[name]
    cfg = _preset(name, "--policy.num_workers", "2", "--rollout.num_workers", "3")
    assert cfg.algo.kl_placement == kl
    r = roles(cfg)
    assert set(r) == BASE | extra and set(r) <= set(ROLE_NAMES)
    assert r["policy"] == Role(2, trained=True) and r["rollout"] == Role(3)
    assert r["reward"] == Role(model=False)  # a rule or function reward needs no device
    if "critic" in r:
        assert r["critic"] == Role(2, trained=True)  # data parallel like the policy
    if "reference" in r:
        assert r["reference"] == Role(1)
    if "teacher" in r:
        assert r["teacher"] == Role(1)  # frozen, forward-only, one worker like the reference


def test_the_kl_coefficient_decides_the_reference_and_a_reward_model_needs_a_device():
    assert "reference" not in roles(_preset("grpo", "--algo.kl_coef", "0"))
    assert "reference" in roles(_preset("dapo", "--algo.kl_coef", "0.1"))
    assert roles(_preset("grpo", "--reward.model_path", "rm"))["reward"].model


def test_choice_fields_list_their_registries():
    hints = typing.get_type_hints(AlgoConfig)
    assert typing.get_args(hints["advantage"]) == tuple(ADVANTAGE_ESTIMATORS)
    assert typing.get_args(hints["policy_loss"]) == tuple(POLICY_LOSSES)
    assert typing.get_args(typing.get_type_hints(RolloutConfig)["engine"]) == tuple(ENGINES)
    assert typing.get_args(typing.get_type_hints(BackendConfig)["backend"]) == tuple(BACKENDS)
    assert typing.get_args(typing.get_type_hints(DPOConfig)["loss"]) == tuple(LOSSES)


def test_the_teacher_is_a_fact_of_the_estimators_a_run_adds_up():
    # on-policy distillation: a teacher, no reference unless the KL goes somewhere, a critic only when the
    # task reward's estimator reads values
    assert set(roles(_preset("opd"))) == BASE | {"teacher"}
    assert set(roles(_preset("opd", "--algo.kl_coef", "0.05"))) == BASE | {"teacher", "reference"}
    with_task = _preset("opd", "--algo.opd_reward_weight", "0.5", "--algo.opd_reward_advantage", "gae")
    assert set(roles(with_task)) == BASE | {"teacher", "critic"}
    assert "critic" not in roles(_preset("opd", "--algo.opd_reward_advantage", "gae"))  # weight 0: not used
    assert "teacher" not in roles(_preset("grpo", "--algo.opd_reward_weight", "0.5"))
