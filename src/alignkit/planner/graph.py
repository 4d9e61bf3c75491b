"""The dataflow graph of one RLHF iteration: model calls and what each waits for.

Nodes are calls (``rollout.generate``, ``reward.score``, ``policy.train`` ...). Each call belongs
to a *role* (the plan's unit of placement: ``rollout``, ``policy``, ``critic``, ``reference``,
``reward``, ``teacher``) and uses the weights of a *model* (``rollout`` uses the policy's weights). Weight
moves between layouts are not nodes here: the simulator adds them, because whether one is needed
depends on the plan (a call laid out like its model's training layout needs no move).

Algorithms are data (DESIGN.md rule 1): a registry maps a name to a function building its graph.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from alignkit.errors import ConfigError
from alignkit.orchestration.roles import ROLE_NAMES
from alignkit.planner.models import ModelSpec

KINDS = ("generate", "inference", "train")


@dataclass(frozen=True)
class Workload:
    """What one iteration processes."""

    batch: int  # prompts per iteration
    prompt_len: int  # tokens per prompt
    gen_len: int  # generated tokens per sample (every sample is assumed to run to the limit)
    group_size: int = 1  # samples per prompt (GRPO's group); prompts are prefilled once per group
    minibatches: int = 1  # optimizer steps per epoch of a train call
    epochs: int = 1  # passes over the batch per train call (PPO epochs)

    def __post_init__(self) -> None:
        for name in ("batch", "prompt_len", "gen_len", "group_size", "minibatches", "epochs"):
            if getattr(self, name) < 1:
                raise ConfigError(f"workload {name} must be >= 1, got {getattr(self, name)}")
        if self.n_sequences % self.minibatches:
            raise ConfigError(
                f"minibatches ({self.minibatches}) must divide the sequences per iteration "
                f"({self.n_sequences} = batch {self.batch} x group {self.group_size})"
            )

    @property
    def n_sequences(self) -> int:
        return self.batch * self.group_size

    @property
    def seq_len(self) -> int:
        return self.prompt_len + self.gen_len


@dataclass(frozen=True)
class Call:
    name: str  # "role.op", unique in the graph
    role: str  # placement unit in the plan (one of ROLE_NAMES)
    model: str  # whose weights: "policy" for both policy.* and rollout.generate
    kind: str  # generate | inference | train
    deps: tuple[str, ...] = ()


@dataclass(frozen=True)
class DataflowGraph:
    algo: str
    calls: tuple[Call, ...]  # in a topological order; the simulator's priority order too
    models: dict[str, ModelSpec] = field(hash=False)  # model name ("policy", ...) -> shapes
    workload: Workload

    def index(self, name: str) -> int:
        for i, c in enumerate(self.calls):
            if c.name == name:
                return i
        raise KeyError(name)

    def home_call(self, model: str) -> int:
        """The call whose layout a model's weights live in between calls: its train call if it
        has one (optimizer states stay there), else its first call."""
        idx = [i for i, c in enumerate(self.calls) if c.model == model]
        for i in idx:
            if self.calls[i].kind == "train":
                return i
        return idx[0]

    def validate(self) -> None:
        seen: set[str] = set()
        for c in self.calls:
            if c.role not in ROLE_NAMES or c.kind not in KINDS:
                raise ValueError(f"bad call {c}")
            if c.model not in self.models:
                raise ValueError(f"call {c.name} uses unknown model {c.model!r}")
            missing = [d for d in c.deps if d not in seen]
            if missing:
                raise ValueError(f"call {c.name} depends on {missing}, which do not come before it")
            if c.name in seen:
                raise ValueError(f"duplicate call {c.name}")
            seen.add(c.name)


def _inference_calls(models: dict[str, ModelSpec]) -> list[Call]:
    gen = ("rollout.generate",)
    calls = []
    if "reward" in models:
        calls.append(Call("reward.score", "reward", "reward", "inference", gen))
    if "reference" in models:
        calls.append(Call("reference.logprobs", "reference", "reference", "inference", gen))
    if "teacher" in models:  # on-policy distillation: frozen and forward-only, like the reference
        calls.append(Call("teacher.logprobs", "teacher", "teacher", "inference", gen))
    calls.append(Call("policy.logprobs", "policy", "policy", "inference", gen))
    if "critic" in models:
        calls.append(Call("critic.values", "critic", "critic", "inference", gen))
    return calls


def ppo_graph(models: dict[str, ModelSpec], workload: Workload) -> DataflowGraph:
    """PPO: generate, score/log-probs/values in parallel, then train policy and critic (both need
    advantages, which need every inference result)."""
    if "critic" not in models:
        raise ConfigError("ppo needs a critic model (--critic SIZE)")
    calls = [Call("rollout.generate", "rollout", "policy", "generate")]
    inf = _inference_calls(models)
    calls += inf
    after = tuple(c.name for c in inf)
    calls.append(Call("policy.train", "policy", "policy", "train", after))
    calls.append(Call("critic.train", "critic", "critic", "train", after))
    return DataflowGraph("ppo", tuple(calls), models, workload)


def grpo_graph(models: dict[str, ModelSpec], workload: Workload) -> DataflowGraph:
    """GRPO: PPO's graph without a critic; advantages are group-normalised rewards."""
    models = {k: v for k, v in models.items() if k != "critic"}
    calls = [Call("rollout.generate", "rollout", "policy", "generate")]
    inf = _inference_calls(models)
    calls += inf
    calls.append(Call("policy.train", "policy", "policy", "train", tuple(c.name for c in inf)))
    return DataflowGraph("grpo", tuple(calls), models, workload)


ALGORITHMS: dict[str, Callable[[dict[str, ModelSpec], Workload], DataflowGraph]] = {
    "ppo": ppo_graph,
    "grpo": grpo_graph,
}


def build_graph(
    algo: str,
    policy: ModelSpec,
    workload: Workload,
    *,
    critic: ModelSpec | None = None,
    reference: ModelSpec | None = None,
    reward: ModelSpec | None = None,
    teacher: ModelSpec | None = None,
) -> DataflowGraph:
    """The graph of ``algo``; ``None`` leaves a model out (no KL reference, a rule reward, no
    distillation teacher)."""
    if algo not in ALGORITHMS:
        raise ConfigError(f"unknown --algo {algo!r}; valid choices: {sorted(ALGORITHMS)}")
    models: dict[str, ModelSpec] = {"policy": policy}
    if critic is not None:
        models["critic"] = critic.with_value_head()
    if reference is not None:
        models["reference"] = reference
    if reward is not None:
        models["reward"] = reward.with_value_head()
    if teacher is not None:
        models["teacher"] = teacher
    graph = ALGORITHMS[algo](models, workload)
    graph.validate()
    return graph
