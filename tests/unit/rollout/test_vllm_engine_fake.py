"""The vLLM engine's plumbing on CPU, against a fake `vllm` module shaped like vLLM's API: how the
engine is configured, generation, weights in buckets through the worker extension (run for real on
a fake worker), the prefix-cache reset after an update, and sleep / wake."""

import importlib
import pickle
import sys
import types
from dataclasses import dataclass

import pytest
import torch

from alignkit.config.rollout import RolloutConfig
from alignkit.config.sampling import SamplingParams
from alignkit.config.schema import ModelConfig
from alignkit.rollout.vllm_worker import RECEIVER, WeightReceiver


@dataclass
class Logprob:
    logprob: float


@dataclass
class Completion:
    index: int
    text: str
    token_ids: list[int]
    logprobs: list[dict[int, Logprob]]
    finish_reason: str


@dataclass
class Request:
    outputs: list[Completion]


class FakeModel:
    def __init__(self):
        self.loaded: dict[str, torch.Tensor] = {}

    def load_weights(self, weights):
        for name, t in weights:
            self.loaded[name] = t.clone()  # the bucket's bytes are reused: a model copies


class FakeWorker(WeightReceiver):
    """A vLLM worker as the extension sees it."""

    def __init__(self):
        self.device, self.rank = torch.device("cpu"), 0
        self.model_runner = types.SimpleNamespace(model=FakeModel())


class FakeLLM:
    def __init__(self, **kwargs):
        self.kwargs, self.calls, self.worker = kwargs, [], FakeWorker()

    def generate(self, prompts, params, use_tqdm):
        self.calls.append("generate")
        self.prompts, self.params = prompts, params
        return [Request([Completion(j, f"p{i}s{j}", [i, j], [{i: Logprob(-1.0)}, {j: Logprob(-0.5)}], "stop")
                         for j in range(p.n)]) for i, p in enumerate(params)]

    def collective_rpc(self, method, args=()):
        self.calls.append(method)
        # vLLM serializes the arguments to each worker: only what survives that may be sent
        return [getattr(self.worker, method)(*pickle.loads(pickle.dumps(args)))]

    def reset_prefix_cache(self):
        self.calls.append("reset_prefix_cache")

    def sleep(self, level):
        self.calls.append(f"sleep{level}")

    def wake_up(self):
        self.calls.append("wake_up")


@pytest.fixture
def engine(monkeypatch):
    fake = types.SimpleNamespace(__version__="0.26.0", LLM=FakeLLM, SamplingParams=lambda **kw: types.SimpleNamespace(**kw))
    monkeypatch.setitem(sys.modules, "vllm", fake)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    from alignkit.rollout.vllm import VLLMEngine

    cfg = RolloutConfig(engine="vllm", tensor_parallel_size=2, gpu_memory_utilization=0.3)
    return VLLMEngine(ModelConfig(path="/models/m", dtype="bfloat16"), cfg, bucket_bytes=1024)


def test_engine_is_built_for_rl(engine):
    kw = engine.llm.kwargs
    assert kw["model"] == kw["tokenizer"] == "/models/m" and kw["dtype"] == "bfloat16"
    assert kw["tensor_parallel_size"] == 2 and kw["gpu_memory_utilization"] == 0.3
    assert kw["enable_prefix_caching"] and kw["enable_sleep_mode"]
    assert kw["logprobs_mode"] == "processed_logprobs"  # after temperature, as the trainer computes
    module, name = kw["worker_extension_cls"].rsplit(".", 1)
    assert getattr(importlib.import_module(module), name) is WeightReceiver and kw["worker_extension_cls"] == RECEIVER


def test_generate_sends_token_prompts_and_returns_generations(engine):
    gens = engine.generate([[5, 6], [7]], SamplingParams(n=2, seed=3))
    assert engine.llm.prompts == [{"prompt_token_ids": [5, 6]}, {"prompt_token_ids": [7]}]
    assert [p.n for p in engine.llm.params] == [2, 2] and engine.llm.params[0].seed != engine.llm.params[1].seed
    assert [(g.prompt_index, g.text, g.logprobs) for g in gens] == [
        (0, "p0s0", [-1.0, -0.5]), (0, "p0s1", [-1.0, -0.5]), (1, "p1s0", [-1.0, -0.5]), (1, "p1s1", [-1.0, -0.5])]
    assert engine.generate([], SamplingParams()) == []


def test_weights_load_in_buckets_then_the_prefix_cache_resets(engine):
    g = torch.Generator().manual_seed(0)
    named = [("a", torch.randn(100, generator=g)), ("b", torch.randn(3, 4, generator=g).bfloat16()),
             ("c", torch.randn(200, generator=g))]
    engine.load_weights(iter(named))
    # 400 + 64 (b, aligned) bytes fit in 1 KiB; c's 800 do not: two buckets, one RPC each
    assert engine.llm.calls == ["alignkit_load_host", "alignkit_load_host", "reset_prefix_cache"]
    loaded = engine.llm.worker.model_runner.model.loaded
    assert list(loaded) == ["a", "b", "c"]
    assert all(torch.equal(loaded[n], t) and loaded[n].dtype == t.dtype for n, t in named)


def test_sleep_and_wake_are_idempotent(engine):
    engine.wake_up()  # awake already (a resumed run loads weights before generating)
    engine.sleep()
    engine.sleep()
    engine.wake_up()
    assert engine.llm.calls == ["sleep1", "wake_up"]


def test_lora_merged_weights_arrive_under_the_plain_model_names(engine, tiny_dir):
    from transformers import AutoModelForCausalLM

    from alignkit.config.schema import LoraConfig
    from alignkit.models.lora import apply_lora
    from alignkit.models.weights import full_weights

    plain = AutoModelForCausalLM.from_pretrained(tiny_dir)
    lora = apply_lora(AutoModelForCausalLM.from_pretrained(tiny_dir), LoraConfig(rank=4), "CAUSAL_LM")
    with torch.no_grad():  # a trained adapter: B = 0 at init would merge to nothing
        for name, p in lora.named_parameters():
            if "lora_B" in name:
                p.fill_(0.01)
    engine.load_weights(full_weights(lora))
    loaded = engine.llm.worker.model_runner.model.loaded
    # Hugging Face names, which vLLM's load_weights maps to its fused layers itself
    assert list(loaded) == [n for n, _ in plain.named_parameters()]
    merged = lora.merge_and_unload()
    for name, p in merged.named_parameters():
        assert torch.allclose(loaded[name], p), name
    q = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.allclose(loaded[q], plain.get_parameter(q))  # the adapter was merged in
