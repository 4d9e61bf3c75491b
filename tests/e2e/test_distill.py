"""`alignkit distill` end to end: a teacher made by SFT on 2-digit addition, a fresh tiny student
distilled from it (its KL to the teacher falls and its held-out greedy accuracy rises toward the
teacher's), GKD's on-policy mix with exact resume, micro-batches that add up to the step, and the
teacher's vocabulary rule."""

import os
import subprocess
import sys

import pytest
import torch
from helpers import interrupt_on_call, run_cli, synth

from alignkit.backends.torch_local import TorchBackend
from alignkit.config.schema import ModelConfig, TinyModelConfig
from alignkit.data.synth import is_correct, make_records, write_jsonl
from alignkit.metrics.logger import read_metrics
from alignkit.models.load import load_causal_lm, load_tokenizer
from alignkit.models.tiny import build_tiny
from alignkit.rollout.greedy import greedy_complete

QUIET = ["--logging.progress", "false", "--data.max_length", 16]
# The one-digit slice of the demo's addition task: a tiny teacher learns it in 100 SFT steps. Accuracy is
# greedy exact answers on its 100 prompts, which the training data covers, as the demo's 20,000 records
# cover its 2-digit space: it measures how much of the teacher's skill the student took.
ONE_DIGIT = [{"prompt": f"{a}+{b}=", "response": str(a + b)} for a in range(10) for b in range(10)]


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models run as fast on one thread, and a busy machine's descheduled OpenMP threads cannot
    stall them (two threads on two shared cores made the accuracy test 50 times slower here)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def accuracy(model_dir, records) -> float:
    """Greedy exact-answer accuracy on `records`' prompts (the demo's measure)."""
    cfg = ModelConfig(path=str(model_dir))
    outs = greedy_complete(load_causal_lm(cfg, torch.device("cpu")), load_tokenizer(cfg), [r["prompt"] for r in records], 5)
    return sum(is_correct("arithmetic", r["response"], o) for r, o in zip(records, outs, strict=True)) / len(records)


def distill_flags(student, teacher, data, out, steps, *extra):
    return ["--model.path", student, "--teacher.path", teacher, "--data.train_files", data, "--output_dir", out,
            "--train.max_steps", steps, *QUIET, *extra]


def sft_teacher(root, data, hidden, steps, batch, lr):
    tiny = build_tiny(TinyModelConfig(output=str(root / f"tiny{hidden}"), hidden=hidden, layers=2))
    out = root / f"teacher{hidden}_{steps}"
    assert run_cli("sft", "--model.path", tiny, "--data.train_files", data, "--output_dir", out, "--train.max_steps",
                   steps, "--train.batch_size", batch, "--train.micro_batch_size", batch, "--train.lr", lr,
                   "--train.min_lr_ratio", 1.0, *QUIET) == 0
    return out / "final"


def test_student_approaches_the_teacher(tmp_path, tiny_dir):
    # teacher: 128 hidden, SFT; student: a fresh 64-hidden tiny model, forward KL to the teacher
    data = tmp_path / "one_digit.jsonl"
    write_jsonl(ONE_DIGIT * 10, data)
    teacher = sft_teacher(tmp_path, data, hidden=128, steps=100, batch=64, lr=3e-3)
    out = tmp_path / "student"
    assert run_cli("distill", *distill_flags(tiny_dir, teacher, data, out, 80, "--train.batch_size", 64,
                                             "--train.micro_batch_size", 64, "--train.lr", 5e-3,
                                             "--distill.loss", "forward_kl")) == 0
    rows = read_metrics(out)
    kl = [r["kl/forward"] for r in rows]
    assert sum(kl[-5:]) / 5 < 0.2 * sum(kl[:5]) / 5, kl
    assert all(r["distill_loss"] == pytest.approx(r["kl/forward"]) for r in rows)  # forward_kl: the loss is the KL
    before, after, target = (accuracy(m, ONE_DIGIT) for m in (tiny_dir, out / "final", teacher))
    print(f"forward KL {sum(kl[:5]) / 5:.3f} -> {sum(kl[-5:]) / 5:.3f} (first and last 5 steps); greedy accuracy: "
          f"fresh student {before:.0%}, distilled {after:.0%}, teacher {target:.0%}")
    assert before == 0.0 and target >= 0.5 and after >= 0.5 * target, (before, after, target)


@pytest.mark.slow
def test_student_approaches_the_teacher_on_two_digit_addition(tmp_path, tiny_dir):
    # the demo's task, SFT recipe and held-out prompts; the student distils for as long as the teacher trained
    data = synth(tmp_path / "sft.jsonl", n=20000)
    held_out = [{"prompt": r["prompt"], "response": r["label"]} for r in make_records("arithmetic", "prompt", 200, seed=2)]
    teacher = sft_teacher(tmp_path, data, hidden=128, steps=1200, batch=64, lr=1e-3)
    out = tmp_path / "student"
    assert run_cli("distill", *distill_flags(tiny_dir, teacher, data, out, 1000, "--train.batch_size", 64,
                                             "--train.micro_batch_size", 64, "--train.lr", 3e-3,
                                             "--distill.loss", "forward_kl")) == 0
    kl = [r["kl/forward"] for r in read_metrics(out)]
    before, after, target = (accuracy(m, held_out) for m in (tiny_dir, out / "final", teacher))
    print(f"forward KL {sum(kl[:5]) / 5:.3f} -> {sum(kl[-5:]) / 5:.3f}; held-out greedy accuracy: fresh student "
          f"{before:.1%}, distilled {after:.1%}, teacher {target:.1%}")
    assert sum(kl[-5:]) < 0.05 * sum(kl[:5])
    assert before == 0.0 and target >= 0.1 and after >= 0.5 * target, (before, after, target)


@pytest.fixture(scope="module")
def random_teacher(tmp_path_factory):
    """Another tiny model with the same tokenizer (different size, different weights): enough for the
    mechanics, which need no skilled teacher."""
    return build_tiny(TinyModelConfig(output=str(tmp_path_factory.mktemp("t") / "teacher"), hidden=32, layers=1,
                                      heads=2, kv_heads=1))


def test_micro_batches_add_up_to_the_step(tmp_path, tiny_dir, random_teacher):
    # one micro-batch of 16, four of 4, or token-budget ones: the same loss and the same per-position
    # means (their denominators are the whole step's counts)
    data = synth(tmp_path / "sft.jsonl", n=64)
    runs = {"one": ["--train.micro_batch_size", 16], "four": ["--train.micro_batch_size", 4],
            "tokens": ["--train.micro_batch_tokens", 40]}
    logged = {}
    for name, flags in runs.items():
        out = tmp_path / name
        assert run_cli("distill", *distill_flags(tiny_dir, random_teacher, data, out, 1, "--train.batch_size", 16,
                                                 "--distill.loss", "jsd", "--distill.sft_weight", 0.1, *flags)) == 0
        logged[name] = read_metrics(out)[0]
    one = logged["one"]
    keys = [k for k in one if k.startswith(("loss", "kl/", "logp/", "distill_loss"))]
    assert "kl/reverse/pos_0" in keys and "kl/forward/pos_2-3" in keys
    for other in ("four", "tokens"):
        for k in keys:
            assert logged[other][k] == pytest.approx(one[k], abs=1e-6), k
    assert one["loss"] == pytest.approx(one["distill_loss"] - 0.1 * one["logp/student"], abs=1e-6)


def test_on_policy_mix_resumes_exactly(tmp_path, tiny_dir, random_teacher, monkeypatch):
    data = synth(tmp_path / "sft.jsonl", n=64)
    full, resumed = tmp_path / "full", tmp_path / "resumed"
    flags = ["--train.batch_size", 8, "--train.micro_batch_size", 4, "--train.lr", 3e-3, "--distill.lmbda", 0.5,
             "--distill.max_new_tokens", 6, "--teacher.top_k", 4, "--checkpoint.save_steps", 3]
    assert run_cli("distill", *distill_flags(tiny_dir, random_teacher, data, full, 6, *flags)) == 0
    with monkeypatch.context() as m:  # Ctrl-C during step 5: step_3 is the last checkpoint
        interrupt_on_call(m, TorchBackend, "step", 5)
        assert run_cli("distill", *distill_flags(tiny_dir, random_teacher, data, resumed, 6, *flags)) == 130
    torch.manual_seed(1234)  # the global RNG must not matter
    assert run_cli("distill", *distill_flags(tiny_dir, random_teacher, data, resumed, 6, *flags), "--resume") == 0
    a, b = read_metrics(full), read_metrics(resumed)
    assert [r["step"] for r in b] == list(range(1, 7))
    assert {r["on_policy_frac"] for r in a} == {0.0, 1.0}  # both kinds of step, on a seeded coin
    for key in ("loss", "kl/reverse", "on_policy_frac", "teacher/topk_mass"):
        assert [r[key] for r in a] == [r[key] for r in b], key
    own = [r for r in a if r["on_policy_frac"] == 1.0]
    assert all(0 < r["on_policy/response_length"] <= 6 for r in own)


def test_teacher_vocabulary_rule(tmp_path, tiny_dir, capsys):
    data = synth(tmp_path / "sft.jsonl", n=16)
    other = build_tiny(TinyModelConfig(output=str(tmp_path / "other"), hidden=32, layers=1, heads=2, kv_heads=1, vocab=600))
    n_student = len(load_tokenizer(ModelConfig(path=str(tiny_dir))).get_vocab())
    n_teacher = len(load_tokenizer(ModelConfig(path=str(other))).get_vocab())
    assert run_cli("distill", *distill_flags(tiny_dir, other, data, tmp_path / "bad", 1, "--train.batch_size", 8)) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"alignkit distill: error: --teacher.path {other} and --model.path {tiny_dir} do not share a tokenizer "
        f"(the student's has {n_student} tokens, the teacher's {n_teacher}); distillation compares distributions "
        "over token ids")
    # the same tokenizer with the embedding padded to 640 rows: compared over the student's ids
    padded = build_tiny(TinyModelConfig(output=str(tmp_path / "padded"), hidden=32, layers=1, heads=2, kv_heads=1,
                                        model_vocab=640))
    out = tmp_path / "ok"
    assert run_cli("distill", *distill_flags(tiny_dir, padded, data, out, 1, "--train.batch_size", 8)) == 0
    assert read_metrics(out)[0]["kl/forward"] > 0


def test_torchrun_fsdp2_on_policy_matches_one_process(tmp_path, tiny_dir, random_teacher):
    # every worker syncs the engine (a collective over the shards) and generates the whole step alike
    data = synth(tmp_path / "sft.jsonl", n=64)
    flags = ["--train.batch_size", 8, "--train.micro_batch_size", 4, "--train.lr", 1e-3, "--distill.lmbda", 1.0,
             "--distill.max_new_tokens", 6]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "alignkit.cli",
           "distill", *map(str, distill_flags(tiny_dir, random_teacher, data, tmp_path / "tr", 2, *flags)),
           "--policy.backend", "fsdp2"]
    done = subprocess.run(cmd, env=os.environ | {"OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert run_cli("distill", *distill_flags(tiny_dir, random_teacher, data, tmp_path / "local", 2, *flags)) == 0
    local, sharded = read_metrics(tmp_path / "local"), read_metrics(tmp_path / "tr")
    assert [r["on_policy_frac"] for r in sharded] == [1.0, 1.0]
    assert sharded[0]["loss"] == pytest.approx(local[0]["loss"], abs=1e-6)
    for a, b in zip(local, sharded, strict=True):
        assert b["tokens"] == a["tokens"] and b["loss"] == pytest.approx(a["loss"], abs=1e-4)


def test_bad_options_are_one_line_errors(tmp_path, tiny_dir, random_teacher, capsys):
    data = synth(tmp_path / "sft.jsonl", n=16)
    cases = {  # the ranges of every section: tests/unit/reliability/test_config_ranges.py
        ("--distill.lmbda", -0.1): "--distill.lmbda must be in [0, 1], got -0.1",
        ("--teacher.path", ""): "--teacher.path is required: the teacher's Hugging Face model folder",
    }
    for flag, message in cases.items():
        assert run_cli("distill", *distill_flags(tiny_dir, random_teacher, data, tmp_path / "o", 1), *flag) == 2
        assert capsys.readouterr().err.strip().splitlines()[-1] == f"alignkit distill: error: {message}"
    assert run_cli("distill", *distill_flags(tiny_dir, random_teacher, data, tmp_path / "o", 1), "--distill.loss", "kl") == 2
    assert capsys.readouterr().err.strip() == "alignkit distill: error: --distill.loss must be one of forward_kl, reverse_kl, jsd, got 'kl'"


def test_chat_records_and_their_on_policy_turn(tmp_path, tiny_dir, random_teacher):
    # two-turn conversations: the loss covers both assistant turns; an on-policy step replaces the
    # conversation by the student's answer to its first user turn
    convo = [{"messages": [{"role": "user", "content": f"{a}+{b}="}, {"role": "assistant", "content": str(a + b)},
                           {"role": "user", "content": "and 1+1="}, {"role": "assistant", "content": "2"}]}
             for a in range(4) for b in range(4)]
    data = tmp_path / "chat.jsonl"
    write_jsonl(convo, data)
    out = tmp_path / "chat"
    assert run_cli("distill", *distill_flags(tiny_dir, random_teacher, data, out, 2, "--train.batch_size", 8,
                                             "--data.max_length", 48, "--distill.lmbda", 1.0,
                                             "--distill.max_new_tokens", 4)) == 0
    rows = read_metrics(out)
    assert [r["on_policy_frac"] for r in rows] == [1.0, 1.0]
    assert all(0 < r["on_policy/response_length"] <= 4 and r["kl/forward"] > 0 for r in rows)
    off = tmp_path / "dataset"
    assert run_cli("distill", *distill_flags(tiny_dir, random_teacher, data, off, 1, "--train.batch_size", 8,
                                             "--data.max_length", 48)) == 0
    # both assistant turns are targets, "N<|im_end|>\n" each: response positions 0-2, then 20-22 (the
    # second user turn lies between)
    buckets = {k.removeprefix("kl/forward/pos_") for k in read_metrics(off)[0] if k.startswith("kl/forward/pos_")}
    assert buckets == {"0", "1", "2-3", "16-31"}
