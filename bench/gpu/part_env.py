"""The machine and the matmul peak: versions of what the kit runs on, the device, and the best square
matmul rate in the setting's dtype (bf16 on the GPU), which the GRPO part's MFU is measured against."""

from __future__ import annotations

import importlib.metadata
import platform

from partlib import Args, part_main

PACKAGES = ("torch", "transformers", "peft", "tokenizers", "safetensors", "jsonargparse", "deepspeed", "alignkit")


def version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "absent"


def run(a: Args) -> dict:
    import torch

    from grpo_flops import matmul_peak

    cuda = a.device == "cuda"
    if cuda and not torch.cuda.is_available():
        raise SystemExit("--device cuda, but torch sees no CUDA device")
    device = torch.cuda.get_device_name() if cuda else platform.processor() or "cpu"
    peak = matmul_peak(torch.get_num_threads(), sizes=a.setting.matmul_sizes, repeats=10, dtype=a.setting.dtype)
    figures = {
        "device": device, "python": platform.python_version(), "cuda": torch.version.cuda,
        "gpu_memory_gib": torch.cuda.get_device_properties(0).total_memory / 2**30 if cuda else None,
        "versions": {n: version(n) for n in PACKAGES}, "matmul_peak_tflops": peak / 1e3,
        "matmul_dtype": a.setting.dtype,
    }
    v = figures["versions"]
    return {"figures": figures, "summary": f"{device}; torch {v['torch']}, transformers {v['transformers']}; "
                                           f"{a.setting.dtype} matmul peak {peak / 1e3:.3g} TFLOP/s"}


if __name__ == "__main__":
    part_main(run)
