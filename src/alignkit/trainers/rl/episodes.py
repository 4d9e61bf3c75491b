"""Multi-turn rollouts of `alignkit rl` (--env.class, --env.gem, --env.tools, --agent).

The controller turns each prompt record into `n_samples_per_prompt` episodes (one group, one seed, so
a group plays the same game) and runs them here: envs/loop.py steps the environments and, at each
turn, generates for every waiting episode in one call on the rollout role (through the executor, so
the engine may be a Ray actor group); with --agent the agent code drives the same role through the
OpenAI-compatible endpoint (envs/agent_server.py). The trajectories that did not fail become the rows
the trainer consumes (envs/rows.py): the sampled ids trained with their sampling log-probs, the
environment's and template's ids with response_mask 0, each turn's reward at its last sampled token.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import logging
from dataclasses import dataclass, field
from typing import Any

import torch

from alignkit.algos.metric import Metric
from alignkit.config.rl import RLConfig
from alignkit.config.sampling import SamplingParams
from alignkit.envs.factory import build_env_factory
from alignkit.envs.loop import Episode, Limits, run_episodes
from alignkit.envs.metrics import env_metrics
from alignkit.envs.rows import to_rows, trainable
from alignkit.envs.trajectory import Trajectory
from alignkit.rewards.base import RewardInput, RewardOutput
from alignkit.trainers.rl.experience import shape_rewards

log = logging.getLogger("alignkit")


@dataclass
class EpisodeRound:
    """One multi-turn generation round: its prompt records, the trajectories that did not fail (a
    trajectory's `group` is its prompt's index in `prompts`), their rewards after shaping `(n,)`, and
    the `env/...` metrics of every trajectory of the round, failed ones included."""

    prompts: list[dict[str, Any]]
    trajectories: list[Trajectory]
    rewards: torch.Tensor
    metrics: dict[str, Metric]
    components: dict[str, torch.Tensor] = field(default_factory=dict)  # environments give one reward

    def group_ids(self) -> torch.Tensor:
        return torch.tensor([t.group for t in self.trajectories], dtype=torch.long)

    def response_lengths(self) -> torch.Tensor:
        """Tokens after the prompt of each trajectory (sampled and added), what --env.max_tokens bounds."""
        return torch.tensor([len(t.ids) - len(t.prompt_ids) for t in self.trajectories])

    def truncated(self) -> torch.Tensor:
        return torch.tensor([t.truncated for t in self.trajectories], dtype=torch.bool)

    def sampled_tokens(self) -> int:
        return sum(t.model_tokens for t in self.trajectories)

    def select(self, keep: torch.Tensor) -> EpisodeRound:
        """The trajectories where `keep (n,)` is true (the metrics stay those of the whole round)."""
        idx = keep.nonzero().flatten().tolist()
        return EpisodeRound(self.prompts, [self.trajectories[i] for i in idx], self.rewards[keep], self.metrics)

    def rows(self, group_offset: int, pad_id: int) -> dict[str, torch.Tensor]:
        """The Experience fields of the trajectories (envs/rows.py), groups offset by `group_offset`."""
        r = to_rows(self.trajectories, pad_id)
        return {"input_ids": r["input_ids"], "lengths": r["lengths"], "response_mask": r["response_mask"],
                "behaviour_logp": r["behaviour_logp"], "group_ids": r["group_ids"] + group_offset,
                "turn_rewards": r["token_rewards"]}


class RoleReward:
    """A reward function (rewards/base.py) that scores through the reward role, for the tool and
    one-step environments: their steps run on the controller's threads, the scoring where the role is."""

    def __init__(self, role: Any):
        self.role = role

    def __call__(self, batch: RewardInput) -> RewardOutput:
        return self.role.score(batch.prompts, batch.responses, batch.labels, batch.sources)


class EpisodeRollout:
    """Runs the episodes of a round on the controller. Built before the roles (a bad --env.class,
    --env.tools or --agent fails before any model loads), then `attach`ed to the rollout role and the
    reward role (None when the environment or agent returns rewards), which scores tool answers."""

    def __init__(self, cfg: RLConfig, tokenizer):
        self.cfg, self.tokenizer = cfg, tokenizer
        e = cfg.env
        self.limits = Limits(e.max_turns, e.max_tokens, e.step_timeout_s)
        self.rollout, self.reward, self.server, self.pool = None, RoleReward(None), None, None
        if cfg.agent:
            from alignkit.envs.agent_runner import load_agent

            self.agent = load_agent(cfg.agent)
        else:
            reward = None if cfg.env_rewards else self.reward
            self.make_env = build_env_factory(e, reward, cfg.data.prompt_key, cfg.data.label_key)

    def attach(self, rollout: Any, reward: Any | None) -> None:
        self.rollout, self.reward.role = rollout, reward

    def run(self, prompts: list[dict[str, Any]], params: SamplingParams, n: int) -> EpisodeRound:
        """`n` episodes per prompt record; episode seeds `params.seed + prompt index` (a record's own
        `seed` field wins). Raises AlignkitError when every trajectory failed."""
        base = params.seed or 0
        episodes = [Episode(rec, seed=base + i, group=i) for i, rec in enumerate(prompts) for _ in range(n)]
        trajectories = self._agents(episodes, params) if self.cfg.agent else run_episodes(
            self.rollout, self.tokenizer, self.make_env, episodes, params, self.limits,
            dict(self.cfg.env.chat_template_kwargs))
        kept = trainable(trajectories)
        out = EpisodeRound(prompts, kept, torch.tensor([t.reward for t in kept]), env_metrics(trajectories))
        out.rewards = shape_rewards(out.rewards, out.response_lengths(), self.cfg.algo, self.cfg.env.max_tokens)
        return out

    def submit(self, prompts: list[dict[str, Any]], params: SamplingParams) -> concurrent.futures.Future:
        """The round run on a thread of its own (asynchronous rollouts: the trainer trains meanwhile);
        rounds run one after another, in the order submitted."""
        if self.pool is None:
            self.pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="alignkit-episodes")
        return self.pool.submit(self.run, prompts, params, params.n)

    def _agents(self, episodes: list[Episode], params: SamplingParams) -> list[Trajectory]:
        from alignkit.envs.agent_runner import run_agents
        from alignkit.envs.agent_server import AgentServer

        e = self.cfg.env
        if self.server is None:  # started on first use, on 127.0.0.1; stopped by close()
            self.server = AgentServer(self.rollout, self.tokenizer, params, self.limits, dict(e.chat_template_kwargs),
                                      e.tool_parser, e.agent_batch_wait_ms / 1000).start()
        self.server.params = dataclasses.replace(params, n=1)
        return run_agents(self.server, self.agent, episodes, e.agent_timeout_s)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(cancel_futures=True)
            self.pool = None
        if self.server is not None:
            self.server.stop()
            self.server = None
