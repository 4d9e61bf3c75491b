"""The multi-turn rollout loop: many episodes in flight, one engine call per turn wave.

    wave 0: build and reset every environment at once (threads, or the shared event loop)
    wave k: generate one turn for EVERY episode still running, in ONE `engine.generate` call (n = 1
            each, its prompt = its token ids so far); then step every environment at once and wait
            at most `step_timeout_s` for them all; append each observation's ids; repeat

Limits: a trajectory still running after `max_turns` model turns, or whose tokens after the prompt
reach `max_tokens` (a turn is cut to the budget left; an observation that would not leave room for
one more token is not added), ends truncated. The environment is stepped on every sampled turn, the
last one too, so a cut turn still earns its reward.

Failure rule: an environment whose constructor, reset or step raises, times out, or breaks the
protocol ends its trajectory as FAILED, with the exception text; failed trajectories are to be
DROPPED from the training batch (envs/rows.py `trainable`), not given a zero reward: the failure says
nothing about the policy (a flaky tool, a crashed sandbox), and a zero would teach the model to avoid
whatever preceded it. Each failure is logged with its exception and counted (envs/metrics.py). When
every trajectory of a call fails, the call raises AlignkitError naming the first failure.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any

from alignkit.config.sampling import SamplingParams
from alignkit.envs.calls import call_all, resolve
from alignkit.envs.chat_format import ChatFormat, RawFormat
from alignkit.envs.protocol import EnvFactory, check_reset, check_step
from alignkit.envs.trajectory import Builder, Trajectory, Truncation
from alignkit.errors import AlignkitError
from alignkit.rollout.base import Generation, RolloutEngine

log = logging.getLogger("alignkit")


@dataclass(frozen=True)
class Episode:
    """One trajectory to run: the prompt record given to `reset` (a `seed` field in it wins over
    `seed`), and the group it belongs to (the episodes of one prompt share a group)."""

    record: dict[str, Any]
    seed: int | None = None
    group: int = 0


@dataclass(frozen=True)
class Limits:
    max_turns: int = 8
    max_tokens: int = 1024  # tokens after the prompt, sampled and added
    step_timeout_s: float = 60.0  # per reset or step (all of a wave's run at once)


@dataclass
class _Live:
    env: Any
    fmt: ChatFormat | RawFormat
    traj: Builder
    last: Generation | None = None  # the newest turn, for the end-of-turn rule


def _start(make_env: EnvFactory, episode: Episode, timeout: float) -> tuple[Any, Any]:
    env = make_env()
    record = {k: v for k, v in episode.record.items() if k != "seed"}
    seed = episode.record.get("seed", episode.seed)
    return env, check_reset(resolve(env.reset(seed=seed, **record), timeout))


def cut_turn(gen: Generation, budget: int, tokenizer) -> Generation:
    """The turn kept within `budget` tokens, finish "length" when cut (a prefix of a sample is a sample
    under a shorter limit, with the same log-probs)."""
    if len(gen.response_ids) <= budget:
        return gen
    ids = gen.response_ids[:budget]
    return Generation(gen.prompt_index, ids, gen.logprobs[:budget], "length",
                      tokenizer.decode(ids, skip_special_tokens=True))


class _Run:
    """The state of one `run_episodes` call."""

    def __init__(self, engine, tokenizer, episodes: list[Episode], limits: Limits,
                 template_kwargs: dict[str, Any] | None, raw_text: bool):
        self.engine, self.tokenizer, self.episodes, self.limits = engine, tokenizer, episodes, limits
        self.template_kwargs, self.raw_text = template_kwargs, raw_text
        self.live: dict[int, _Live] = {}
        self.done: dict[int, Trajectory] = {}

    def fail(self, i: int, where: str, error: str, traj: Builder | None = None) -> None:
        ep = self.episodes[i]
        hint = " (--env.step_timeout_s)" if error.startswith("timed out") else ""
        message = f"{where}: {error}{hint}"
        log.warning("multi-turn episode %d (group %d) failed at %s", i, ep.group, message)
        self.done[i] = (traj or Builder([])).build(i, ep.group, error=message)
        self.live.pop(i, None)

    def finish(self, i: int, truncation: Truncation = "") -> None:
        self.done[i] = self.live.pop(i).traj.build(i, self.episodes[i].group, truncation)

    def start(self, make_env: EnvFactory) -> None:
        timeout = self.limits.step_timeout_s
        outcomes = call_all([lambda ep=ep: _start(make_env, ep, timeout) for ep in self.episodes], timeout)
        for i, out in enumerate(outcomes):
            if not out.ok:
                self.fail(i, "reset", out.error)
                continue
            env, (messages, info) = out.value
            try:
                fmt = RawFormat(self.tokenizer) if self.raw_text else ChatFormat(
                    self.tokenizer, getattr(env, "tools", None), self.template_kwargs)
                traj = Builder(fmt.prompt_ids(messages))
                traj.count(out.seconds, info)
            except (AlignkitError, TypeError, ValueError) as e:
                self.fail(i, "prompt", f"{type(e).__name__}: {e}")
                continue
            self.live[i] = _Live(env, fmt, traj)

    def generate(self, params: SamplingParams, wave: int) -> None:
        """One turn for every live episode, in one engine call."""
        order = sorted(self.live)
        budgets = [self.limits.max_tokens - self.live[i].traj.response_tokens for i in order]
        wave_params = dataclasses.replace(
            params, n=1, max_new_tokens=min(params.max_new_tokens, max(budgets)),
            seed=None if params.seed is None else params.seed + 7919 * wave,
        )
        gens = self.engine.generate([self.live[i].traj.ids for i in order], wave_params)
        for i, gen, budget in zip(order, gens, budgets, strict=True):
            live = self.live[i]
            live.last = cut_turn(gen, budget, self.tokenizer)
            live.traj.add_sampled(live.last.response_ids, live.last.logprobs, live.last.finish_reason)

    def step(self) -> None:
        """Step every live environment with its newest turn, at once; apply what each returned."""
        order = sorted(self.live)
        outcomes = call_all(
            [lambda live=self.live[i]: live.env.step(live.last.text) for i in order], self.limits.step_timeout_s
        )
        for i, out in zip(order, outcomes, strict=True):
            live = self.live[i]
            where = f"step {len(live.traj.turns)}"
            if not out.ok:
                self.fail(i, where, out.error, live.traj)
                continue
            try:
                result = check_step(out.value)
                live.traj.count(out.seconds, result.info)
            except Exception as e:  # the environment broke the protocol (a bad tuple, reward, info counter)
                self.fail(i, where, f"{type(e).__name__}: {e}", live.traj)
                continue
            live.traj.reward_last_turn(result.reward)
            if result.terminated:
                self.finish(i)
            elif result.truncated:
                self.finish(i, "env")
            elif len(live.traj.turns) >= self.limits.max_turns:
                self.finish(i, "max_turns")
            else:
                self.add_observation(i, result.messages)

    def add_observation(self, i: int, messages: list) -> None:
        live = self.live[i]
        last = live.last
        ended = last.finish_reason == "stop" and len(last.response_ids) > 0
        try:
            ids = live.fmt.continuation_ids(messages, last.response_ids[-1] if ended else None, ended)
        except AlignkitError as e:
            self.fail(i, f"observation after turn {len(live.traj.turns)}", str(e), live.traj)
            return
        if live.traj.response_tokens + len(ids) >= self.limits.max_tokens:
            self.finish(i, "max_tokens")  # no room left for the model to answer the observation
            return
        live.traj.add_context(ids)


def run_episodes(
    engine: RolloutEngine,
    tokenizer,
    make_env: EnvFactory,
    episodes: list[Episode],
    params: SamplingParams,
    limits: Limits,
    template_kwargs: dict[str, Any] | None = None,
    raw_text: bool = False,
) -> list[Trajectory]:
    """Run every episode to its end; returns one Trajectory per episode, in order.

    params: how each turn is sampled (n is ignored: one sample per episode per turn; max_new_tokens
    bounds each turn; a seed gives wave k the seed `seed + 7919 k`). template_kwargs: extra chat
    template variables (enable_thinking). raw_text: no chat template, text observations tokenised as
    they are (envs/chat_format.py RawFormat). The model must have room for the longest prompt +
    max_tokens + params.max_new_tokens positions (a wave asks every episode for the same number).
    """
    run = _Run(engine, tokenizer, episodes, limits, template_kwargs, raw_text)
    run.start(make_env)
    wave = 0
    while run.live:
        run.generate(params, wave)
        run.step()
        wave += 1
    out = [run.done[i] for i in range(len(episodes))]
    if out and all(t.failed for t in out):
        first = out[0]
        raise AlignkitError(f"all {len(out)} multi-turn trajectories failed; the first (episode 0): {first.error}")
    return out
