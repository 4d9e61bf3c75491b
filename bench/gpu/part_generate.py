"""Generation throughput on the kit's model: alignkit's HF rollout engine against transformers'
`model.generate` in the same process, sampling at temperature 1, for each of the setting's batch sizes
(128 and 512 completions on the GPU). The measurement is bench_generate.py's, run on this model."""

from __future__ import annotations

import json

from partlib import Args, model_dir, part_main

import bench_generate


def run(a: Args) -> dict:
    s = a.setting
    rows = []
    for prompts in s.gen_prompts:
        out = a.work / f"generate_{prompts}.json"
        bench_generate.main(["--model-dir", str(model_dir(a.work)), "--device", a.device, "--dtype", s.dtype,
                             "--cases", "sample", "--prompts", str(prompts), "--n", str(s.gen_n),
                             "--max-new-tokens", str(s.gen_max_new_tokens), "--repeats", str(s.gen_repeats),
                             "--json", str(out)])
        rows += json.loads(out.read_text())["rows"]
    figures = {f"{r['completions']}": {k: r[k] for k in ("mean_len", "alignkit_tok_s", "generate_tok_s", "ratio")}
               for r in rows}
    summary = "; ".join(f"{r['completions']} completions: {r['alignkit_tok_s']:.0f} tok/s, "
                        f"x{r['ratio']:.2f} model.generate" for r in rows)
    return {"figures": figures | {"max_new_tokens": s.gen_max_new_tokens}, "summary": summary}


if __name__ == "__main__":
    part_main(run)
