"""The multi-turn loop with a scripted engine: token layout, one engine call per wave, limits, and
every failure path (raise, hang past the timeout, async hang, bad return, all failing)."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest
from envs_helpers import ScriptedEngine

from alignkit.config.sampling import SamplingParams
from alignkit.envs.loop import Episode, Limits, run_episodes
from alignkit.errors import AlignkitError

PARAMS = SamplingParams(max_new_tokens=32, seed=5)
LIMITS = Limits(step_timeout_s=2.0)


class Countdown:
    """Terminates after `steps` steps with reward 1 (0.25 for each step before); the observation of
    step k is `left: <steps - k>`."""

    def __init__(self, steps: int = 3, fail_at: int | None = None, hang_at: int | None = None):
        self.steps, self.fail_at, self.hang_at = steps, fail_at, hang_at

    def reset(self, seed=None, **record):
        self.k = 0
        self.record = record
        self.seed = seed
        return f"start {record.get('prompt', '')}", {}

    def step(self, action):
        self.k += 1
        if self.k == self.fail_at:
            raise ValueError("boom")
        if self.k == self.hang_at:
            time.sleep(3)
        done = self.k >= self.steps
        return f"left: {self.steps - self.k}", 1.0 if done else 0.25, done, False, {}


def echo_engine(tokenizer, reply="ok"):
    return ScriptedEngine(tokenizer, lambda prompt: reply)


def run(tokenizer, envs, engine=None, limits=LIMITS, records=None):
    engine = engine or echo_engine(tokenizer)
    records = records or [{"prompt": f"p{i}"} for i in range(len(envs))]
    episodes = [Episode(r, seed=10 + i, group=i // 2) for i, r in enumerate(records)]
    it = iter(envs)
    return run_episodes(engine, tokenizer, lambda: next(it), episodes, PARAMS, limits), engine


def test_layout_is_the_conversation_and_trained_ids_are_the_samples(tokenizer):
    (traj,), engine = run(tokenizer, [Countdown(3)])
    assert traj.reward == pytest.approx(0.25 + 0.25 + 1.0)
    assert traj.turn_rewards == [0.25, 0.25, 1.0]
    assert not traj.truncated and not traj.failed and len(traj.turns) == 3
    conversation = [{"role": "user", "content": "start p0"}]
    for k in range(3):
        conversation.append({"role": "assistant", "content": "ok"})
        if k < 2:
            conversation.append({"role": "user", "content": f"left: {2 - k}"})
    # The tiny ChatML template rewrites nothing, so the ids read back as its rendering of the whole
    # conversation (the last turn ends with the model's own <|im_end|>, without the template's "\n").
    full = tokenizer.apply_chat_template(conversation, tokenize=False)
    assert tokenizer.decode(traj.ids) == full.removesuffix("\n")
    assert traj.prompt_ids == tokenizer(tokenizer.apply_chat_template(conversation[:1], tokenize=False,
                                                                      add_generation_prompt=True))["input_ids"]
    for turn, sampled in zip(traj.turns, engine.samples, strict=True):
        assert traj.ids[turn.start:turn.end] == sampled
        assert traj.trained[turn.start:turn.end] == [1] * len(sampled)
        assert traj.logprobs[turn.start:turn.end] == [-(j + 1) / 10 for j in range(len(sampled))]
    assert sum(traj.trained) == traj.model_tokens == 3 * len(engine.samples[0])
    assert all(lp == 0.0 for lp, t in zip(traj.logprobs, traj.trained, strict=True) if not t)
    # what the environment added: "\n<|im_start|>user\nleft: N<|im_end|>\n<|im_start|>assistant\n" twice
    added = tokenizer("\n<|im_start|>user\nleft: 2<|im_end|>\n<|im_start|>assistant\n")["input_ids"]
    assert traj.env_tokens == 2 * len(added)


def test_one_engine_call_per_wave_with_every_waiting_episode(tokenizer):
    envs = [Countdown(1), Countdown(3), Countdown(2), Countdown(3)]
    trajs, engine = run(tokenizer, envs)
    assert [n for n, _ in engine.calls] == [4, 3, 2]
    assert [len(t.turns) for t in trajs] == [1, 3, 2, 3]
    assert [p.n for _, p in engine.calls] == [1, 1, 1]
    assert [p.seed for _, p in engine.calls] == [5, 5 + 7919, 5 + 2 * 7919]
    assert [t.group for t in trajs] == [0, 0, 1, 1] and [t.episode for t in trajs] == [0, 1, 2, 3]


def test_record_fields_and_seed_reach_reset(tokenizer):
    envs = [Countdown(1), Countdown(1)]
    run(tokenizer, envs, records=[{"prompt": "a", "x": 1}, {"prompt": "b", "seed": 99}])
    assert envs[0].record == {"prompt": "a", "x": 1} and envs[0].seed == 10
    assert envs[1].record == {"prompt": "b"} and envs[1].seed == 99


def test_env_that_raises_fails_its_trajectory_only(tokenizer, caplog):
    with caplog.at_level(logging.WARNING, logger="alignkit"):
        (bad, good), _ = run(tokenizer, [Countdown(3, fail_at=2), Countdown(3)])
    assert bad.failed and bad.reward == 0.0 and len(bad.turns) == 2
    assert bad.error == f"step 2: ValueError: boom ({__file__.rsplit('/', 1)[1]}:{Countdown.step.__code__.co_firstlineno + 3})"
    assert not good.failed and good.reward == pytest.approx(1.5)
    assert "multi-turn episode 0 (group 0) failed at step 2: ValueError: boom" in caplog.text


def test_env_that_hangs_times_out_without_stalling_the_others(tokenizer):
    start = time.monotonic()
    (slow, fast), engine = run(tokenizer, [Countdown(3, hang_at=1), Countdown(3)],
                               limits=Limits(step_timeout_s=0.3))
    assert time.monotonic() - start < 2.0  # the hung step (3 s) is abandoned at its limit
    assert slow.failed and slow.error == "step 1: timed out after 0.3 s (--env.step_timeout_s)"
    assert not fast.failed and len(fast.turns) == 3
    assert [n for n, _ in engine.calls] == [2, 1, 1]


class AsyncEnv:
    cancelled = False

    async def reset(self, seed=None, **record):
        await asyncio.sleep(0)
        self.hang = record.get("hang", False)
        return [{"role": "user", "content": "go"}], {}

    async def step(self, action):
        if self.hang:
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                AsyncEnv.cancelled = True
                raise
        return None, 2.0, True, False, {}


def test_async_env_and_async_hang_is_cancelled(tokenizer):
    (hung, ok), _ = run(tokenizer, [AsyncEnv(), AsyncEnv()], limits=Limits(step_timeout_s=0.3),
                        records=[{"hang": True}, {}])
    assert hung.failed and hung.error == "step 1: timed out after 0.3 s (--env.step_timeout_s)"
    assert ok.reward == 2.0 and not ok.failed
    deadline = time.monotonic() + 2
    while not AsyncEnv.cancelled and time.monotonic() < deadline:
        time.sleep(0.01)
    assert AsyncEnv.cancelled


class BrokenReset(Countdown):
    def reset(self, seed=None, **record):
        raise RuntimeError("no sandbox")


def test_reset_failure_and_whole_batch_failure(tokenizer):
    (bad, good), _ = run(tokenizer, [BrokenReset(), Countdown(1)])
    assert bad.failed and bad.error.startswith("reset: RuntimeError: no sandbox (") and bad.ids == []
    assert not good.failed
    with pytest.raises(AlignkitError) as e:
        run(tokenizer, [BrokenReset(), BrokenReset()])
    assert str(e.value).startswith("all 2 multi-turn trajectories failed; the first (episode 0): reset: RuntimeError: no sandbox")


class BadReward(Countdown):
    def step(self, action):
        return "x", float("nan"), False, False, {}


class BadTuple(Countdown):
    def step(self, action):
        return "x", 1.0


def test_protocol_violations_fail_the_trajectory(tokenizer):
    (nan, short, good), _ = run(tokenizer, [BadReward(), BadTuple(), Countdown(1)])
    assert nan.error == "step 1: EnvProtocolError: step returned the reward nan; it must be a finite number"
    assert short.error == ("step 1: EnvProtocolError: step must return (observation, reward, terminated, "
                           "truncated, info), got tuple of length 2")
    assert not good.failed


def test_max_turns_truncates(tokenizer):
    (traj,), _ = run(tokenizer, [Countdown(100)], limits=Limits(max_turns=4))
    assert traj.truncated and traj.truncation == "max_turns" and len(traj.turns) == 4
    assert traj.reward == pytest.approx(4 * 0.25)  # the last turn is still stepped and rewarded


def test_max_tokens_cuts_the_turn_and_truncates(tokenizer):
    engine = echo_engine(tokenizer, reply="a long answer " * 4)
    turn = len(tokenizer("a long answer " * 4)["input_ids"]) + 1
    (traj,), _ = run(tokenizer, [Countdown(100)], engine=engine, limits=Limits(max_tokens=turn + 5))
    # turn 1 fits; the observation after it (about 15 tokens) leaves no room: the trajectory ends there
    assert traj.truncation == "max_tokens" and len(traj.turns) == 1 and traj.turns[0].finish_reason == "stop"
    assert len(traj.ids) - len(traj.prompt_ids) == turn
    # a budget smaller than one turn: the turn is cut to it, finish "length", the env still steps it
    (cut,), engine = run(tokenizer, [Countdown(100)], engine=echo_engine(tokenizer, "a long answer " * 4),
                         limits=Limits(max_tokens=7))
    assert cut.truncation == "max_tokens" and cut.turns[0].finish_reason == "length"
    assert cut.turns[0].end - cut.turns[0].start == 7 and cut.reward == 0.25
    assert engine.calls[0][1].max_new_tokens == 7


class GemStyle(Countdown):
    def __init__(self, terminated, truncated):
        super().__init__()
        self.flags = (terminated, truncated)

    def step(self, action):
        return "end", 0.5, *self.flags, {}


def test_env_truncation_and_terminated_wins(tokenizer):
    (cut, done), _ = run(tokenizer, [GemStyle(False, True), GemStyle(True, True)])
    assert cut.truncated and cut.truncation == "env"
    assert not done.truncated and done.truncation == ""
