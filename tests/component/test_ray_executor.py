"""The Ray executor's roles on a local Ray instance: weight sync, dispatch over two rollout workers,
and failures that name the role, the worker and the method instead of hanging."""

import sys
import time

import pytest
import ray
import torch

from alignkit.config.rl import RLConfig
from alignkit.config.rollout import RolloutConfig
from alignkit.config.sampling import SamplingParams
from alignkit.config.schema import DataConfig, ModelConfig, RayConfig, TrainConfig
from alignkit.errors import AlignkitError
from alignkit.orchestration.ray.executor import RayExecutor
from alignkit.orchestration.ray.group import WorkerDied
from alignkit.orchestration.roles import roles
from alignkit.workers.policy import PolicyWorker
from alignkit.workers.rollout import RolloutWorker


@pytest.fixture(scope="module")
def ray_local():
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import a test module
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def groups(ray_local, tiny_dir):
    cfg = RLConfig(model=ModelConfig(path=str(tiny_dir)), data=DataConfig(max_length=16),
                   train=TrainConfig(device="cpu"), executor="ray",
                   rollout=RolloutConfig(num_workers=2, max_new_tokens=4), ray=RayConfig(call_timeout_s=60))
    ex = RayExecutor(cfg, {r: role for r, role in roles(cfg).items() if r in ("policy", "rollout")})
    policy, rollout = ex.create("policy", PolicyWorker, cfg, 10), ex.create("rollout", RolloutWorker, cfg)
    ex.ready()
    yield ex, policy, rollout
    ex.shutdown()


def _engine_weights(rollout_worker):
    return {k: v.clone() for k, v in rollout_worker.engine.model.state_dict().items()}


def _trainer_weights(policy_worker):
    return {k: v.detach().clone() for k, v in policy_worker.model.state_dict().items()}


def _perturb(worker):
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in worker.model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 1e-2)


def test_weight_sync_is_bit_equal(groups):
    ex, policy, rollout = groups
    policy.apply(_perturb)
    before = rollout.apply(_engine_weights)
    t0 = time.perf_counter()
    ex.sync_weights()
    dt = time.perf_counter() - t0
    (trained,) = policy.apply(_trainer_weights)
    for loaded, old in zip(rollout.apply(_engine_weights), before, strict=True):  # both rollout workers
        assert loaded.keys() == trained.keys()
        assert all(torch.equal(loaded[k], trained[k]) for k in trained)
        assert not all(torch.equal(loaded[k], old[k]) for k in old)
    print(f"sync of {sum(v.numel() * 4 for v in trained.values()) / 2**20:.1f} MiB to 2 workers: {dt * 1000:.0f} ms")


def test_generation_split_over_two_workers_keeps_prompt_order(groups, tokenizer):
    _, _, rollout = groups
    prompts = [tokenizer(t)["input_ids"] for t in ["12+7=", "sort: 4 1 3 2 =", "hi", "What is it"]]
    gens = rollout.generate(prompts, SamplingParams(n=2, temperature=1.0, max_new_tokens=4, seed=3))
    assert [g.prompt_index for g in gens] == [0, 0, 1, 1, 2, 2, 3, 3]
    assert all(len(g.response_ids) == len(g.logprobs) > 0 for g in gens)


def test_timeout_names_role_worker_and_method(groups):
    _, _, rollout = groups
    rollout.timeout_s = 1.0
    try:
        t0 = time.perf_counter()
        with pytest.raises(AlignkitError, match=r"rollout worker 0: apply did not finish within 1s"):
            rollout.apply(lambda w: time.sleep(30))
        assert time.perf_counter() - t0 < 10
    finally:
        rollout.timeout_s = 60.0


def test_dead_worker_is_named(ray_local, groups):
    ex, _, rollout = groups
    rollout.ready()  # built, also when this test runs alone
    ray.kill(rollout.actors[1], no_restart=True)
    with pytest.raises(WorkerDied, match=r"rollout worker 1 died during apply"):
        rollout.apply(lambda w: 1)
