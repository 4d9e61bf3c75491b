"""`alignkit demo` end to end on tiny budgets (the full defaults run in `make demo`)."""

from helpers import run_cli

from alignkit.metrics.logger import read_metrics


def test_demo_pipeline_runs(tmp_path, capsys):
    out = tmp_path / "demo"
    assert run_cli("demo", "--output_dir", out, "--n_train", 256, "--n_eval", 16, "--sft_steps", 4,
                   "--rl_steps", 2, "--rl_prompts_per_step", 2, "--hidden", 32, "--progress", "false") == 0
    text = capsys.readouterr().out
    assert "held-out greedy accuracy" in text and "after RL" in text
    assert (out / "grpo" / "report.png").is_file() and (out / "grpo" / "final" / "config.json").is_file()
    evals = [r for r in read_metrics(out / "grpo") if "eval_reward" in r]
    assert [r["step"] for r in evals] == [0, 1, 2]
