"""The sizes of a kit run: `GPU` (the one prepared run on an H200, about 6-7 minutes) and `TINY` (the
CPU dry run in CI: every part on a tiny model, a few seconds each).

The GPU sizes are the issue's where it gives them (a Qwen2-0.5B-shaped model in bf16, 128 and 512
completions, 5 GRPO steps, 2 FSDP2 steps, a 152k vocabulary) and kept modest elsewhere so that the
whole run fits one device call: 128 new tokens per completion (a random model never stops early, so
every completion is that long), SFT steps of 16 short samples, and 8 x 2048 tokens for the log-prob
memory (the setting of issue 11).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Setting:
    """One size of the kit; the parts read their numbers from here."""

    model_flags: tuple[str, ...]
    """`alignkit init-tiny` flags of the model every part uses."""
    dtype: str
    """`--model.dtype` of every run."""
    gen_prompts: tuple[int, ...]
    """Distinct prompts of each generation measurement (x `gen_n` completions)."""
    gen_n: int
    """Completions per prompt in the generation measurements."""
    gen_max_new_tokens: int
    """Longest completion of the generation measurements."""
    gen_repeats: int
    """Timed generation runs per side (after one warm-up); the median is reported."""
    grpo_steps: int
    """GRPO steps (16 prompts x 8 completions each; the first is warm-up, not timed)."""
    grpo_max_new_tokens: int
    """Longest GRPO completion."""
    grpo_micro_batch: int
    """Sequences per training forward/backward in the GRPO run."""
    sft_steps: int
    """Steps of the torchrun SFT runs (FSDP2, DeepSpeed)."""
    sft_batch: int
    """Samples per SFT step."""
    sft_micro_batch: int
    """Samples per SFT forward/backward."""
    lp_samples: int
    """Sequences of the log-prob memory step (one micro-batch)."""
    lp_tokens: int
    """Tokens of each such sequence."""
    matmul_sizes: tuple[int, ...]
    """Square matmul sizes for the matmul peak."""
    tests_k: str
    """pytest `-k` expression for the tests part ('' = every CUDA-capable test)."""
    timeouts: dict[str, int]
    """Seconds each part may take before it is stopped."""
    budget_s: int
    """Seconds for the whole run; a part that would start with less than a minimum left is skipped."""


GPU = Setting(
    model_flags=("--arch", "qwen2", "--hidden", "896", "--layers", "24", "--heads", "14", "--kv_heads", "2",
                 "--intermediate", "4864", "--model_vocab", "151936"),
    dtype="bfloat16",
    gen_prompts=(16, 64), gen_n=8, gen_max_new_tokens=128, gen_repeats=2,
    grpo_steps=5, grpo_max_new_tokens=128, grpo_micro_batch=32,
    sft_steps=2, sft_batch=16, sft_micro_batch=8,
    lp_samples=8, lp_tokens=2048,
    matmul_sizes=(4096, 8192),
    tests_k="",
    timeouts={"env": 60, "tests": 150, "model": 120, "generate": 150, "grpo": 180, "fsdp2": 120,
              "logprob_memory": 150, "deepspeed": 150},
    budget_s=480,
)

TINY = Setting(
    model_flags=("--arch", "qwen2", "--hidden", "64", "--layers", "2", "--heads", "4", "--kv_heads", "2",
                 "--model_vocab", "2048"),
    dtype="float32",
    gen_prompts=(2, 4), gen_n=2, gen_max_new_tokens=4, gen_repeats=1,
    grpo_steps=2, grpo_max_new_tokens=4, grpo_micro_batch=64,
    sft_steps=2, sft_batch=4, sft_micro_batch=2,
    lp_samples=2, lp_tokens=32,
    matmul_sizes=(128, 256),
    tests_k="packed_forward_equals_separate",
    timeouts={"env": 60, "tests": 120, "model": 60, "generate": 60, "grpo": 120, "fsdp2": 120,
              "logprob_memory": 90, "deepspeed": 150},
    budget_s=900,
)
