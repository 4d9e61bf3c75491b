"""Every example config parses with its command (a renamed field would break them silently)."""

from pathlib import Path

import pytest

from alignkit.config.distill import DistillConfig
from alignkit.config.parse import parse_config, presets
from alignkit.config.rl import RLConfig
from alignkit.config.schema import DPOConfig, KTOConfig, RMConfig, SFTConfig

EXAMPLES = sorted((Path(__file__).parents[3] / "examples").glob("*.yaml"))
CLASSES = {"sft": SFTConfig, "rm": RMConfig, "dpo": DPOConfig, "kto": KTOConfig, "distill": DistillConfig}


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_parses(path):
    stem = path.stem.removesuffix("_arithmetic").removesuffix("_sort")
    if stem in presets():
        cfg = parse_config(RLConfig, ["--preset", stem, "--config", str(path)], "alignkit rl")
        assert cfg.algo.advantage and cfg.reward.rules == ["exact"]
    else:
        cfg = parse_config(CLASSES[stem], ["--config", str(path)], f"alignkit {stem}")
    assert cfg.model.path and cfg.data.train_files


def test_every_preset_has_an_example():
    assert {p.stem.removesuffix("_arithmetic") for p in EXAMPLES} >= set(presets())
