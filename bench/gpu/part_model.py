"""The model every later part uses, built by `alignkit init-tiny` (on the GPU: Qwen2-0.5B-shaped, random
weights, 151936-token vocabulary; setting.py)."""

from __future__ import annotations

import json

from partlib import Args, model_dir, part_main

from grpo_flops import model_dims


def run(a: Args) -> dict:
    from alignkit.cli import main as alignkit

    folder, flags = model_dir(a.work), " ".join(a.setting.model_flags)
    stamp = folder / "init_tiny_flags.txt"  # a rerun on a warm machine (same --work) keeps the model
    if not (stamp.exists() and stamp.read_text() == flags):
        if alignkit(["init-tiny", "--output", str(folder), *a.setting.model_flags]):
            raise SystemExit("alignkit init-tiny failed")
        stamp.write_text(flags)
    cfg = json.loads((folder / "config.json").read_text())
    params = model_dims(folder)
    figures = {"flags": flags, "vocab": cfg["vocab_size"],
               "matmul_params_m": params["n_matmul"] / 1e6}
    return {"figures": figures, "summary": f"{cfg['model_type']} {cfg['hidden_size']}x{cfg['num_hidden_layers']}, "
                                           f"vocab {cfg['vocab_size']}, {params['n_matmul'] / 1e6:.3g}M matmul params"}


if __name__ == "__main__":
    part_main(run)
