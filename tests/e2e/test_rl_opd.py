"""`alignkit rl --preset opd` end to end: a teacher made by SFT on the one-digit slice of the demo's addition
task, a fresh tiny student distilled on its own samples (its KL to the teacher falls, its held-out greedy
accuracy rises from the fresh model's 0 toward the teacher's), a task reward added with a weight, and the
teacher's checks (vocabulary, missing teacher, a teacher no estimator reads) as one-line errors."""

import pytest
import torch
from helpers import run_cli

from alignkit.config.schema import ModelConfig, TinyModelConfig
from alignkit.data.synth import is_correct, write_jsonl
from alignkit.metrics.logger import read_metrics
from alignkit.models.load import load_causal_lm, load_tokenizer
from alignkit.models.tiny import build_tiny
from alignkit.rollout.greedy import greedy_complete

QUIET = ["--logging.progress", "false", "--data.max_length", 16]
# The one-digit additions: a tiny teacher learns them in 100 SFT steps. The prompts are both the training
# and the held-out set: accuracy measures how much of the teacher's skill the student took.
ONE_DIGIT = [{"prompt": f"{a}+{b}=", "response": str(a + b)} for a in range(10) for b in range(10)]


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models run as fast on one thread, and a busy machine's descheduled threads cannot stall them."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("opd")
    write_jsonl(ONE_DIGIT * 10, root / "sft.jsonl")
    write_jsonl([{"prompt": r["prompt"], "label": r["response"]} for r in ONE_DIGIT], root / "prompts.jsonl")
    return root


@pytest.fixture(scope="module")
def teacher(data):
    """A 128-wide tiny model SFT'd for 100 steps on the one-digit additions (74% greedy accuracy)."""
    tiny = build_tiny(TinyModelConfig(output=str(data / "tiny128"), hidden=128, layers=2))
    out = data / "teacher"
    torch.set_num_threads(1)
    assert run_cli("sft", "--model.path", tiny, "--data.train_files", data / "sft.jsonl", "--output_dir", out,
                   "--train.max_steps", 100, "--train.batch_size", 64, "--train.micro_batch_size", 64,
                   "--train.lr", 3e-3, "--train.min_lr_ratio", 1.0, *QUIET) == 0
    return out / "final"


def accuracy(model_dir) -> float:
    cfg = ModelConfig(path=str(model_dir))
    outs = greedy_complete(load_causal_lm(cfg, torch.device("cpu")), load_tokenizer(cfg),
                           [r["prompt"] for r in ONE_DIGIT], 5)
    return sum(is_correct("arithmetic", r["response"], o) for r, o in zip(ONE_DIGIT, outs, strict=True)) / len(ONE_DIGIT)


def opd_flags(student, teacher, data, out, steps, *extra):
    return ["--preset", "opd", "--model.path", student, "--teacher.path", teacher, "--data.train_files",
            data / "prompts.jsonl", "--output_dir", out, "--train.max_steps", steps, "--reward.rules", "exact",
            "--rollout.max_new_tokens", 3, "--train.batch_size", 32, "--rollout.n_samples_per_prompt", 8,
            "--train.micro_batch_size", 256, "--train.lr", 1e-2, "--train.min_lr_ratio", 1.0, *QUIET, *extra]


def distil(tiny_dir, teacher, data, out, steps):
    assert run_cli("rl", *opd_flags(tiny_dir, teacher, data, out, steps)) == 0
    kl = [r["teacher/kl"] for r in read_metrics(out)]
    first, last = sum(kl[:5]) / 5, sum(kl[-10:]) / 10
    before, after, target = (accuracy(m) for m in (tiny_dir, out / "final", teacher))
    print(f"teacher/kl {first:.2f} -> {last:.2f} (first 5, last 10 steps); greedy accuracy: fresh student "
          f"{before:.0%}, distilled {after:.0%}, teacher {target:.0%}")
    return first, last, before, after, target


def test_student_approaches_the_teacher(tmp_path, tiny_dir, teacher, data):
    first, last, before, after, target = distil(tiny_dir, teacher, data, tmp_path / "opd", 100)
    rows = read_metrics(tmp_path / "opd")
    assert last < 0.6 * first
    assert before == 0.0 and target >= 0.5 and after > before
    # the advantage is minus the log-ratio per token: its batch mean is minus teacher/kl, every step
    assert all(r["advantages/mean"] == pytest.approx(-r["teacher/kl"], abs=1e-5) for r in rows)
    assert all(r["teacher/kl"] == pytest.approx(r["logp/student"] - r["logp/teacher"], abs=1e-5) for r in rows)
    assert {"teacher/kl/pos_0", "teacher/kl/pos_1"} <= set(rows[0]) and "kl" not in rows[0]  # no reference


@pytest.mark.slow
def test_student_approaches_the_teacher_longer(tmp_path, tiny_dir, teacher, data):
    # measured: teacher/kl 6.94 -> 2.92, accuracy 0% -> 8% (teacher 74%): from a random start the samples
    # carry one token's signal each, and the student's entropy falls below 1 nat by step ~75 (reverse KL seeks
    # modes), so it rarely samples the answers it lacks; `alignkit distill` reads whole distributions instead
    first, last, before, after, target = distil(tiny_dir, teacher, data, tmp_path / "opd", 600)
    assert last < 0.5 * first and after > before


def test_advantages_match_plain_forwards(tmp_path, tiny_dir, teacher, data, captured):
    # one step's advantages against log-probs taken by hand from plain Hugging Face forwards at the sampling
    # temperature: -(log p_student - log p_teacher) of each response token (EOS included) from the logits one
    # position earlier, 0 on prompt and padding; an offset, a temperature or a row mix-up would all show
    from transformers import AutoModelForCausalLM

    assert run_cli("rl", *opd_flags(tiny_dir, teacher, data, tmp_path / "one", 1, "--rollout.temperature", 0.7,
                                    "--train.batch_size", 8, "--rollout.n_samples_per_prompt", 4)) == 0
    exp = captured["exp"][0]
    pos = torch.arange(exp.input_ids.shape[1])
    # every prompt "a+b=" is 4 tokens: the mask is the sampled tokens, up to each row's length, no further
    assert torch.equal(exp.response_mask.bool(), (pos >= 4) & (pos < exp.lengths[:, None]))
    student, tutor = (AutoModelForCausalLM.from_pretrained(d).eval() for d in (tiny_dir, teacher))
    with torch.no_grad():
        lp_s, lp_t = (torch.log_softmax(m(exp.input_ids).logits / 0.7, -1) for m in (student, tutor))
    ids, mask = exp.input_ids[:, 1:, None], exp.response_mask[:, 1:]
    want = -(lp_s[:, :-1].gather(-1, ids) - lp_t[:, :-1].gather(-1, ids))[..., 0] * mask
    assert (exp.advantages[:, 0] == 0).all() and torch.allclose(exp.advantages[:, 1:], want, atol=1e-4)


def test_a_task_reward_adds_to_the_teacher(tmp_path, teacher, data):
    # the teacher distilled into itself: every log-ratio is 0, so the advantages are the task reward's alone,
    # 0 without a weight and 0.5 x grpo's with one (the teacher gets some of its samples right, not all)
    base, weighted = tmp_path / "base", tmp_path / "weighted"
    assert run_cli("rl", *opd_flags(teacher, teacher, data, base, 1)) == 0
    assert run_cli("rl", *opd_flags(teacher, teacher, data, weighted, 1, "--algo.opd_reward_weight", 0.5)) == 0
    a, b = read_metrics(base)[0], read_metrics(weighted)[0]
    assert a["teacher/kl"] == b["teacher/kl"] == 0.0 and 0 < a["reward/mean"] == b["reward/mean"] < 1
    assert a["advantages/max"] == a["advantages/min"] == 0.0
    assert b["advantages/max"] > 0 > b["advantages/min"]


def test_teacher_errors_are_one_line(tmp_path, tiny_dir, data, capsys):
    other = build_tiny(TinyModelConfig(output=str(tmp_path / "other"), hidden=32, layers=1, heads=2, kv_heads=1,
                                       vocab=600))
    n_student = len(load_tokenizer(ModelConfig(path=str(tiny_dir))).get_vocab())
    n_teacher = len(load_tokenizer(ModelConfig(path=str(other))).get_vocab())
    flags = opd_flags(tiny_dir, other, data, tmp_path / "bad", 1)
    cases = {
        (): f"--teacher.path {other} and --model.path {tiny_dir} do not share a tokenizer (the student's has "
            f"{n_student} tokens, the teacher's {n_teacher}); distillation compares distributions over token ids",
        ("--teacher.path", ""): "--algo.advantage opd distils from a teacher: give --teacher.path DIR (a Hugging Face "
                                "causal LM with the student's tokenizer)",
        ("--teacher.path", tmp_path / "nowhere"): f"--teacher.path: model folder not found: {tmp_path / 'nowhere'}",
        ("--algo.advantage", "grpo"): "--teacher.path is given but --algo.advantage grpo reads no teacher; on-policy "
                                      "distillation is --preset opd",
        ("--algo.kl_coef", 0.1, "--algo.kl_in_reward", "true"): "--algo.advantage opd credits each token with its own "
            "term: put the KL to the reference in the loss (--algo.kl_in_reward false)",
    }
    for extra, message in cases.items():
        assert run_cli("rl", *flags, *extra) == 2, extra
        assert capsys.readouterr().err.strip().splitlines()[-1] == f"alignkit rl: error: {message}"
