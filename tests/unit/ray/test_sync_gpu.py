"""GPU weight sync with the vLLM engine, without GPUs: which transport a layout gets, and the order
of calls each transport makes on the policy and rollout workers (faked)."""

import types

import pytest

from alignkit.config.rollout import RolloutConfig
from alignkit.config.schema import RayConfig
from alignkit.errors import ConfigError
from alignkit.orchestration.ray.placement import plan_layout
from alignkit.orchestration.ray.sync_gpu import IpcSync, NcclSync, gpu_transport

WORKERS = {"policy": 2, "rollout": 2, "reward": 1}


def transport(engine="vllm", gpus=1.0, async_=False, **ray):
    cfg = types.SimpleNamespace(rollout=RolloutConfig(engine=engine, async_=async_),
                                ray=RayConfig(gpus_per_worker=gpus, **ray))
    return gpu_transport(cfg, plan_layout(WORKERS, cfg.ray))


def test_transport_follows_the_placement():
    assert transport(placement="colocated") == "ipc"
    assert transport(placement="separate") == "nccl"
    assert transport(bundles={"policy": [0, 1], "rollout": [0], "reward": [2]}) == "ipc"
    assert transport(bundles={"policy": [0, 1], "rollout": [2, 3], "reward": [2]}) == "nccl"
    with pytest.raises(ConfigError, match="must all hold a policy worker"):
        transport(bundles={"policy": [0, 1], "rollout": [1, 2], "reward": [2]})


def test_the_object_store_stays_for_cpus_the_hf_engine_and_async_rollouts():
    assert transport(engine="hf") is None
    assert transport(gpus=0.0) is None
    assert transport(async_=True, placement="separate") is None  # loads queue behind rounds in flight


class Actor:
    """A Ray actor handle whose host methods record their calls and return them."""

    def __init__(self, log, name):
        self.log, self.name = log, name

    def __getattr__(self, method):
        return types.SimpleNamespace(remote=lambda *args: self.log.append((self.name, method, *args)) or (self.name,))


class Group:
    def __init__(self, log, role, n, ipc_buckets=0):
        self.log, self.role = log, role
        self.actors = [Actor(log, f"{role}{i}") for i in range(n)]
        self.left = ipc_buckets

    def wait(self, refs, what):
        return [("10.0.0.1", 1234)] * len(refs) if what == "address" else refs

    def on_all(self, host_method, *args):
        self.log.append((self.role, host_method, *args))
        if args[0] == "ipc_next":
            self.left -= 1
            return [f"bucket{self.left}"] * len(self.actors) if self.left >= 0 else [None] * len(self.actors)
        return [None] * len(self.actors)

    def wake_up(self):
        self.log.append((self.role, "wake_up"))


def test_nccl_group_and_broadcast():
    log = []
    policy, rollout = Group(log, "policy", 2), Group(log, "rollout", 2)
    link = NcclSync(policy, rollout, tensor_parallel_size=2, timeout_s=60.0)
    link.connect()
    assert log == [
        ("policy0", "address"),
        ("policy0", "sender", "open_group", "10.0.0.1", 1234, 5, 60.0),  # 1 + 2 engines x 2 TP ranks
        ("rollout0", "engine", "join_weight_group", "10.0.0.1", 1234, 1, 5, 60.0),
        ("rollout1", "engine", "join_weight_group", "10.0.0.1", 1234, 3, 5, 60.0),
    ]
    log.clear()
    link.sync()
    assert [e[:3] for e in log] == [("rollout", "wake_up"),  # a colocated engine takes its memory back first
                                    ("policy0", "sender", "send"), ("policy1", "sender", "send"),
                                    ("rollout0", "engine", "receive_weights"), ("rollout1", "engine", "receive_weights")]


def test_ipc_streams_bucket_by_bucket():
    log = []
    policy, rollout = Group(log, "policy", 2, ipc_buckets=2), Group(log, "rollout", 1)
    IpcSync(policy, rollout).sync()
    assert [e[:3] if e[0] == "policy" else e for e in log] == [
        ("rollout", "wake_up"),
        ("policy", "sender", "ipc_open"),
        ("policy", "sender", "ipc_next"), ("rollout", "engine", "load_shared", ["bucket1", "bucket1"]),
        ("policy", "sender", "ipc_next"), ("rollout", "engine", "load_shared", ["bucket0", "bucket0"]),
        ("policy", "sender", "ipc_next"),
        ("policy", "sender", "ipc_close"),
        ("rollout", "engine", "weights_loaded"),
    ]
