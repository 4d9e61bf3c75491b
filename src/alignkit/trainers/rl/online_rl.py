"""`alignkit rl`: one controller loop for every online algorithm (PPO, GRPO, Dr.GRPO, RLOO,
REINFORCE++, DAPO, GSPO, on-policy distillation). An algorithm is its config (config/rl.py, presets in config/presets/).

A step: generate n responses per prompt -> score -> (dynamic sampling) -> policy / reference / critic /
teacher forward passes -> advantages -> PPO epochs of mini-batch updates -> weights to the rollout engine.
The roles are created through an executor; this loop never knows where they run.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import torch

from alignkit.algos.aggregate import loss_count
from alignkit.algos.kl import AdaptiveKLController, FixedKLController
from alignkit.algos.losses.policy import tis_weight
from alignkit.algos.metric import Metric, merge_all, values
from alignkit.algos.shaping import informative_groups
from alignkit.checkpoint.state import TrainerState, read_state, save_state
from alignkit.config.rl import RLConfig
from alignkit.config.sampling import SamplingParams
from alignkit.data.prompts import Prompt, PromptStream, to_prompt
from alignkit.data.validate import check_labels, cut_to_max_length
from alignkit.metrics.logger import MetricsLogger
from alignkit.metrics.progress import progress_bar, short
from alignkit.metrics.report import write_report
from alignkit.models.load import load_tokenizer
from alignkit.models.padding import pad_id
from alignkit.orchestration.calls import RoleCall
from alignkit.orchestration.factory import build_executor
from alignkit.orchestration.roles import roles
from alignkit.rewards.rules import label_rules
from alignkit.rollout.base import Generation
from alignkit.rollout.engines import ENGINES
from alignkit.runtime.lock import run_lock
from alignkit.runtime.signals import graceful_stop, requested
from alignkit.trainers.rl.episodes import EpisodeRollout
from alignkit.trainers.rl.experience import layout, shape_rewards, with_advantages
from alignkit.trainers.rl.metrics import batch_metrics
from alignkit.trainers.rl.objectives import policy_objective_of, value_objective_of
from alignkit.trainers.rl.validate import validate_rl
from alignkit.trainers.run import Run, config_dict, load_records, start_run, stop_with_checkpoint
from alignkit.workers.critic import CriticWorker
from alignkit.workers.experience import Experience
from alignkit.workers.policy import PolicyWorker
from alignkit.workers.reference import ReferenceWorker
from alignkit.workers.reward import RewardWorker
from alignkit.workers.rollout import RolloutWorker
from alignkit.workers.teacher import TeacherWorker
from alignkit.workers.trained import RoleState

log = logging.getLogger("alignkit")


@dataclass
class Scored:
    """One generation round: the prompts, their responses, the rewards and reward components."""

    prompts: list[Prompt]
    gens: list[Generation]
    rewards: torch.Tensor
    components: dict[str, torch.Tensor]
    metrics: dict[str, Metric] = field(default_factory=dict)  # a multi-turn round's env/ metrics; none here

    # The round's face to the controller, shared with a multi-turn round (trainers/rl/episodes.py).
    def group_ids(self) -> torch.Tensor:
        return torch.tensor([g.prompt_index for g in self.gens])

    def response_lengths(self) -> torch.Tensor:
        return torch.tensor([len(g.response_ids) for g in self.gens])

    def truncated(self) -> torch.Tensor:
        return torch.tensor([g.finish_reason == "length" for g in self.gens], dtype=torch.bool)

    def sampled_tokens(self) -> int:
        return sum(len(g.response_ids) for g in self.gens)

    def select(self, keep: torch.Tensor) -> Scored:
        idx = keep.nonzero().flatten().tolist()
        return Scored(self.prompts, [self.gens[i] for i in idx], self.rewards[keep],
                      {k: v[keep] for k, v in self.components.items()})

    def rows(self, group_offset: int, pad_id: int) -> dict[str, torch.Tensor]:
        return layout(self.prompts, self.gens, group_offset, pad_id)


class OnlineRL:
    def __init__(self, cfg: RLConfig, run: Run, executor):
        self.cfg, self.run, a = cfg, run, cfg.algo
        self.executor = executor
        tokenizer = load_tokenizer(cfg.model)
        self.pad_id = pad_id(tokenizer)
        train_recs, eval_recs = (cut_to_max_length(r, tokenizer, cfg.data) for r in load_records(cfg))
        if not cfg.env_rewards:  # the reward role's label-reading rules compare with each record's answer
            check_labels(train_recs + eval_recs, cfg.data.label_key, label_rules(cfg.reward.rules))  # before any model
        eval_recs = eval_recs[: cfg.eval.max_prompts]
        # Multi-turn: the prompt records go to the environments (or agent code) as they are.
        self.episodes = EpisodeRollout(cfg, tokenizer) if cfg.multi_turn else None
        prompt = (lambda r: r.data) if self.episodes else (lambda r: to_prompt(r, tokenizer, cfg.data))
        self.stream = PromptStream([prompt(r) for r in train_recs], cfg.seed)
        self.eval_prompts = [prompt(r) for r in eval_recs]
        self.updates_per_step = a.ppo_epochs * a.mini_batches
        n_updates = cfg.train.max_steps * self.updates_per_step
        ex, has = self.executor, executor.roles  # the roles the controller gave its executor
        self.policy = ex.create("policy", PolicyWorker, cfg, n_updates)
        self.rollout = ex.create("rollout", RolloutWorker, cfg, ex.rollout_sleeps())
        self.reward = ex.create("reward", RewardWorker, cfg) if "reward" in has else None
        self.ref = ex.create("reference", ReferenceWorker, cfg) if "reference" in has else None
        self.critic = ex.create("critic", CriticWorker, cfg, n_updates) if "critic" in has else None
        self.teacher = ex.create("teacher", TeacherWorker, cfg) if "teacher" in has else None
        ex.ready()
        if self.episodes:
            self.episodes.attach(self.rollout, self.reward)
        self.kl_ctl = (AdaptiveKLController(a.kl_coef, a.kl_target, a.kl_horizon) if a.kl_target
                       else FixedKLController(a.kl_coef))
        self.tokenizer = tokenizer
        self.state = TrainerState()
        self.pipeline = None
        if cfg.rollout.async_:
            from alignkit.orchestration.ray.async_rollout import AsyncRollout

            self.pipeline = AsyncRollout(self.rollout, self.stream, lambda step: self.sampling(step, 0),
                                         cfg.train.batch_size, cfg.rollout.max_staleness, cfg.train.max_steps - 1,
                                         self.episodes.submit if self.episodes else None)

    # -- one step ---------------------------------------------------------------------------
    def sampling(self, step: int, attempt: int) -> SamplingParams:
        return self.cfg.rollout.sampling_params(seed=self.cfg.seed * 1_000_003 + step * 101 + attempt)

    def generate_and_score(self, prompts: list[Prompt], params: SamplingParams, timings: dict[str, float]) -> Scored:
        t0 = time.perf_counter()
        if self.episodes:  # multi-turn: the environments score as they go (timing/generate includes them)
            out = self.episodes.run(prompts, params, params.n)
            timings["timing/generate"] += time.perf_counter() - t0
            return out
        gens = self.rollout.generate([p.ids for p in prompts], params)
        timings["timing/generate"] += time.perf_counter() - t0
        return self.score(prompts, gens, timings)

    def score(self, prompts: list[Prompt], gens: list[Generation], timings: dict[str, float]) -> Scored:
        t0 = time.perf_counter()
        out = self.reward.score([prompts[g.prompt_index].text for g in gens], [g.text for g in gens],
                                [prompts[g.prompt_index].label for g in gens],
                                [prompts[g.prompt_index].source for g in gens])
        timings["timing/score"] += time.perf_counter() - t0
        lengths = torch.tensor([len(g.response_ids) for g in gens])
        rewards = shape_rewards(out.scores.float(), lengths, self.cfg.algo, self.cfg.rollout.max_new_tokens)
        return Scored(prompts, gens, rewards, out.components)

    def collect(self, step: int, timings: dict[str, float]) -> tuple[list[Scored], dict[str, float]]:
        """Generation rounds for one step. With dynamic sampling, groups whose rewards are all equal
        are dropped and more prompts drawn until the batch is full or the tries run out."""
        a, want = self.cfg.algo, self.cfg.train.batch_size
        kept: list[Scored] = []
        have, dropped, tries = 0, 0, 0
        while have < want and tries < max(1, a.max_sampling_tries if a.dynamic_sampling else 1):
            scored = self.generate_and_score(self.stream.take(want - have if tries else want),
                                             self.sampling(step, tries), timings)
            tries += 1
            if a.dynamic_sampling:
                groups = scored.group_ids()
                # Per prompt (a multi-turn group whose every trajectory failed has no samples: not informative)
                informative = torch.zeros(len(scored.prompts), dtype=torch.bool)
                informative[groups] = informative_groups(scored.rewards, groups)
                dropped += int((~informative).sum())
                # Keep the first informative groups that fit; extra ones of the last round are unused.
                keep_groups = informative & (informative.cumsum(0) <= want - have)
                if not keep_groups.any():
                    if tries == a.max_sampling_tries and not kept:
                        kept.append(scored)  # nothing informative at all: train on the last round
                    continue
                scored = scored.select(keep_groups[groups])
            kept.append(scored)
            have += len(set(scored.group_ids().tolist()))
        return kept, {"dynamic_sampling/dropped_groups": dropped, "dynamic_sampling/tries": tries}

    def collect_async(self, step: int, timings: dict[str, float]) -> tuple[list[Scored], int]:
        """The round of `step` from the pipeline, and the policy version that generated it
        (timing/generate is the time the trainer waited for it)."""
        t0 = time.perf_counter()
        r = self.pipeline.take(step, self.state.step)
        timings["timing/generate"] += time.perf_counter() - t0
        # A multi-turn round comes back scored by its environments (trainers/rl/episodes.py).
        return [r.gens if self.episodes else self.score(r.prompts, r.gens, timings)], r.version

    def make_experience(self, rounds: list[Scored], timings: dict[str, float], version: int) -> Experience:
        parts, offset = [], 0
        for r in rounds:
            parts.append(r.rows(offset, self.pad_id))
            offset += len(r.prompts)
        width = max(p["input_ids"].shape[1] for p in parts)
        cat = {k: _cat([p[k] for p in parts], width, self.pad_id if k == "input_ids" else 0) for k in parts[0]}
        exp = Experience(**cat, rewards=torch.cat([r.rewards for r in rounds]), version=version)
        t0 = time.perf_counter()
        a = self.cfg.algo
        if a.overlong_filter:  # DAPO's overlong filtering: no loss on truncated responses or trajectories
            truncated = torch.cat([r.truncated() for r in rounds])
            exp = exp.with_(response_mask=exp.response_mask * ~truncated[:, None])
        calls = {}  # independent forward passes: the executor may run them at the same time
        # Samples of an older policy (async) or of another engine's numerics (vLLM's kernels) are
        # corrected by truncated importance weights, which need pi_old as the trainer computes it.
        off_policy = self.pipeline is not None or ENGINES[self.cfg.rollout.engine].own_logprobs
        # Multi-turn rows always get them too: the mismatch on tokens sampled across turns is logged. A
        # teacher's advantage compares its log-probs with the policy's, both from the trainer's forward.
        if (self.updates_per_step > 1 or a.kl_placement == "reward" or off_policy or self.episodes
                or self.teacher is not None):
            calls["old_logp"] = RoleCall(self.policy, "logprobs", (exp,))
        if self.ref is not None:
            calls["ref_logp"] = RoleCall(self.ref, "logprobs", (exp,))
        if self.teacher is not None:
            calls["teacher_logp"] = RoleCall(self.teacher, "logprobs", (exp,))
        if self.critic is not None:
            calls["values"] = RoleCall(self.critic, "values", (exp,))
        exp = exp.with_(**dict(zip(calls, self.executor.run(list(calls.values())), strict=True)))
        if off_policy:
            exp = exp.with_(is_weight=tis_weight(exp.old_logp, exp.behaviour_logp, self.cfg.rollout.tis_cap))
        timings["timing/logprobs"] += time.perf_counter() - t0
        return with_advantages(exp, a, self.kl_ctl.value)

    def train_on(self, exp: Experience, step: int, timings: dict[str, float]) -> dict[str, Metric]:
        """PPO epochs x mini-batches of updates; the partial metrics of every update combined."""
        a, t0 = self.cfg.algo, time.perf_counter()
        obj, value_obj, updates = policy_objective_of(self.cfg, self.kl_ctl.value), value_objective_of(self.cfg), []
        train_policy = step >= a.critic_warmup_steps or self.critic is None
        gen = torch.Generator().manual_seed(self.cfg.seed * 7919 + step)
        for _ in range(a.ppo_epochs):
            order = torch.randperm(exp.n, generator=gen) if a.mini_batches > 1 else torch.arange(exp.n)
            for idx in order.chunk(a.mini_batches):
                mb, calls = exp.select(idx), []
                # The one denominator of this optimizer step, for every micro-batch and worker of it.
                denominator = loss_count(mb.response_mask, a.loss_agg)
                if self.critic is not None:
                    calls.append(RoleCall(self.critic, "update", (mb, value_obj, denominator)))
                if train_policy:
                    calls.append(RoleCall(self.policy, "update", (mb, obj, denominator)))
                updates += self.executor.run(calls)
        timings["timing/train"] += time.perf_counter() - t0
        return merge_all(updates)

    def sync(self, timings: dict[str, float]) -> None:
        t0 = time.perf_counter()
        if self.pipeline is not None:
            self.pipeline.send(self.executor.send_weights())  # loaded after the rounds already in flight
        else:
            self.executor.sync_weights()
        timings["timing/sync"] += time.perf_counter() - t0

    def step(self, step: int) -> dict[str, float]:
        timings = dict.fromkeys(("timing/generate", "timing/score", "timing/logprobs", "timing/train", "timing/sync"), 0.0)
        t0 = time.perf_counter()
        if self.pipeline is not None:
            rounds, version = self.collect_async(step, timings)
            extra = {"rollout/version": version, "rollout/staleness": step - version}
        else:
            rounds, ds_metrics = self.collect(step, timings)
            version, extra = step, ds_metrics if self.cfg.algo.dynamic_sampling else {}
        exp = self.make_experience(rounds, timings, version)
        metrics = batch_metrics(exp, rounds)
        metrics |= values(self.train_on(exp, step, timings))  # the step's metrics, reduced once
        if "kl" in metrics:
            self.kl_ctl.update(metrics["kl"], exp.n)
        self.sync(timings)
        dt = time.perf_counter() - t0
        gen_tokens = sum(r.sampled_tokens() for r in rounds)
        metrics |= extra
        metrics |= timings | {"kl_coef": self.kl_ctl.value, "step_time_s": dt, "tokens_per_s": gen_tokens / dt,
                              "generate_tokens_per_s": gen_tokens / max(timings["timing/generate"], 1e-9)}
        metrics.setdefault("loss", 0.0)  # the policy's objective; none while only the critic warms up
        return metrics

    # -- evaluation, checkpoints, the loop -------------------------------------------------------
    def evaluate(self) -> dict[str, float]:
        if not self.eval_prompts:
            return {}
        params = SamplingParams(n=1, temperature=0.0, max_new_tokens=self.cfg.rollout.max_new_tokens,
                                stop=list(self.cfg.rollout.stop))
        timings = {"timing/generate": 0.0, "timing/score": 0.0}
        s = self.generate_and_score(self.eval_prompts, params, timings)
        out = {"eval_reward": float(s.rewards.mean())}
        out |= {f"eval_reward/{k}": float(v.float().mean()) for k, v in s.components.items()}
        return out

    def trained(self) -> dict:
        return {"policy": self.policy} | ({"critic": self.critic} if self.critic is not None else {})

    def save(self) -> None:
        states = {k: w.checkpoint_state() for k, w in self.trained().items()}
        position = self.pipeline.position() if self.pipeline is not None else (self.stream.epoch, self.stream.offset)
        self.state.epoch, self.state.sample_offset = position
        self.state.extra = {"kl": self.kl_ctl.state_dict()}
        save_state(self.run.ckpt_dir, {k: s.weights for k, s in states.items()}, {k: s.optim for k, s in states.items()},
                   self.state, self.cfg.checkpoint.keep, self.run.record)

    def resume(self) -> None:
        roles = self.trained()
        self.state, weights, optims = read_state(self.run.resume_from, list(roles))
        for k, w in roles.items():
            w.load_checkpoint_state(RoleState(weights[k], optims[k]))
        self.stream.epoch, self.stream.offset = self.state.epoch, self.state.sample_offset
        self.kl_ctl.load_state_dict(self.state.extra["kl"])
        self.sync({"timing/sync": 0.0})  # the engine still holds the starting weights
        log.info("resumed from %s at step %d", self.run.resume_from, self.state.step)

    def train(self) -> dict[str, float]:
        cfg, total = self.cfg, self.cfg.train.max_steps
        if self.run.resume_from is not None:
            self.resume()
        logger = MetricsLogger(self.run.dir, cfg.logging, self.state.step if self.run.resume_from else None,
                               config_dict(cfg))
        bar = progress_bar(total, self.state.step, self.run.dir.name, cfg.logging.progress)
        start, last = time.perf_counter(), {}
        try:
            if self.state.step == 0 and self.eval_prompts:
                logger.log(0, self.evaluate())
            while self.state.step < total:
                metrics = self.step(self.state.step)
                self.state.step += 1
                is_last = self.state.step == total
                if is_last or (cfg.eval.steps and self.state.step % cfg.eval.steps == 0):
                    metrics |= self.evaluate()
                metrics["elapsed_s"] = time.perf_counter() - start
                if self.state.step % cfg.logging.log_steps == 0 or is_last:
                    logger.log(self.state.step, metrics)
                last = metrics
                bar.update(1)
                bar.set_postfix(short(metrics, ("reward/mean", "kl", "eval_reward", "generate_tokens_per_s")))
                periodic = bool(cfg.checkpoint.save_steps) and self.state.step % cfg.checkpoint.save_steps == 0
                if periodic and not is_last:
                    self.save()
                if not is_last and (signum := requested()) is not None:  # SIGTERM/SIGINT: runtime/signals.py
                    stop_with_checkpoint(self.run, signum, None if periodic else self.save, self.state.step)
        finally:
            bar.close()
            logger.close()
        return last


def _cat(tensors: list[torch.Tensor], width: int, pad: int) -> torch.Tensor:
    if tensors[0].dim() == 1:
        return torch.cat(tensors)
    return torch.cat([torch.nn.functional.pad(t, (0, width - t.shape[1]), value=pad) for t in tensors])


def run_rl(cfg: RLConfig) -> dict[str, float]:
    validate_rl(cfg)
    with run_lock(cfg.output_dir):  # one run per output_dir (runtime/lock.py)
        run = start_run(cfg)
        executor = build_executor(cfg, roles(cfg))  # the controller's roles, which the executor places
        trainer = None
        try:
            with graceful_stop(run.dir):  # after the executor: ray.init sets its own SIGTERM handler
                trainer = OnlineRL(cfg, run, executor)
                last = trainer.train()
            trainer.policy.export(str(run.dir / "final"))
        finally:
            if trainer is not None and trainer.episodes:
                trainer.episodes.close()  # the agent endpoint, when one was started
            executor.shutdown()  # the roles' processes, even when building or training failed
    write_report(run.dir)
    return last
