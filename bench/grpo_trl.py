"""The TRL side of bench_grpo.py: one `GRPOTrainer` run in this process, in the same setting.

A step is ONE generation round of 128 completions and one optimizer step (steps_per_generation =
gradient_accumulation_steps = 128 / micro-batch), with a separate reference model (beta > 0) and no
gradient checkpointing; both are asserted. A `TrainerCallback` stamps on_step_begin -> on_step_end
(the generation round runs inside, in `_prepare_inputs`); the breakdown times `_generate`,
`_calculate_rewards` and the no-grad `_get_per_token_logps_and_entropies` calls (the rest is
`train+rest`). The reward wrapper also notes each round's prompts and completion lengths.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import time
from pathlib import Path

from common import MemoryMeter, step_gaps
from grpo_setting import GROUP, PROMPTS_PER_STEP, trl_reward


def run_trl(args: argparse.Namespace, work: Path, model_dir: Path, device: str, t0: float) -> dict:
    """One run; its per-step figures. `t0`: the clock when this process started (for start-up time)."""
    import trl
    from datasets import Dataset
    from transformers import AutoTokenizer, PrinterCallback, ProgressCallback, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    records = [json.loads(line) for line in (work / "prompts.jsonl").read_text().splitlines() if line.strip()]
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    meter = MemoryMeter(device)
    marks: dict[str, float] = {}
    begins: list[float] = []
    cpu_begins: list[float] = []
    cpu_ends: list[float] = []
    ends: list[float] = []
    rounds: list[tuple[list[str], list[int]]] = []  # per reward call: prompt texts, completion lengths
    seen: list[dict] = []  # TRL's per-step logs (reward, kl, ...)

    def reward(prompts, completions, completion_ids=None, **kw):  # the shared reward; it also notes lengths
        rounds.append((list(prompts), [len(c) for c in completion_ids]))
        return trl_reward(prompts, completions, **kw)

    reward.__name__ = "digit_share"

    class Clock(TrainerCallback):
        def on_train_begin(self, a, state, control, **kw):
            marks["train_start"] = time.perf_counter()
            meter.start()

        def on_step_begin(self, a, state, control, **kw):
            begins.append(time.perf_counter())
            cpu_begins.append(time.process_time())

        def on_step_end(self, a, state, control, **kw):
            ends.append(time.perf_counter())
            cpu_ends.append(time.process_time())

        def on_log(self, a, state, control, logs=None, **kw):
            if logs:
                seen.append(dict(logs))

        def on_train_end(self, a, state, control, **kw):
            meter.stop()

    class Phases(TrainerCallback):
        def __init__(self, store):
            self.store = store

        def on_step_begin(self, a, state, control, **kw):
            self.store.append(dict.fromkeys(("generate", "score", "logprobs"), 0.0))

    mb = args.trl_micro_batch or args.micro_batch
    accum = PROMPTS_PER_STEP * GROUP // mb
    fields = {f.name for f in dataclasses.fields(GRPOConfig)}
    no_ckpt = "activation_checkpointing" if "activation_checkpointing" in fields else "gradient_checkpointing"
    config = GRPOConfig(
        output_dir=str(work / f"run_trl_{args.size}"),
        # A step: accum micro-batches of mb completions = 128 completions = 16 prompts x 8, all from ONE
        # generation round (steps_per_generation = accum, so generation_batch_size = mb x accum = 128).
        per_device_train_batch_size=mb, gradient_accumulation_steps=accum, steps_per_generation=accum,
        num_generations=GROUP, max_completion_length=args.max_new_tokens,
        temperature=1.0, top_p=1.0, top_k=0,
        beta=args.beta, num_iterations=1, epsilon=0.2, loss_type="grpo", scale_rewards="group",
        learning_rate=args.lr, max_steps=args.steps,
        adam_beta1=0.9, adam_beta2=0.95, weight_decay=0.0, max_grad_norm=1.0,
        bf16=False, fp16=False, use_cpu=device == "cpu", model_init_kwargs={"dtype": "float32"},
        report_to=[], logging_steps=1, save_strategy="no", eval_strategy="no", disable_tqdm=True,
        dataloader_num_workers=0, seed=42, **{no_ckpt: False},
    )
    trainer = GRPOTrainer(model=str(model_dir), reward_funcs=[reward], args=config,
                          train_dataset=Dataset.from_list(records), processing_class=tokenizer,
                          callbacks=[Clock()])
    for cb in (PrinterCallback, ProgressCallback):
        trainer.remove_callback(cb)
    phases: list[dict[str, float]] = []  # per step: seconds in generation, reward, no-grad log-prob forwards

    def timed(name, fn, only_no_grad=False):  # the same method; it also adds its run time to phases[-1][name]
        import torch

        def wrapper(*a, **kw):
            if only_no_grad and torch.is_grad_enabled():
                return fn(*a, **kw)
            t = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                phases[-1][name] += time.perf_counter() - t
        return wrapper

    trainer._generate = timed("generate", trainer._generate)
    trainer._calculate_rewards = timed("score", trainer._calculate_rewards)
    trainer._get_per_token_logps_and_entropies = timed(
        "logprobs", trainer._get_per_token_logps_and_entropies, only_no_grad=True)
    trainer.add_callback(Phases(phases))
    assert trainer.ref_model is not None, "beta > 0 must give TRL a separate reference model"
    assert trainer.args.generation_batch_size == PROMPTS_PER_STEP * GROUP, trainer.args.generation_batch_size
    trainer.train()
    if len(ends) != args.steps or len(rounds) != args.steps:
        raise SystemExit(f"expected {args.steps} TRL steps and generation rounds, got {len(ends)} / {len(rounds)}")
    prompt_lens = [[len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in ps] for ps, _ in rounds]
    steps = [{"time_s": e - b, "cpu_s": cpu_ends[i] - cpu_begins[i], "completions": len(rounds[i][1]),
              "prompt_lens": prompt_lens[i],
              "response_lens": rounds[i][1],
              # TRL pads a generation batch to its longest prompt + longest completion; micro-batches slice it
              "slots": len(rounds[i][1]) * (max(prompt_lens[i]) + max(rounds[i][1])),
              "breakdown": phases[i] | {"train+rest": (e - b) - sum(phases[i].values())}}
             for i, (b, e) in enumerate(zip(begins, ends, strict=True))]
    last = [entry for entry in seen if "reward" in entry]
    return {"version": trl.__version__, "startup_s": marks["train_start"] - t0, "steps": steps,
            "reward_last": last[-1]["reward"] if last else math.nan,
            "kl_last": last[-1].get("kl", math.nan) if last else math.nan, "timed_from": args.warmup,
            "end_to_end_gaps_s": step_gaps(ends, args.warmup),
            **meter.as_dict()}
