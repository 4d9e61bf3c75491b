"""The Ray executor: every role is a group of Ray actors in one placement group.

`RayExecutor(cfg, roles)` places the roles the controller passes (orchestration/roles.py);
`create(role, cls, *args)` returns a RoleGroup with the worker class's methods, so the controller
reads the same as with the local executor. What the executor adds:

- placement (placement.py): colocated, separate, or the role -> bundles mapping of a plan
  (`--ray.bundles`, `--ray.plan`);
- the same start as a local run: each role is built from the RNG state the previous one left (all
  workers of a role from the same one), so a seed initialises the models as `--executor local` does;
- a torch.distributed process group per sharded training role (gloo on CPU, NCCL on GPU);
- a colocated rollout on GPUs sleeps while the trainers use the device (`rollout_sleeps`);
- `sync_weights`: the policy's weights to the rollout through the object store (sync.py), or with the
  vLLM engine on GPUs over NCCL or CUDA IPC (sync_gpu.py): a strategy picked from the layout.
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
from alignkit.orchestration.calls import RoleCall
from alignkit.orchestration.ray.group import Pending, RoleGroup
from alignkit.orchestration.ray.host import GroupSpec, WorkerHost
from alignkit.orchestration.ray.placement import plan_layout, reserve
from alignkit.orchestration.ray.sync import ObjectStoreSync
from alignkit.orchestration.ray.sync_gpu import IpcSync, NcclSync, gpu_transport
from alignkit.orchestration.roles import Role

log = logging.getLogger("alignkit")

_ENV = {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}  # nothing is downloaded at run time


class RayExecutor:
    def __init__(self, cfg: Any, roles: dict[str, Role]):
        """`roles`: the controller's roles (`roles(cfg)` of an online-RL run; a supervised run has only
        its trained model, as "policy": orchestration/ray/spmd.py)."""
        self.cfg, self.roles, self.timeout_s = cfg, roles, cfg.ray.call_timeout_s
        light = {r for r, role in roles.items() if not role.model}
        self.layout = plan_layout({r: role.workers for r, role in roles.items()}, cfg.ray, light)
        # None: weights through the object store
        self.transport = gpu_transport(cfg, self.layout) if {"policy", "rollout"} <= set(roles) else None
        self.weight_sync: ObjectStoreSync | NcclSync | IpcSync | None = None
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
        sharded = self.roles[role].trained and self.cfg.policy.sharded
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
        return group

    def ready(self) -> None:
        """Wait until every role is built, so that start-up errors show before training and its time
        is not counted in the first step; then connect the weight sync."""
        for g in self.groups:
            g.ready()
        groups = {g.role: g for g in self.groups}
        if "policy" in groups and "rollout" in groups:
            policy, rollout = groups["policy"], groups["rollout"]
            if self.transport == "nccl":
                self.weight_sync = NcclSync(policy, rollout, self.cfg.rollout.tensor_parallel_size, self.timeout_s)
            elif self.transport == "ipc":
                self.weight_sync = IpcSync(policy, rollout)
            else:
                self.weight_sync = ObjectStoreSync(policy, rollout, self.timeout_s)
            self.weight_sync.connect()

    def sync_weights(self) -> None:
        """The policy's current weights into every rollout worker, by the layout's transport."""
        self.weight_sync.sync()

    def send_weights(self) -> Pending:
        """The policy's current weights published now and loaded behind the rollout's queued calls (async
        rollouts; always through the object store, see sync_gpu.gpu_transport)."""
        return self.weight_sync.send()

    def rollout_sleeps(self) -> bool:
        """On GPUs, whether the rollout shares a device with a trained role (--ray.placement colocated,
        or a plan that runs generation on the training devices): then it gives its memory back while the
        trainers run."""
        if self.cfg.ray.gpus_per_worker <= 0:
            return False
        seats = self.layout.seats
        rollout = {s.bundle for s in seats["rollout"]}
        trained = [r for r, role in self.roles.items() if role.trained]
        return any(rollout & {s.bundle for s in seats.get(r, [])} for r in trained)

    def run(self, calls: list[RoleCall]) -> list[Any]:
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
