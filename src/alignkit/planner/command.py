"""``alignkit plan``: find where each model call of an RLHF iteration should run, and how.

    alignkit plan --actor 7b --critic 7b --ref 7b --reward 7b --algo ppo \\
        --devices 8x8 --device h100 --batch 512 --prompt-len 1024 --gen-len 1024 [--output plan.json]
    alignkit plan --algo grpo --actor 1b --teacher 7b --ref none --reward none     # on-policy distillation
    alignkit plan --calibrate [calibration.json]       # time kernels here, fit efficiency factors
    alignkit plan ... --calibration calibration.json   # plan with them
    alignkit plan --calibrate --report                 # and compare predicted with measured
                                                       # step times of real `alignkit rl` runs

User errors raise ConfigError (the CLI prints the message); ``main`` returns the exit code.
"""

from __future__ import annotations

import argparse
import sys

from alignkit.errors import ConfigError
from alignkit.planner.efficiency import Efficiency, load_efficiency, save_efficiency
from alignkit.planner.graph import ALGORITHMS, Workload, build_graph
from alignkit.planner.hardware import load_device_table, make_cluster
from alignkit.planner.models import NAMED_MODELS, resolve_model
from alignkit.planner.plan_io import plan_to_dict, save_plan
from alignkit.planner.planning import METHODS, run_planner
from alignkit.planner.render import render

NONE = ("none", "no", "off", "rule")


def build_parser() -> argparse.ArgumentParser:
    sizes = ", ".join(NAMED_MODELS)
    p = argparse.ArgumentParser(
        prog="alignkit plan",
        description=(
            "Plan an RLHF iteration on a cluster: choose for every model call (generate, inference, "
            "train) its devices and parallel strategy (data/tensor/pipeline degree, ZeRO stage, "
            "micro-batches) from a cost model, by simulated annealing as in ReaLHF; print the plan, "
            "its critical path and estimated seconds per iteration next to heuristic baselines."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    m = p.add_argument_group("models (a named size: " + sizes + "; or a Hugging Face config folder)")
    m.add_argument("--actor", "--policy", dest="actor", default="7b", help="policy model")
    m.add_argument("--critic", default=None, help="critic model (ppo); default: the actor's size")
    m.add_argument(
        "--ref", default=None, help="KL reference model; 'none' for no reference; default: actor's size"
    )
    m.add_argument("--reward", default=None,
                   help="reward model; 'none' (or 'rule') for a rule-based reward; default: actor's size")  # fmt: skip
    m.add_argument("--teacher", default=None,
                   help="on-policy distillation teacher (alignkit rl --preset opd): scores the samples' log-probs; "
                        "default: none")  # fmt: skip
    m.add_argument("--algo", default="ppo", choices=sorted(ALGORITHMS),
                   help="ppo: with a critic; grpo: no critic, group sampling")  # fmt: skip
    c = p.add_argument_group("cluster")
    c.add_argument("--devices", default="1x8", help="NODESxDEVICES_PER_NODE, e.g. 8x8 for 8 nodes of 8 GPUs")
    c.add_argument("--device", default=None,
                   help="device kind from the built-in table (h100, h200, a100-80g, a100-40g, l40s, cpu) "
                        "or --device-table; default h100 (with --calibrate: the local device)")  # fmt: skip
    c.add_argument("--device-table", default=None, metavar="YAML",
                   help="YAML file adding or overriding device kinds (fields: peak_tflops, memory_gib, "
                        "hbm_gb_s, intra_node_gb_s, inter_node_gb_s)")  # fmt: skip
    w = p.add_argument_group("workload")
    w.add_argument("--batch", type=int, default=512, help="prompts per iteration")
    w.add_argument("--prompt-len", type=int, default=1024, help="tokens per prompt")
    w.add_argument("--gen-len", type=int, default=1024, help="generated tokens per sample")
    w.add_argument(
        "--group-size", type=int, default=None, help="samples per prompt; default 8 for grpo, 1 for ppo"
    )
    w.add_argument("--minibatches", type=int, default=4, help="optimizer steps per epoch of a train call")
    w.add_argument("--epochs", type=int, default=1, help="passes over the batch per train call")
    s = p.add_argument_group("search")
    s.add_argument("--search", default="anneal", choices=METHODS,
                   help="anneal: simulated annealing (fast at any size); exhaustive: exact, small clusters only")  # fmt: skip
    s.add_argument("--seed", type=int, default=0, help="random seed of the annealer (same seed, same plan)")
    s.add_argument(
        "--steps", type=int, default=None, help="annealing steps per chain; default: by problem size"
    )
    s.add_argument("--calibration", default=None, metavar="JSON",
                   help="efficiency factors from --calibrate; default: typical GPU values")  # fmt: skip
    s.add_argument("--output", default=None, metavar="JSON", help="write the plan for the Ray executor here")
    k = p.add_argument_group("calibration")
    k.add_argument("--calibrate", nargs="?", const="calibration.json", default=None, metavar="JSON",
                   help="time kernels and a tiny Llama on this machine, fit efficiency factors, write "
                        "them to JSON (default calibration.json) and exit")  # fmt: skip
    k.add_argument("--calibrate-size", default=None, choices=("tiny", "small", "gpu"),
                   help="problem sizes for --calibrate; default small on CPU, gpu on a GPU")  # fmt: skip
    k.add_argument("--calibrate-threads", type=int, default=None,
                   help="CPU threads while calibrating and for --report's runs (default: torch's); 1 on a busy machine")  # fmt: skip
    k.add_argument("--report", action="store_true",
                   help="after --calibrate (or with --calibration JSON): run short `alignkit rl` runs of tiny "
                        "models here and print predicted against measured seconds per step, the error of "
                        "each and the rank correlation")  # fmt: skip
    k.add_argument("--report-steps", type=int, default=10,
                   help="steps per report run; the first is warm-up and not measured")  # fmt: skip
    k.add_argument("--report-dir", default=None, metavar="DIR",
                   help="keep the report's models and runs here (default: a temporary folder, removed)")  # fmt: skip
    return p


def _optional_model(value: str | None, default: str):
    if value is None:
        return resolve_model(default)
    if value.strip().lower() in NONE:
        return None
    return resolve_model(value)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, or a flag argparse rejected (it printed why)
        return int(exc.code or 0)
    table = load_device_table(args.device_table)
    if args.report and args.calibrate is None and not args.calibration:
        raise ConfigError(
            "--report compares the calibrated cost model with real runs: give --calibrate "
            "(calibrate first) or --calibration JSON (an earlier calibration)"
        )
    if args.calibrate is not None or args.report:
        eff = _calibrate(args, table) if args.calibrate is not None else load_efficiency(args.calibration)
        if args.report:
            _report(args, table, eff)
        return 0

    policy = resolve_model(args.actor)
    critic = _optional_model(args.critic, args.actor) if args.algo == "ppo" else None
    if args.algo == "ppo" and critic is None:
        raise ConfigError("--algo ppo needs a critic; use --algo grpo for a critic-free run")
    reference = _optional_model(args.ref, args.actor)
    reward = _optional_model(args.reward, args.actor)
    group = args.group_size if args.group_size is not None else (8 if args.algo == "grpo" else 1)
    workload = Workload(args.batch, args.prompt_len, args.gen_len, group, args.minibatches, args.epochs)
    teacher = _optional_model(args.teacher or "none", args.actor)
    graph = build_graph(args.algo, policy, workload, critic=critic, reference=reference, reward=reward, teacher=teacher)
    cluster = make_cluster(args.devices, args.device or "h100", table)
    eff = load_efficiency(args.calibration) if args.calibration else Efficiency()
    outcome = run_planner(graph, cluster, eff, method=args.search, seed=args.seed, steps=args.steps)

    labels = {"policy": args.actor, "critic": args.critic or args.actor, "reference": args.ref or args.actor,
              "reward": args.reward or args.actor, "teacher": args.teacher}  # fmt: skip
    sys.stdout.write(render(outcome, labels))
    if args.output:
        plan = plan_to_dict(outcome.problem, outcome.result.choice, outcome.schedule, labels)
        save_plan(plan, args.output)
        sys.stdout.write(f"\nplan written to {args.output}\n")
    return 0


def _calibrate(args, table) -> Efficiency:
    from alignkit.planner.calibrate import calibrate, detect_device_kind
    from alignkit.planner.hardware import get_device

    kind = args.device or detect_device_kind()
    device = get_device(kind, table)
    size = args.calibrate_size or ("small" if kind == "cpu" else "gpu")
    if kind == "cpu":
        torch_device = "cpu"
    else:
        import torch

        if not torch.cuda.is_available():
            raise ConfigError(f"cannot calibrate {kind!r} here: no CUDA device; use --device cpu")
        torch_device = "cuda"
    eff, extra = calibrate(device, size=size, torch_device=torch_device, threads=args.calibrate_threads)
    save_efficiency(eff, args.calibrate, extra)
    out = [f"calibrated {kind} ({size} sizes): compute {eff.compute:.3f}, attention {eff.attention:.3f}, "
           f"memory {eff.memory:.3f} of peak; overhead {eff.overhead_s * 1e3:.2f} ms per forward pass"]  # fmt: skip
    for r in extra["measurements"]:
        out.append(
            f"  {r['name']:<30} measured {r['seconds'] * 1e3:9.3f} ms  model {r['predicted_seconds'] * 1e3:9.3f} ms"
        )
    out.append(f"written to {args.calibrate}; plan with --calibration {args.calibrate}")
    sys.stdout.write("\n".join(out) + "\n")
    return eff


def _report(args, table, eff: Efficiency) -> None:
    import tempfile

    from alignkit.planner.accuracy import render_comparison
    from alignkit.planner.calibrate import detect_device_kind
    from alignkit.planner.calibration_runs import DEFAULT_RUNS, FIRST_MEASURED_STEP, compare_runs
    from alignkit.planner.hardware import get_device

    device = get_device(eff.device or args.device or detect_device_kind(), table)
    with tempfile.TemporaryDirectory(prefix="alignkit-report-") as tmp:
        rows = compare_runs(DEFAULT_RUNS, eff, args.report_dir or tmp, args.report_steps, device,
                            args.calibrate_threads)  # fmt: skip
    sys.stdout.write(
        f"\npredicted vs measured seconds per `alignkit rl` step on this {device.name} ({len(rows)} runs of "
        f"{args.report_steps} steps, median of steps {FIRST_MEASURED_STEP}-{args.report_steps}; "
        f"efficiency {eff.source})\n" + render_comparison(rows)
    )
