"""Values out of range and flags that contradict each other are refused naming the flag(s); negative
numbers on the command line reach those checks as values."""

import pytest

from alignkit.config.distill import DistillConfig
from alignkit.config.parse import parse_config
from alignkit.config.rl import RLConfig
from alignkit.config.schema import DPOConfig, KTOConfig, SFTConfig
from alignkit.config.validate import validate_run
from alignkit.errors import ConfigError
from alignkit.trainers.rl.validate import validate_rl
from alignkit.trainers.supervised.preference import resolve_loss

BASE = ["--model.path", "m", "--data.train_files", "a.jsonl"]
RL = BASE + ["--train.max_steps", "3", "--reward.rules", "exact"]


@pytest.mark.parametrize(("cls", "flags", "message"), [
    (SFTConfig, ["--train.lr", "-1e-3"], "--train.lr must be positive, got -0.001"),
    (SFTConfig, ["--train.lr", "-.5"], "--train.lr must be positive, got -0.5"),
    (SFTConfig, ["--train.min_lr_ratio", "-5"], "--train.min_lr_ratio must be in [0, 1], got -5.0"),
    (SFTConfig, ["--train.weight_decay", "-0.1"], "--train.weight_decay must be >= 0, got -0.1"),
    (SFTConfig, ["--train.adam_betas", "0.9", "1.0"], "--train.adam_betas must be in [0, 1), got 1.0"),
    (SFTConfig, ["--model.lora.dropout", "1"], "--model.lora.dropout must be in [0, 1), got 1.0"),
    (SFTConfig, ["--data.eval_files", "e.jsonl", "--data.eval_fraction", "0.1"],
     "--data.eval_files and --data.eval_fraction both choose the eval data; give only one"),
    (SFTConfig, ["--resume_allow", "lr"], "--resume_allow names fields a resume may change: it needs --resume"),
    (DPOConfig, ["--dpo.beta", "-1"], "--dpo.beta must be positive, got -1.0"),
    (DPOConfig, ["--dpo.label_smoothing", "0.5"], "--dpo.label_smoothing must be in [0, 0.5), got 0.5"),
    (KTOConfig, ["--kto.beta", "0"], "--kto.beta must be positive, got 0.0"),
    (RLConfig, ["--algo.kl_coef", "-1"], "--algo.kl_coef must be >= 0, got -1.0"),
    (RLConfig, ["--algo.clip_low", "-0.5"], "--algo.clip_low must be in [0, 1), got -0.5"),
    (RLConfig, ["--algo.dual_clip", "0.5"], "--algo.dual_clip must be greater than 1 (or null), got 0.5"),
    (RLConfig, ["--rollout.top_p", "0"], "--rollout.top_p must be in (0, 1], got 0.0"),
    (RLConfig, ["--critic.lr", "-1"], "--critic.lr must be positive, got -1.0"),
    (DistillConfig, ["--distill.beta", "1.5"], "--distill.beta must be in [0, 1], got 1.5"),
    (DistillConfig, ["--distill.sft_weight", "-1"], "--distill.sft_weight must be >= 0, got -1.0"),
    (DistillConfig, ["--teacher.top_k", "-1"], "--teacher.top_k must be >= 0, got -1"),
])  # fmt: skip
def test_out_of_range(cls, flags, message):
    cfg = parse_config(cls, (RL if cls is RLConfig else BASE) + flags, "alignkit")
    with pytest.raises(ConfigError) as e:
        validate_rl(cfg) if cls is RLConfig else validate_run(cfg)
    assert str(e.value) == message


@pytest.mark.parametrize(("flags", "message"), [
    (["--preset", "grpo", "--rollout.temperature", "0"],
     "--rollout.temperature 0 samples the same response 8 times per prompt, so every --algo.advantage grpo "
     "advantage is 0 and nothing is learned: use a temperature > 0"),
    (["--ref.path", "r"], "--ref.path is set but --algo.kl_coef is 0, which loads no reference model: "
                          "give --algo.kl_coef > 0, or drop --ref.path"),
    (["--algo.kl_target", "0.1"], "--algo.kl_target steers --algo.kl_coef, which is 0 (no reference model is "
                                  "loaded): give a starting --algo.kl_coef > 0, or drop --algo.kl_target"),
    (["--critic.path", "c"], "--critic.path is set but --algo.advantage grpo trains no critic (only gae does): "
                             "drop --critic.path, or use --algo.advantage gae"),
])  # fmt: skip
def test_rl_conflicts(flags, message):
    with pytest.raises(ConfigError) as e:
        validate_rl(parse_config(RLConfig, RL + flags, "alignkit rl"))
    assert str(e.value) == message


def test_greedy_is_fine_without_group_advantages():
    validate_rl(parse_config(RLConfig, RL + ["--preset", "reinforce_pp", "--rollout.temperature", "0"], "alignkit rl"))


@pytest.mark.parametrize(("flags", "message"), [
    (["--loss", "simpo", "--ref.path", "r"], "--loss simpo is reference-free, so --ref.path would be ignored"),
    (["--loss", "orpo", "--ref.precompute", "true"], "--loss orpo is reference-free, so --ref.precompute would be ignored"),
])  # fmt: skip
def test_reference_free_losses_refuse_a_reference(flags, message):
    with pytest.raises(ConfigError, match=f"^{message}: drop it, or use a loss with a reference"):
        resolve_loss(parse_config(DPOConfig, BASE + flags, "alignkit dpo"))


def test_list_flags_keep_negative_values():
    cfg = parse_config(SFTConfig, BASE + ["--train.adam_betas", "0.9", "-0.1", "--seed", "-3"], "alignkit sft")
    assert cfg.train.adam_betas == [0.9, -0.1] and cfg.seed == -3
