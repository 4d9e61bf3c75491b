"""Typed configuration of online RL. An algorithm is data: an advantage estimator, a policy loss, a
KL placement and whether a critic exists (see config/presets/ for PPO, GRPO, DAPO, ...)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from alignkit.algos.advantages import ADVANTAGE_ESTIMATORS, EstimatorName, RewardEstimatorName
from alignkit.algos.aggregate import AggMode
from alignkit.algos.kl import KLKind
from alignkit.algos.losses.policy import PolicyLossName
from alignkit.config.distill import TeacherConfig
from alignkit.config.env import EnvConfig
from alignkit.config.reward import RewardConfig
from alignkit.config.rollout import RolloutConfig
from alignkit.config.schema import DataConfig, ModelConfig, RefConfig, RunConfig


@dataclass(frozen=True)
class AlgoConfig:
    """The algorithm: estimator, losses, KL, and the shaping of rewards and batches."""

    advantage: EstimatorName = "grpo"
    """Advantage estimator: gae (PPO, needs a critic), grpo, dr_grpo, rloo, reinforce_pp (REINFORCE++), reinforce_pp_baseline, opd (on-policy distillation from --teacher.path)."""
    policy_loss: PolicyLossName = "ppo"
    """Policy loss: ppo (clipped surrogate, token ratios) or gspo (sequence-level ratio)."""
    clip_low: float = 0.2
    """Lower clip range epsilon_low: the ratio is clipped at 1 - clip_low."""
    clip_high: float = 0.2
    """Upper clip range epsilon_high (DAPO clip-higher: 0.28)."""
    dual_clip: float | None = None
    """Dual-clip constant c > 1 bounding the loss of negative-advantage tokens; None disables."""
    loss_agg: AggMode = "seq_mean_token_mean"
    """Loss aggregation: token_mean (DAPO), seq_mean_token_mean (GRPO), seq_mean_token_sum_norm (Dr.GRPO)."""
    gamma: float = 1.0
    """Discount factor (gae, reinforce_pp, reinforce_pp_baseline)."""
    lam: float = 0.95
    """GAE lambda."""
    whiten_advantages: bool = False
    """Whiten the advantages over the batch's response tokens (zero mean, unit std), as verl and OpenRLHF do for GAE (the ppo preset)."""
    kl_coef: float = 0.0
    """KL coefficient to the reference; 0 loads no reference model."""
    kl_estimator: KLKind = "k3"
    """KL estimator: k1, k2 or k3 (Schulman's approximations)."""
    kl_in_reward: bool = False
    """Put the KL penalty into the per-token reward (PPO-RLHF) instead of the loss (GRPO)."""
    kl_clamp: float | None = 10.0
    """Bound each token's KL estimate to [-kl_clamp, kl_clamp] (verl bounds k3 to +-10): a token far from the reference cannot dominate; None: unbounded."""
    kl_target: float | None = None
    """Adaptive KL: steer the measured KL to this target (Ziegler et al.); None keeps kl_coef fixed."""
    kl_horizon: int = 10000
    """Adaptive KL horizon in samples."""
    entropy_coef: float = 0.0
    """Entropy bonus coefficient (entropy is always logged)."""
    ppo_epochs: int = 1
    """Passes over each rollout batch."""
    mini_batches: int = 1
    """Optimizer steps per pass: the rollout batch is split into this many mini-batches."""
    value_clip: float | None = 0.2
    """Critic value clipping range around the old values; None disables."""
    critic_warmup_steps: int = 0
    """Steps at the start that train only the critic."""
    dynamic_sampling: bool = False
    """DAPO: drop prompt groups whose rewards are all equal and draw more prompts to fill the batch."""
    max_sampling_tries: int = 4
    """Most generation rounds per step when dynamic sampling refills the batch."""
    overlong_buffer: int = 0
    """DAPO overlong shaping: responses within this many tokens of max_new_tokens are penalised linearly (0 disables)."""
    overlong_penalty: float = 1.0
    """Penalty at the length limit for overlong shaping."""
    overlong_filter: bool = False
    """DAPO overlong filtering: truncated responses (multi-turn: truncated trajectories) get no loss."""
    opd_reward_weight: float = 0.0
    """opd: add this weight times the task reward's advantage under --algo.opd_reward_advantage to the distillation advantage; 0: pure distillation."""
    opd_reward_advantage: RewardEstimatorName = "grpo"
    """opd: the estimator of the task reward's advantage (with --algo.opd_reward_weight > 0)."""

    @property
    def advantage_terms(self) -> tuple[tuple[str, float], ...]:
        """The estimators whose advantages add up to the run's, with their weights (algos/advantages.py
        `combine`): --algo.advantage with weight 1, and for an estimator that reads a teacher (opd) the
        task reward's estimator with --algo.opd_reward_weight when it is not 0. The one place that decides it."""
        terms = ((self.advantage, 1.0),)
        if ADVANTAGE_ESTIMATORS[self.advantage].teacher and self.opd_reward_weight:
            terms += ((self.opd_reward_advantage, self.opd_reward_weight),)
        return terms

    @property
    def kl_placement(self) -> Literal["none", "reward", "loss"]:
        """Where the KL to the reference goes: nowhere (kl_coef 0: no reference model is loaded), into
        the per-token reward (PPO-RLHF), or into the loss (GRPO). The one place that decides it."""
        if self.kl_coef <= 0:
            return "none"
        return "reward" if self.kl_in_reward else "loss"


@dataclass(frozen=True)
class CriticConfig:
    """The value model of PPO (loaded only when the estimator is gae)."""

    path: str = ""
    """Critic initialisation: a model folder (a reward model works well); empty starts from the policy."""
    lr: float = 5e-6
    """Critic learning rate."""


@dataclass(frozen=True)
class EvalConfig:
    """Held-out evaluation: greedy responses to the held-out prompts (data.eval_files, or
    data.eval_fraction of the training prompts), scored by the reward."""

    steps: int = 0
    """Evaluate every N steps (and before the first and after the last step); 0: only before and after."""
    max_prompts: int = 256
    """Evaluate on at most this many prompts."""


@dataclass(frozen=True)
class RLConfig(RunConfig):
    """Online RL: generate, score, compute advantages, update the policy (and critic); one loop for every algorithm."""

    output_dir: str = "runs/rl"
    """Run directory: config.yaml, metrics.jsonl, checkpoints/, final/, report.png."""
    algo: AlgoConfig = field(default_factory=AlgoConfig)
    """The algorithm."""
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    """Generation."""
    reward: RewardConfig = field(default_factory=RewardConfig)
    """Rewards."""
    ref: RefConfig = field(default_factory=RefConfig)
    """Reference model for the KL term."""
    critic: CriticConfig = field(default_factory=CriticConfig)
    """Critic (PPO)."""
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    """Teacher of on-policy distillation (loaded only when the estimator reads one: opd)."""
    eval: EvalConfig = field(default_factory=EvalConfig)
    """Held-out evaluation."""
    env: EnvConfig = field(default_factory=EnvConfig)
    """Multi-turn rollouts: the environment, its tools and the limits of a trajectory (docs/agents.md)."""
    agent: str = ""
    """Agent code, path/to/file.py:run with run(client, record) -> reward (sync or async), driving the model through a local OpenAI-compatible endpoint with the openai client it is given (pip install 'alignkit[agents]')."""

    @property
    def multi_turn(self) -> bool:
        """Trajectories come from an environment, tools or agent code (envs/), not single responses."""
        return bool(self.env.class_ or self.env.gem or self.env.tools or self.agent)

    @property
    def env_rewards(self) -> bool:
        """The environment or the agent code returns the rewards (--env.class, --env.gem, --agent): the
        run has no reward role; the tool environment's answers are scored by --reward.* as usual."""
        return bool(self.env.class_ or self.env.gem or self.agent)

    @property
    def response_limit(self) -> int:
        """The most tokens after a prompt: a response's (--rollout.max_new_tokens), or a multi-turn
        trajectory's (--env.max_tokens, model and environment tokens together)."""
        return self.env.max_tokens if self.multi_turn else self.rollout.max_new_tokens


@dataclass(frozen=True)
class RejectionSamplingConfig:
    """Best-of-n: sample n responses per prompt, score them, keep the best (an SFT file) or the best
    and worst (a pair file for iterative DPO)."""

    model: ModelConfig = field(default_factory=ModelConfig)
    """The model that samples."""
    data: DataConfig = field(default_factory=DataConfig)
    """The prompts (data.train_files; prompt_key and label_key name the fields)."""
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    """Sampling (n_samples_per_prompt is the n of best-of-n)."""
    reward: RewardConfig = field(default_factory=RewardConfig)
    """Rewards."""
    output: str = "data/best_of_n.jsonl"
    """Output JSON-lines file."""
    mode: Literal["sft", "pairs"] = "sft"
    """sft: {prompt, response, reward} of the best sample; pairs: {prompt, chosen, rejected} best vs worst."""
    min_reward: float | None = None
    """Skip prompts whose best reward is below this."""
    batch_size: int = 32
    """Prompts per generation call."""
    device: str = "auto"
    """cpu, cuda, cuda:N, or auto."""
    seed: int = 42
    """Sampling seed."""
