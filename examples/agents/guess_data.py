"""Write the guess game's data (src/alignkit/envs/guess_task.py) for examples/sft_guess.yaml and
examples/grpo_guess.yaml: `python examples/agents/guess_data.py` (offline, instant)."""

from pathlib import Path

from alignkit.data.synth import write_jsonl
from alignkit.envs.guess_task import records

if __name__ == "__main__":
    Path("data").mkdir(exist_ok=True)
    write_jsonl(records("sft", 1000, seed=0), "data/guess_sft.jsonl")  # random-guess transcripts
    write_jsonl(records("prompt", 256, seed=1), "data/guess_prompts.jsonl")
    write_jsonl([{"target": t} for t in (1, 2, 3)], "data/guess_eval.jsonl")  # every game, played greedily
