"""`alignkit <command>`: one entry point for every job."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable

from alignkit.errors import AlignkitError

USAGE = """usage: alignkit <command> [options]   (alignkit <command> --help for a command's options)

commands:
  init-tiny     build a tiny random model (Llama, or --arch NAME) + tokenizer (with chat template)
  data synth    write a synthetic verifiable task (arithmetic, sort, reverse) as JSON lines
  sft           supervised fine-tuning
  rm            reward-model training (Bradley-Terry)
  dpo           preference optimisation on pairs: --loss dpo|cdpo|ipo|simpo|orpo|rpo
  kto           KTO on unpaired data (prompt, completion, boolean label)
  distill       knowledge distillation from a teacher (forward/reverse KL, GKD's JSD, on-policy mix)
  rl            online RL (PPO, GRPO, Dr.GRPO, RLOO, REINFORCE++, DAPO, GSPO): --preset NAME
  rejection-sample  best-of-n by reward -> an SFT file, or best-vs-worst pairs (--mode pairs)
  report        plot a run's metrics to RUN_DIR/report.png
  serve-reward  serve a reward model or reward function over HTTP (127.0.0.1 by default)
  plan          plan where each role runs on a cluster (cost model + search)
  demo          the whole pipeline on embedded defaults, offline, on a CPU
"""


def _quiet_libraries() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing is downloaded at run time
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    # httpx logs every request at INFO: one line per reward-server call (--reward.urls) or, through the
    # openai client's httpx2, per agent request (--agent)
    for name in ("httpx", "httpx2"):
        logging.getLogger(name).setLevel(logging.WARNING)


def _parse(cls, argv: list[str], prog: str):
    from alignkit.config.parse import parse_config

    return parse_config(cls, argv, prog)


def cmd_init_tiny(argv: list[str]) -> int:
    from alignkit.config.schema import TinyModelConfig
    from alignkit.models.tiny import build_tiny

    out = build_tiny(_parse(TinyModelConfig, argv, "alignkit init-tiny"))
    print(f"tiny model and tokenizer written to {out}")
    return 0


def cmd_data(argv: list[str]) -> int:
    if not argv or argv[0] != "synth":
        raise AlignkitError("usage: alignkit data synth --task arithmetic|sort|reverse --kind sft|prompt|pair|unpaired --n N --output F.jsonl")
    from alignkit.config.schema import SynthConfig
    from alignkit.data.synth import make_records, write_jsonl

    cfg = _parse(SynthConfig, argv[1:], "alignkit data synth")
    write_jsonl(make_records(cfg.task, cfg.kind, cfg.n, cfg.seed), cfg.output)
    print(f"{cfg.n} {cfg.task} {cfg.kind} records written to {cfg.output}")
    return 0


REPORTED = ("loss", "accuracy", "reward_acc", "eval_loss", "eval_accuracy", "eval_reward_acc", "tokens_per_s")


def _report(name: str, metrics: dict[str, float], out: str, reported: tuple[str, ...] = REPORTED) -> None:
    keys = [k for k in reported if k in metrics]
    print(f"{name} done: " + ", ".join(f"{k} {metrics[k]:.4g}" for k in keys) + f"; run directory {out}")


def cmd_sft(argv: list[str]) -> int:
    from alignkit.config.schema import SFTConfig
    from alignkit.trainers.supervised.sft import run_sft

    cfg = _parse(SFTConfig, argv, "alignkit sft")
    _report("sft", run_sft(cfg), cfg.output_dir)
    return 0


def cmd_rm(argv: list[str]) -> int:
    from alignkit.config.schema import RMConfig
    from alignkit.trainers.supervised.reward_model import run_rm

    cfg = _parse(RMConfig, argv, "alignkit rm")
    _report("rm", run_rm(cfg), cfg.output_dir)
    return 0


def cmd_dpo(argv: list[str]) -> int:
    from alignkit.config.schema import DPOConfig
    from alignkit.trainers.supervised.preference import run_dpo

    cfg = _parse(DPOConfig, argv, "alignkit dpo")
    _report(f"dpo ({cfg.loss})", run_dpo(cfg), cfg.output_dir)
    return 0


def cmd_kto(argv: list[str]) -> int:
    from alignkit.config.schema import KTOConfig
    from alignkit.trainers.supervised.kto import run_kto

    cfg = _parse(KTOConfig, argv, "alignkit kto")
    _report("kto", run_kto(cfg), cfg.output_dir)
    return 0


def cmd_distill(argv: list[str]) -> int:
    from alignkit.config.distill import DistillConfig
    from alignkit.trainers.supervised.distill import run_distill

    cfg = _parse(DistillConfig, argv, "alignkit distill")
    _report(f"distill ({cfg.distill.loss})", run_distill(cfg), cfg.output_dir,
            ("loss", "kl/reverse", "kl/forward", "eval_loss", "eval_kl/reverse", "tokens_per_s"))
    return 0


def cmd_rl(argv: list[str]) -> int:
    from alignkit.config.rl import RLConfig
    from alignkit.trainers.rl.online_rl import run_rl

    if argv and argv[0] in {"-h", "--help"}:
        from alignkit.config.parse import presets

        print(f"Presets (--preset NAME, applied before --config and flags): {', '.join(presets())}\n")
    cfg = _parse(RLConfig, argv, "alignkit rl")
    m = run_rl(cfg)
    keys = [k for k in ("reward/mean", "kl", "eval_reward", "generate_tokens_per_s") if k in m]
    print("rl done: " + ", ".join(f"{k} {m[k]:.4g}" for k in keys) + f"; run directory {cfg.output_dir}")
    return 0


def cmd_rejection_sample(argv: list[str]) -> int:
    from alignkit.config.rl import RejectionSamplingConfig
    from alignkit.trainers.rl.rejection_sampling import run_rejection_sampling

    cfg = _parse(RejectionSamplingConfig, argv, "alignkit rejection-sample")
    m = run_rejection_sampling(cfg)
    print(f"best-of-{cfg.rollout.n_samples_per_prompt}: {m['written']} of {m['prompts']} prompts, mean best reward "
          f"{m['mean_best_reward']:.4g}, written to {cfg.output}")
    return 0


def cmd_report(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0].startswith("-"):
        raise AlignkitError("usage: alignkit report RUN_DIR   (writes RUN_DIR/report.png from metrics.jsonl)")
    from alignkit.metrics.report import write_report

    print(f"report written to {write_report(argv[0])}")
    return 0


def cmd_plan(argv: list[str]) -> int:
    from alignkit.planner.command import main as plan_main

    return plan_main(argv)


def cmd_serve_reward(argv: list[str]) -> int:
    from alignkit.rewards.serve_command import main as serve_main

    return serve_main(argv)


def cmd_demo(argv: list[str]) -> int:
    from alignkit.trainers.demo import DemoConfig, run_demo

    run_demo(_parse(DemoConfig, argv, "alignkit demo"))
    return 0


COMMANDS: dict[str, Callable[[list[str]], int]] = {
    "init-tiny": cmd_init_tiny,
    "data": cmd_data,
    "sft": cmd_sft,
    "rm": cmd_rm,
    "dpo": cmd_dpo,
    "kto": cmd_kto,
    "distill": cmd_distill,
    "rl": cmd_rl,
    "rejection-sample": cmd_rejection_sample,
    "report": cmd_report,
    "plan": cmd_plan,
    "serve-reward": cmd_serve_reward,
    "demo": cmd_demo,
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in {"-h", "--help", "help"}:
        print(USAGE)
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        import difflib

        close = difflib.get_close_matches(name, list(COMMANDS), n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        print(f"alignkit: unknown command '{name}'{hint}\n\n{USAGE}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="alignkit: %(message)s", stream=sys.stderr)
    _quiet_libraries()
    from alignkit.runtime.disk import disk_error, environment_errno
    from alignkit.runtime.signals import Stopped

    try:
        return COMMANDS[name](rest)
    except Stopped as e:  # SIGTERM or SIGINT, after a checkpoint (runtime/signals.py)
        print(f"alignkit {name}: {e}", file=sys.stderr)
        return e.exit_code
    except AlignkitError as e:
        print(f"alignkit {name}: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a full disk or a read-only folder a writer did not name itself
        if environment_errno(e) is None:
            raise
        print(f"alignkit {name}: error: {disk_error(e.filename or '', 'to', e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"alignkit {name}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
