"""The vLLM engine on a GPU: log-probs against the trainer's, weight updates, sleep and wake, and
tiny GRPO runs with `--rollout.engine vllm` on the local executor (CUDA IPC into vLLM's process),
the Ray executor colocated (CUDA IPC between actors) and separate (NCCL, two GPUs).

Skipped without a CUDA device or without vLLM (pip install 'alignkit[vllm]')."""

import importlib.util
import math
import sys
from pathlib import Path

import pytest
import torch

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="needs vLLM: pip install 'alignkit[vllm]'"),
]

sys.path.insert(0, str(Path(__file__).parents[1] / "e2e"))  # the e2e tests' run helpers

PROMPTS = ["12+7=", "sort: 4 1 3 2 =", "What is the answer to the question", "hi"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    from alignkit.config.schema import TinyModelConfig
    from alignkit.models.tiny import build_tiny

    # head size 64: vLLM's attention kernels do not take the tiny default's 16
    return build_tiny(TinyModelConfig(output=str(tmp_path_factory.mktemp("tiny") / "model"), hidden=256, layers=2,
                                      heads=4, kv_heads=2))


def teacher_forced(model, prompt, response, temperature):
    with torch.no_grad():
        logits = model(torch.tensor([prompt + response], device="cuda")).logits[0, len(prompt) - 1 : -1].float()
    return torch.log_softmax(logits / temperature, -1).gather(-1, torch.tensor(response, device="cuda")[:, None])[:, 0]


def test_engine_logprobs_updates_and_sleep(model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from alignkit.config.rollout import RolloutConfig
    from alignkit.config.sampling import SamplingParams
    from alignkit.config.schema import ModelConfig
    from alignkit.rollout.vllm import VLLMEngine

    tok = AutoTokenizer.from_pretrained(model_dir)
    prompts = [tok(t)["input_ids"] for t in PROMPTS]
    engine = VLLMEngine(ModelConfig(path=str(model_dir), dtype="bfloat16"),
                        RolloutConfig(engine="vllm", gpu_memory_utilization=0.3))
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.bfloat16).cuda().eval()
    params = SamplingParams(n=4, temperature=0.8, max_new_tokens=16, seed=0)
    gens = engine.generate(prompts, params)
    assert len(gens) == 16 and [g.prompt_index for g in gens] == [i for i in range(4) for _ in range(4)]
    diffs = [(teacher_forced(model, prompts[g.prompt_index], g.response_ids, 0.8).cpu()
              - torch.tensor(g.logprobs)).abs() for g in gens if g.response_ids]
    assert float(torch.cat(diffs).mean()) < 0.05  # processed log-probs: after temperature, as the trainer's

    with torch.no_grad():  # new weights, from this process's GPU (CUDA IPC into vLLM's workers)
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    engine.load_weights(model.named_parameters())
    greedy = SamplingParams(n=1, temperature=0.0, max_new_tokens=8)
    after = engine.generate(prompts, greedy)
    for g in after:
        expected = teacher_forced(model, prompts[g.prompt_index], g.response_ids, 1.0).cpu()
        assert torch.allclose(torch.tensor(g.logprobs), expected, atol=0.1)

    free_awake = torch.cuda.mem_get_info()[0]
    engine.sleep()
    assert torch.cuda.mem_get_info()[0] > free_awake  # the KV cache and weights left the GPU
    engine.wake_up()
    again = engine.generate(prompts, greedy)  # weights kept through sleep (level 1)
    assert [g.response_ids for g in again] == [g.response_ids for g in after]


def _grpo(model_dir, tmp_path, **extra):
    from helpers import rl_flags, run_cli

    from alignkit.metrics.logger import read_metrics

    flags = {"rollout.engine": "vllm", "model.dtype": "bfloat16", "train.device": "cuda",
             "rollout.gpu_memory_utilization": 0.25, **extra}
    assert run_cli("rl", "--preset", "grpo", *rl_flags(model_dir, tmp_path, 3, **flags)) == 0
    rows = read_metrics(tmp_path / "rl")
    assert [r["step"] for r in rows] == [1, 2, 3]
    for r in rows:  # measured and logged every step
        assert r["logprob_mismatch/mean_abs"] < 0.1 and math.isfinite(r["logprob_mismatch/ratio_max"])
    return rows


def test_grpo_local_executor(model_dir, tmp_path):
    _grpo(model_dir, tmp_path)


def test_grpo_ray_colocated_cuda_ipc(model_dir, tmp_path):
    _grpo(model_dir, tmp_path, executor="ray", **{"ray.gpus_per_worker": 1, "ray.placement": "colocated"})


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="NCCL between trainer and engine needs two GPUs")
def test_grpo_ray_separate_nccl(model_dir, tmp_path):
    _grpo(model_dir, tmp_path, executor="ray",
          **{"ray.gpus_per_worker": 1, "ray.bundles": '{"policy": [0], "rollout": [1], "reward": [1]}'})
