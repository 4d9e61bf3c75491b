"""`alignkit rejection-sample`: best-of-n by reward, written as an SFT or a preference-pair dataset."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from tqdm import tqdm

from alignkit.config.rl import RejectionSamplingConfig
from alignkit.data.mixture import load_mixture
from alignkit.data.prompts import to_prompt
from alignkit.data.validate import check_labels, cut_to_max_length
from alignkit.errors import ConfigError
from alignkit.models.load import load_tokenizer
from alignkit.rewards.base import RewardInput
from alignkit.rewards.registry import build_reward
from alignkit.rewards.rules import label_rules
from alignkit.rollout.engines import build_engine

log = logging.getLogger("alignkit")


def run_rejection_sampling(cfg: RejectionSamplingConfig) -> dict[str, float]:
    if not cfg.data.train_files:
        raise ConfigError("--data.train_files is required: the prompts to sample for")
    tokenizer = load_tokenizer(cfg.model)
    records = cut_to_max_length(load_mixture(cfg.data.train_files, max_samples=cfg.data.max_samples, seed=cfg.seed),
                                tokenizer, cfg.data)
    check_labels(records, cfg.data.label_key, label_rules(cfg.reward.rules))
    prompts = [to_prompt(r, tokenizer, cfg.data) for r in records]
    engine = build_engine(cfg.model, cfg.rollout, cfg.device)
    reward = build_reward(cfg.reward)
    n = cfg.rollout.n_samples_per_prompt
    out = Path(cfg.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    written, best_sum = 0, 0.0
    with out.open("w") as f:
        for i in tqdm(range(0, len(prompts), cfg.batch_size), desc="best-of-n", unit="batch", disable=None):
            batch = prompts[i : i + cfg.batch_size]
            gens = engine.generate([p.ids for p in batch], cfg.rollout.sampling_params(cfg.seed + i))
            scores = reward(RewardInput([batch[g.prompt_index].text for g in gens], [g.text for g in gens],
                                        [batch[g.prompt_index].label for g in gens],
                                        [batch[g.prompt_index].source for g in gens])).scores.view(len(batch), n)
            for j, p in enumerate(batch):
                best, worst = int(scores[j].argmax()), int(scores[j].argmin())
                top = float(scores[j, best])
                if cfg.min_reward is not None and top < cfg.min_reward:
                    continue
                if cfg.mode == "sft":
                    row = {"prompt": p.text, "response": gens[j * n + best].text, "reward": top}
                elif top > float(scores[j, worst]):  # a pair needs a strict preference
                    row = {"prompt": p.text, "chosen": gens[j * n + best].text,
                           "rejected": gens[j * n + worst].text, "margin": top - float(scores[j, worst])}
                else:
                    continue
                f.write(json.dumps(row) + "\n")
                written += 1
                best_sum += top
    log.info("%d of %d prompts written to %s", written, len(prompts), out)
    return {"prompts": len(prompts), "written": written, "mean_best_reward": best_sum / max(written, 1)}
