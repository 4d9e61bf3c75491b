"""The Ray executor: every role is a group of Ray actors in one placement group.

`create(role, cls, *args)` returns a RoleGroup with the worker class's methods, so the controller
reads the same as with the local executor. What the executor adds:

- placement (placement.py): colocated, separate, or the role -> bundles mapping of a plan
  (`--ray.bundles`, `--ray.plan`);
- the same start as a local run: each role is built from the RNG state the previous one left (all
  workers of a role from the same one), so a seed initialises the models as `--executor local` does;
- a torch.distributed process group per sharded training role (gloo on CPU, NCCL on GPU);
- a colocated rollout on GPUs sleeps while the trainers use the device (orchestration/colocate.py);
- with the vLLM engine on GPUs, weights go from the policy's GPUs to the engines' over NCCL or CUDA
  IPC (sync_gpu.py) instead of through the object store.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import ray
from ray.util.placement_group import remove_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from alignkit.checkpoint.state import rng_state
from alignkit.errors import AlignkitError
from alignkit.orchestration.calls import Call
from alignkit.orchestration.colocate import SleepingRollout
from alignkit.orchestration.ray.group import RoleGroup
from alignkit.orchestration.ray.host import GroupSpec, WorkerHost
from alignkit.orchestration.ray.placement import Layout, plan_layout, reserve
from alignkit.orchestration.ray.sync_gpu import DirectPolicy, IpcRollout, NcclRollout, gpu_transport

log = logging.getLogger("alignkit")

TRAINED_ROLES = ("policy", "critic")  # roles with an optimizer and a backend (--policy.backend)
_ENV = {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}  # nothing is downloaded at run time


def role_workers(cfg: Any) -> dict[str, int]:
    """Workers per role of an online-RL run; the roles are those OnlineRL creates."""
    a = cfg.algo
    out = {"policy": cfg.policy.num_workers, "rollout": cfg.rollout.num_workers, "reward": 1}
    if a.kl_coef > 0:
        out["reference"] = 1
    if a.advantage == "gae":
        out["critic"] = cfg.policy.num_workers
    return out


def light_roles(cfg: Any) -> frozenset[str]:
    """Roles without a model of their own, which a plan need not place: a reward from rules, a
    function or a reward server (only a reward model needs a device)."""
    return frozenset() if cfg.reward.model_path else frozenset({"reward"})


class RayExecutor:
    def __init__(self, cfg: Any, workers: dict[str, int] | None = None):
        """`workers`: role -> number of workers; by default the roles of the online-RL run `cfg` (a
        supervised run has only its trained model, as "policy": orchestration/ray/spmd.py)."""
        self.cfg, self.timeout_s = cfg, cfg.ray.call_timeout_s
        self.layout: Layout
        if workers is None:
            self.layout = plan_layout(role_workers(cfg), cfg.ray, light_roles(cfg))
            self.transport = gpu_transport(cfg, self.layout)  # None: weights through the object store
        else:
            self.layout, self.transport = plan_layout(workers, cfg.ray), None
        self.links: list[NcclRollout | IpcRollout] = []
        self.connected_here = _connect(cfg.ray.address, sum(b["CPU"] for b in self.layout.bundles))
        self.pg: Any = None
        self.actors: dict[str, list[Any]] = {}
        self._rng: Any = None
        self.groups: list[RoleGroup] = []
        try:
            self.pg = reserve(self.layout, self.timeout_s)
            self.actors = self._start_actors()
        except BaseException:
            self.shutdown()
            raise

    def _start_actors(self) -> dict[str, list[Any]]:
        """Every actor starts now, so that processes come up and import torch while earlier roles build."""
        host = ray.remote(WorkerHost)
        return {
            role: [host.options(
                num_cpus=s.cpus, num_gpus=s.gpus, max_restarts=0, runtime_env={"env_vars": _ENV},
                scheduling_strategy=PlacementGroupSchedulingStrategy(self.pg, placement_group_bundle_index=s.bundle),
            ).remote(role, i) for i, s in enumerate(seats)]
            for role, seats in self.layout.seats.items()
        }  # fmt: skip

    def create(self, role: str, cls: type, *args: Any) -> Any:
        """The role's group, being built: its first call waits until every worker is ready."""
        if role not in self.actors:
            raise AlignkitError(f"the Ray executor placed no '{role}' workers (it placed {', '.join(self.actors)})")
        actors = self.actors[role]
        for a in actors:
            a.prepare.remote(cls)
        n, address, specs = len(actors), None, [None] * len(actors)
        # fsdp2 and deepspeed run in a process group, even of one worker; several torch workers never do
        sharded = role in TRAINED_ROLES and self.cfg.policy.backend != "torch"
        if sharded:
            address = actors[0].address.remote()  # rank 0's node and a free port there
            backend = "nccl" if self.cfg.ray.gpus_per_worker > 0 else "gloo"
            specs = [GroupSpec(i, n, backend, self.timeout_s) for i in range(n)]
        rng = self._rng if self._rng is not None else rng_state()
        # A role starts from the RNG state the previous one leaves (an ObjectRef: Ray passes it on when
        # that role is built, and the driver does not wait).
        refs = [a.init.remote(cls, args, rng, spec, address) for a, spec in zip(actors, specs, strict=True)]
        self._rng = refs[0]
        group = RoleGroup(role, cls, actors, self.timeout_s, refs, [s.bundle for s in self.layout.seats[role]], sharded)
        self.groups.append(group)
        return self._wrap(role, group)

    def _wrap(self, role: str, group: RoleGroup) -> Any:
        """The group as the controller sees it: with GPU weight sync the policy leaves the moving of
        weights to the rollout; a colocated rollout on GPUs sleeps while the trainers run."""
        out: Any = group
        if self.transport is not None and role == "policy":
            out = DirectPolicy(group)
        if self.transport is not None and role == "rollout":
            policy = next(g for g in self.groups if g.role == "policy")  # OnlineRL creates it first
            link = (NcclRollout(group, policy, self.cfg.rollout.tensor_parallel_size, self.timeout_s)
                    if self.transport == "nccl" else IpcRollout(group, policy))
            self.links.append(link)
            out = link
        if role == "rollout" and self.colocated_gpus():
            out = SleepingRollout(out)
        return out

    def ready(self) -> None:
        """Wait until every role is built, so that start-up errors show before training and its time
        is not counted in the first step."""
        for g in self.groups:
            g.ready()
        for link in self.links:
            link.connect()

    def colocated_gpus(self) -> bool:
        """On GPUs, whether the rollout shares a device with a trained role: with --ray.placement
        colocated, and with a plan that runs generation on the training devices."""
        if self.cfg.ray.gpus_per_worker <= 0:
            return False
        seats = self.layout.seats
        rollout = {s.bundle for s in seats["rollout"]}
        return any(rollout & {s.bundle for s in seats.get(r, [])} for r in TRAINED_ROLES)

    def run(self, calls: list[Call]) -> list[Any]:
        """Independent calls: at the same time when their roles hold no bundle in common (each has
        its own devices), else one after the other, in the order given."""
        bundles = [set(c.role.bundles) for c in calls]
        if sum(len(b) for b in bundles) != len(set().union(*bundles)):
            return [c() for c in calls]
        pending = [c.role.submit(c.method, *c.args) for c in calls]
        return [p.result() for p in pending]

    def shutdown(self) -> None:
        for actors in self.actors.values():
            for a in actors:
                ray.kill(a, no_restart=True)
        if self.pg is not None:
            remove_placement_group(self.pg)
        if self.connected_here:
            ray.shutdown()


def _connect(address: str, cpus_needed: float) -> bool:
    """Join `address`, or start a local Ray instance; True when this call connected (and shutdown
    should disconnect). An existing connection (a test's, a notebook's) is used as it is."""
    if ray.is_initialized():
        return False
    quiet = {"logging_level": logging.WARNING, "log_to_driver": False}
    if address:
        try:
            ray.init(address=address, **quiet)
        except ConnectionError as e:
            raise AlignkitError(f"--ray.address {address}: cannot join a Ray cluster ({e}); start one with "
                                "`ray start --head` (docs/distributed.md), or leave --ray.address empty") from None
    else:
        # A local instance counts at least the CPUs the layout asks for: logical CPUs only book work.
        ray.init(num_cpus=max(os.cpu_count() or 1, int(-(-cpus_needed // 1))), include_dashboard=False, **quiet)
    return True
