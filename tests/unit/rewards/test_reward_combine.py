"""Weighted combination of reward sources, and building it from RewardConfig."""

from __future__ import annotations

import pytest
import torch

from alignkit.config.parse import parse_config
from alignkit.config.reward import RewardConfig
from alignkit.errors import ConfigError
from alignkit.rewards.base import RewardInput, RewardOutput
from alignkit.rewards.combine import Source, WeightedSum
from alignkit.rewards.registry import build_reward, source_names
from alignkit.rewards.validate import RewardError

BATCH = RewardInput(["p0", "p1", "p2"], ["r0", "r1", "r2"], ["a", "b", "c"])


def const(values, components=None):
    return lambda batch: RewardOutput(torch.tensor(values, dtype=torch.float32), components or {})


def test_weighted_sum_by_hand():
    fn = WeightedSum(
        [
            Source("a", const([1.0, 2.0, 3.0]), 0.5),
            Source("b", const([10.0, 0.0, -10.0], {"x": torch.tensor([4.0, 5.0, 6.0])}), 2.0),
        ]
    )
    out = fn(BATCH)
    # 0.5 * [1, 2, 3] + 2 * [10, 0, -10]
    assert out.scores.tolist() == [20.5, 1.0, -18.5]
    assert list(out.components) == ["a", "b", "b/x"]
    assert out.components["a"].tolist() == [1.0, 2.0, 3.0]  # unweighted
    assert out.components["b/x"].tolist() == [4.0, 5.0, 6.0]


def test_clip():
    out = WeightedSum([Source("a", const([-7.0, 0.5, 9.0]))], clip=2.0)(BATCH)
    assert out.scores.tolist() == [-2.0, 0.5, 2.0]
    assert out.components["a"].tolist() == [-7.0, 0.5, 9.0]


def test_any_source_is_checked():
    fn = WeightedSum([Source("ok", const([0.0, 0.0, 0.0])), Source("mine", const([0.0, float("nan"), 0.0]))])
    with pytest.raises(RewardError) as e:
        fn(BATCH)
    assert str(e.value) == "reward source 'mine': reward for sample 1 (prompt 'p1') is nan"


def test_wrong_shape_names_the_source():
    fn = WeightedSum([Source("mine", const([[1.0], [2.0], [3.0]]))])
    with pytest.raises(
        RewardError,
        match=r"^reward source 'mine': reward for sample 0 \(prompt 'p0'\) is list \[1.0\], not a number$",
    ):
        fn(BATCH)


def test_mismatched_labels():
    with pytest.raises(RewardError, match="^reward input has 3 prompts but 2 labels$"):
        WeightedSum([Source("a", const([0.0] * 3))])(RewardInput(BATCH.prompts, BATCH.responses, ["a", "b"]))


def test_no_source_and_duplicate_names():
    with pytest.raises(ConfigError, match="^no reward source"):
        WeightedSum([])
    with pytest.raises(ConfigError, match="must differ"):
        WeightedSum([Source("a", const([0.0])), Source("a", const([0.0]))])


def test_build_from_flags(tmp_path):
    f = tmp_path / "r.py"
    f.write_text("def length(prompts, responses, labels):\n    return [float(len(r)) for r in responses]\n")
    cfg = parse_config(
        RewardConfig,
        [
            "--function",
            f"{f}:length",
            "--rules",
            "exact",
            "format:r.*",
            "format:x",
            "--weights",
            '{"exact": 3, "format_2": -1}',
        ],
        "test",
    )
    assert source_names(cfg) == ["length", "exact", "format", "format_2"]
    fn = build_reward(cfg)
    out = fn(RewardInput(["p0", "p1"], ["a", "rb"], ["a", "b"]))
    # length + 3 * exact + format - format_2
    assert out.scores.tolist() == [1 + 3 + 0 - 0, 2 + 0 + 1 - 0]
    assert list(out.components) == ["length", "exact", "format", "format_2"]


def test_weight_naming_no_source():
    with pytest.raises(ConfigError) as e:
        build_reward(RewardConfig(rules=["math", "boxed"], weights={"maht": 1.0}))
    assert (
        str(e.value)
        == "--reward.weights names 'maht', which is no reward source; did you mean 'math'? (sources: math, boxed)"
    )


def test_no_source_configured():
    with pytest.raises(ConfigError, match="^no reward source: set --reward.function"):
        build_reward(RewardConfig())


@pytest.mark.parametrize(
    ("cfg", "message"),
    [
        (RewardConfig(rules=["exact"], batch_size=0), "--reward.batch_size must be at least 1, got 0"),
        (RewardConfig(rules=["exact"], timeout_s=0), "--reward.timeout_s must be positive, got 0"),
        (RewardConfig(rules=["exact"], retries=-1), "--reward.retries must be >= 0, got -1"),
        (RewardConfig(rules=["exact"], clip=0.0), "--reward.clip must be positive (or null), got 0.0"),
        (
            RewardConfig(rules=["exact"], weights={"exact": float("nan")}),
            "--reward.weights: the weight of 'exact' must be a finite number, got nan",
        ),
    ],
)
def test_bad_values(cfg, message):
    with pytest.raises(ConfigError) as e:
        build_reward(cfg)
    assert str(e.value) == message


def test_source_names_of_every_kind():
    cfg = RewardConfig(function="f.py:mine", rules=["math"], model_path="rm", urls=["http://127.0.0.1:1"])
    assert source_names(cfg) == ["mine", "math", "model", "http"]
