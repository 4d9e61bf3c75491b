"""`alignkit rl --executor ray` end to end on one local Ray instance (shared by the module: Ray
starts slowly): the same numbers as the local executor, FSDP2 over two workers, asynchronous
rollouts, a worker that dies, and resuming after it with a different number of workers."""

import math
import time

import pytest
import ray
from helpers import rl_flags, run_cli, signal_when, stalling_reward

from alignkit.checkpoint.state import list_checkpoints
from alignkit.metrics.logger import read_metrics

FIRST_STEP = ("reward/mean", "loss", "kl", "entropy")


@pytest.fixture(scope="module", autouse=True)
def ray_local():
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield
    ray.shutdown()


def _run(preset, tiny_dir, path, steps, *extra, **flags):
    path.mkdir()
    rc = run_cli("rl", "--preset", preset, *rl_flags(tiny_dir, path, steps, **flags), *extra)
    return rc, read_metrics(path / "rl") if rc == 0 else []


@pytest.mark.parametrize(("preset", "placement"), [("grpo", "colocated"), ("ppo", "separate")])
def test_one_worker_each_matches_local(preset, placement, tiny_dir, tmp_path):
    # ppo: policy, rollout, reward, reference and critic, each on its own bundle, so the forward passes
    # of policy, reference and critic run at the same time, and so do the two updates
    _, local = _run(preset, tiny_dir, tmp_path / "local", 1)
    rc, remote = _run(preset, tiny_dir, tmp_path / "ray", 1, executor="ray",
                      **{"ray.placement": placement, "ray.cpus_per_worker": 0.5})
    assert rc == 0
    for key in FIRST_STEP:
        assert remote[0][key] == local[0][key], key  # same seed, same numbers (measured: bit-equal)
    assert remote[0]["timing/sync"] > 0
    if preset == "ppo":
        assert remote[0]["critic/value_loss"] == local[0]["critic/value_loss"]
    assert (tmp_path / "ray" / "rl" / "final" / "config.json").is_file()


def test_fsdp2_two_workers_match_one_torch_worker(tiny_dir, tmp_path):
    # 16 sequences, 3 per micro-batch: each worker runs 3 micro-batches of a token-balanced half
    _, local = _run("grpo", tiny_dir, tmp_path / "local", 2, **{"train.micro_batch_size": 3})
    rc, sharded = _run("grpo", tiny_dir, tmp_path / "fsdp2", 2, executor="ray", **{
        "train.micro_batch_size": 3, "policy.backend": "fsdp2", "policy.num_workers": 2})
    assert rc == 0
    # Step 2 trains on weights the first sharded update wrote: summed gradients must be the full ones.
    # Measured: relative differences below 1e-6 (another order of float additions).
    for a, b in zip(local, sharded, strict=True):
        for key in (*FIRST_STEP, "grad_norm"):
            assert b[key] == pytest.approx(a[key], rel=1e-5, abs=1e-6), (a["step"], key)


def test_async_rollouts_record_versions(tiny_dir, tmp_path):
    rc, rows = _run("grpo", tiny_dir, tmp_path / "a", 3, "--rollout.async", "true",
                    "--rollout.max_staleness", "1", executor="ray", **{"algo.kl_coef": 0})
    assert rc == 0
    # round t+1 is generated while step t trains, by the weights of the step before
    assert [r["rollout/version"] for r in rows] == [0, 0, 1]
    assert [r["rollout/staleness"] for r in rows] == [0, 1, 1]
    assert all(math.isfinite(r["loss"]) and math.isfinite(r["reward/mean"]) for r in rows)
    assert all("logprob_mismatch/mean_abs" in r for r in rows)  # pi_old computed: the TIS weights need it


def test_async_needs_ray(tiny_dir, tmp_path, capsys):
    assert run_cli("rl", "--preset", "grpo", *rl_flags(tiny_dir, tmp_path, 1), "--rollout.async", "true") == 2
    assert "--rollout.async needs --executor ray" in capsys.readouterr().err


DIES = '''
import os
from pathlib import Path

HERE = Path(__file__)


def sevens_or_die(prompts, responses, labels):
    """The reward of helpers.SEVENS; its worker process dies on its third call while armed."""
    calls = HERE.with_suffix(".calls")
    n = int(calls.read_text()) + 1 if calls.exists() else 1
    calls.write_text(str(n))
    if n == 3 and HERE.with_suffix(".armed").exists():
        os._exit(1)
    return [r.count("7") / max(len(r), 1) for r in responses]
'''


def test_dead_worker_stops_the_run_and_resume_continues(tiny_dir, tmp_path, capsys):
    fn = tmp_path / "dies.py"
    fn.write_text(DIES)
    fn.with_suffix(".armed").touch()
    # fsdp2 keeps full (unsharded) checkpoints, so a run resumes on any number of workers
    flags = [*rl_flags(tiny_dir, tmp_path, 3, executor="ray", **{
        "checkpoint.save_steps": 1, "algo.kl_coef": 0, "policy.backend": "fsdp2", "ray.call_timeout_s": 120}),
        "--reward.function", f"{fn}:sevens_or_die"]
    t0 = time.perf_counter()
    assert run_cli("rl", "--preset", "grpo", *flags) == 2
    assert time.perf_counter() - t0 < 100  # the death is noticed at once, not after the call timeout
    err = capsys.readouterr().err
    assert "reward worker 0 died during score" in err, err
    ckpts = list_checkpoints(tmp_path / "rl" / "checkpoints")
    assert [c.name for c in ckpts] == ["step_1", "step_2"]  # the last one whole; step 3 never saved
    assert (ckpts[-1] / "trainer_state.pt").is_file() and (ckpts[-1] / "policy.safetensors").is_file()

    fn.with_suffix(".armed").unlink()
    more = ["--policy.num_workers", 2, "--rollout.num_workers", 2, "--resume"]
    assert run_cli("rl", "--preset", "grpo", *flags, *more) == 0
    rows = read_metrics(tmp_path / "rl")
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert all(math.isfinite(r["loss"]) for r in rows)
    assert (tmp_path / "rl" / "final" / "model.safetensors").is_file()  # gathered from the two shards


def test_sigterm_saves_a_checkpoint_and_exits_143(tiny_dir, tmp_path, capsys):
    fn = tmp_path / "pauses.py"
    spec = stalling_reward(fn, 3)  # step 2 scores for 3 s: SIGTERM arrives in its middle
    signal_when(fn.with_suffix(".stalling").exists)
    flags = rl_flags(tiny_dir, tmp_path, 4, executor="ray", **{"algo.kl_coef": 0, "ray.call_timeout_s": 120})
    assert run_cli("rl", "--preset", "grpo", *flags, "--reward.function", spec) == 143
    ckpt = tmp_path / "rl" / "checkpoints" / "step_2"
    assert f"alignkit rl: stopped by SIGTERM: checkpoint {ckpt} written" in capsys.readouterr().err
    assert list_checkpoints(tmp_path / "rl" / "checkpoints") == [ckpt]
    assert [r["step"] for r in read_metrics(tmp_path / "rl")] == [1, 2]


def test_a_teacher_on_its_own_bundle_matches_local(tiny_dir, tmp_path):
    # on-policy distillation: the teacher is a role of its own (separate placement: its own bundle, its
    # forward pass at the same time as the policy's) and scores the same numbers as in one process
    from alignkit.config.schema import TinyModelConfig
    from alignkit.models.tiny import build_tiny

    teacher = build_tiny(TinyModelConfig(output=str(tmp_path / "teacher"), hidden=32, layers=1, heads=2, kv_heads=1))
    _, local = _run("opd", tiny_dir, tmp_path / "local", 1, "--teacher.path", teacher)
    rc, remote = _run("opd", tiny_dir, tmp_path / "ray", 1, "--teacher.path", teacher, executor="ray",
                      **{"ray.placement": "separate", "ray.cpus_per_worker": 0.5})
    assert rc == 0
    for key in ("teacher/kl", "logp/teacher", "teacher/kl/pos_0", "loss"):
        assert remote[0][key] == local[0][key], key
    assert local[0]["teacher/kl"] != 0
