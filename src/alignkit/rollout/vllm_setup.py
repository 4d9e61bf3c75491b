"""Importing vLLM: the optional extra, and the versions whose API rollout/vllm.py is written against.

vLLM is imported here and in the engine only, so that nothing else needs it (or CUDA) installed.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from packaging.specifiers import SpecifierSet
from packaging.version import InvalidVersion, Version

from alignkit.errors import AlignkitError, ConfigError

# The API used (LLM.sleep/wake_up/reset_prefix_cache/collective_rpc, worker_extension_cls,
# logprobs_mode="processed_logprobs", StatelessProcessGroup, PyNcclCommunicator) was read in the
# sources of 0.20.0, 0.26.0 and 0.33.0. 0.20 is the first release built on torch 2.11; 0.34 is not
# out yet, so it is not claimed. Keep pyproject.toml's `vllm` extra equal to this.
SUPPORTED_VLLM = SpecifierSet(">=0.20,<0.34")
INSTALL_HINT = "pip install 'alignkit[vllm]'"


def check_version(version: str) -> None:
    """Raise unless `version` (vllm.__version__) is in SUPPORTED_VLLM.

    The release is compared, so a local build ("0.26.0+cu129") or a development snapshot of a
    supported release passes, and one of the next release ("0.34.0.dev3") does not."""
    try:
        release = Version(version).base_version
    except InvalidVersion:
        raise AlignkitError(f"--rollout.engine vllm: cannot read the installed vLLM version {version!r}") from None
    if release not in SUPPORTED_VLLM:
        raise AlignkitError(
            f"--rollout.engine vllm: vLLM {version} is installed, but alignkit supports vllm{SUPPORTED_VLLM} "
            f"(the API it uses changes between releases); install a supported one with {INSTALL_HINT}"
        )


def import_vllm() -> ModuleType:
    """The vllm module, checked; a clear error when the extra is missing or the version unsupported."""
    try:
        import vllm
    except ImportError as e:
        raise AlignkitError(
            f"--rollout.engine vllm needs vLLM, which is not installed ({e}); install it with {INSTALL_HINT} "
            "(CUDA GPUs only), or use --rollout.engine hf"
        ) from None
    check_version(vllm.__version__)
    return vllm


def check_settings(cfg: Any) -> None:
    """`--rollout.engine vllm`'s settings in an RL config, and whether vLLM is installed in a supported
    version: before any model is loaded."""
    r = cfg.rollout
    if r.tensor_parallel_size < 1:
        raise ConfigError(f"--rollout.tensor_parallel_size must be at least 1, got {r.tensor_parallel_size}")
    if not 0 < r.gpu_memory_utilization <= 1:
        raise ConfigError(f"--rollout.gpu_memory_utilization must be in (0, 1], got {r.gpu_memory_utilization}")
    gpus = cfg.ray.gpus_per_worker
    if cfg.executor == "ray" and 0 < gpus < r.tensor_parallel_size:
        raise ConfigError(f"--rollout.tensor_parallel_size {r.tensor_parallel_size} needs as many GPUs per rollout "
                          f"worker; --ray.gpus_per_worker is {gpus:g}")
    import_vllm()
