"""Importing vLLM: the optional extra, and the versions whose API rollout/vllm.py is written against.

vLLM is imported here and in the engine only, so that nothing else needs it (or CUDA) installed.
"""

from __future__ import annotations

from types import ModuleType

from packaging.specifiers import SpecifierSet
from packaging.version import InvalidVersion, Version

from alignkit.errors import AlignkitError

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
