"""The vLLM rollout engine (`--rollout.engine vllm`, CUDA GPUs): paged attention, continuous batching
and prefix caching behind the same RolloutEngine protocol as the HF engine.

The engine runs in vLLM's own processes (one per tensor-parallel rank); this object drives it:
- `generate` sends token-id prompts and gets back token ids and the log-probs of the sampled tokens
  after temperature (`logprobs_mode="processed_logprobs"`), which is what the trainer computes. With
  top-p / top-k below their defaults vLLM reports the log-prob under the truncated distribution it
  sampled from, and the trainer does not truncate: the mismatch metric shows it and the truncated
  importance weight corrects for it.
- `load_weights` takes new weights bucket by bucket: CUDA tensors (a trainer on the same GPU) travel
  as CUDA IPC handles, host tensors (Ray's object store) through vLLM's RPC. The Ray executor's GPU
  paths (orchestration/ray/sync_gpu.py) call `join_weight_group` / `receive_weights` (NCCL) and
  `load_shared` / `weights_loaded` (CUDA IPC from another process) instead.
- `sleep` frees the KV cache and moves the weights to host memory (vLLM sleep level 1) while the
  trainer uses the GPU; `wake_up` takes them back.
After each update the prefix cache is reset: cached KV blocks were computed by the old weights.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterable

import torch

from alignkit.config.rollout import RolloutConfig
from alignkit.config.sampling import SamplingParams
from alignkit.config.schema import ModelConfig
from alignkit.errors import AlignkitError
from alignkit.rollout.base import Generation
from alignkit.rollout.buckets import BUCKET_BYTES, pack_buckets
from alignkit.rollout.gpu_transport import IpcBucket, gpu_buffer, share
from alignkit.rollout.vllm_convert import sampling_kwargs, to_generations
from alignkit.rollout.vllm_setup import import_vllm
from alignkit.rollout.vllm_worker import RECEIVER


def _buffer_like(nbytes: int, device: torch.device) -> torch.Tensor:
    return gpu_buffer(nbytes, device) if device.type == "cuda" else torch.empty(nbytes, dtype=torch.uint8)


class VLLMEngine:
    """Implements RolloutEngine over a vLLM `LLM` built from the model folder of `model_cfg`."""

    def __init__(self, model_cfg: ModelConfig, rollout: RolloutConfig, bucket_bytes: int = BUCKET_BYTES):
        vllm = import_vllm()
        if not torch.cuda.is_available():
            raise AlignkitError("--rollout.engine vllm needs a CUDA GPU and none is visible; use --rollout.engine hf")
        self._params_cls = vllm.SamplingParams
        self.bucket_bytes = bucket_bytes
        self.llm = vllm.LLM(
            model=model_cfg.path,
            tokenizer=model_cfg.tokenizer_path or model_cfg.path,
            dtype=model_cfg.dtype,
            tensor_parallel_size=rollout.tensor_parallel_size,
            gpu_memory_utilization=rollout.gpu_memory_utilization,
            enable_prefix_caching=True,
            enable_sleep_mode=True,
            logprobs_mode="processed_logprobs",
            worker_extension_cls=RECEIVER,
        )
        self.asleep = False

    def generate(self, prompts: list[list[int]], params: SamplingParams) -> list[Generation]:
        """`params.n` generations per prompt, prompt-major (prompt 0's n samples first)."""
        if not prompts:
            return []
        vllm_params = [self._params_cls(**kw) for kw in sampling_kwargs(params, len(prompts))]
        outputs = self.llm.generate([{"prompt_token_ids": p} for p in prompts], vllm_params, use_tqdm=False)
        return to_generations(outputs, params.n)

    def load_weights(self, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> None:
        """New weights (names as in the trainer's plain model), one RPC per bucket."""
        for slots, data in pack_buckets(named_tensors, self.bucket_bytes, _buffer_like):
            # pickled: see rollout/vllm_worker.py
            if data.is_cuda:  # the trainer is in this process, on a GPU the engine's workers see
                self.llm.collective_rpc("alignkit_load_ipc", args=(pickle.dumps([share(slots, data)]),))
            else:
                self.llm.collective_rpc("alignkit_load_host", args=(pickle.dumps(slots), data))
        self.weights_loaded()

    def load_shared(self, buckets: list[IpcBucket]) -> None:
        """One bucket shared by colocated trainer workers (one per GPU); `weights_loaded` ends the update."""
        self.llm.collective_rpc("alignkit_load_ipc", args=(pickle.dumps(buckets),))

    def join_weight_group(self, host: str, port: int, rank_offset: int, world_size: int, timeout_s: float) -> None:
        """Collective with training rank 0 and the other engines: this engine's workers take ranks
        rank_offset .. rank_offset + tensor_parallel_size - 1."""
        self.llm.collective_rpc("alignkit_join", args=(host, port, rank_offset, world_size, timeout_s))

    def receive_weights(self) -> None:
        """One NCCL broadcast of the weights from training rank 0 (sending at the same time)."""
        self.llm.collective_rpc("alignkit_receive")
        self.weights_loaded()

    def weights_loaded(self) -> None:
        self.llm.reset_prefix_cache()

    def sleep(self) -> None:
        """Free the KV cache and move the weights to host memory (idempotent)."""
        if not self.asleep:
            self.llm.sleep(level=1)
            self.asleep = True

    def wake_up(self) -> None:
        if self.asleep:
            self.llm.wake_up()
            self.asleep = False
