"""Shared fixtures: one tiny model + tokenizer per test session, built offline."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def pytest_addoption(parser):
    parser.addoption("--device", default="cpu", choices=("cpu", "cuda"),
                     help="where the tests that take the `device` fixture run (bench/gpu passes cuda)")


def pytest_collection_modifyitems(config, items):
    import torch

    slow = os.environ.get("ALIGNKIT_SLOW") == "1"
    for item in items:
        if "device" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.on_device)  # `-m on_device` selects the CUDA-capable tests
        if "slow" in item.keywords and not slow:
            item.add_marker(pytest.mark.skip(reason="slow: set ALIGNKIT_SLOW=1"))
        if "gpu" in item.keywords and not torch.cuda.is_available():
            item.add_marker(pytest.mark.skip(reason="needs a CUDA device"))


@pytest.fixture(scope="session")
def device(request):
    """The torch device of `--device` (cpu by default); the CUDA-capable tests run their model there."""
    import torch

    name = request.config.getoption("--device")
    if name == "cuda" and not torch.cuda.is_available():
        pytest.skip("--device cuda: no CUDA device")
    return torch.device(name)


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory):
    from alignkit.config.schema import TinyModelConfig
    from alignkit.models.tiny import build_tiny

    return build_tiny(TinyModelConfig(output=str(tmp_path_factory.mktemp("tiny") / "model"), hidden=64, layers=2))


@pytest.fixture(scope="session")
def tokenizer(tiny_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_dir)


@pytest.fixture(scope="session")
def arch_dir(tmp_path_factory):
    """`arch_dir(name)`: the folder of a tiny random model of that architecture (models/tiny_archs.py),
    built once per test session, with the same tokenizer as `tiny_dir`."""
    from alignkit.config.schema import TinyModelConfig
    from alignkit.models.tiny import build_tiny

    built = {}

    def build(arch: str):
        if arch not in built:
            out = tmp_path_factory.mktemp(f"arch-{arch}") / "model"
            built[arch] = build_tiny(TinyModelConfig(output=str(out), arch=arch, hidden=64, layers=2, heads=4, kv_heads=2))
        return built[arch]

    return build


@pytest.fixture(scope="session")
def qwen3_dir(tiny_dir, tmp_path_factory):
    """The tiny model with a Qwen3-style chat template (tests/templates/qwen3.jinja): it drops the
    reasoning of assistant turns before the last user message, and reads `enable_thinking` and `tools`."""
    import shutil
    from pathlib import Path

    from transformers import AutoTokenizer

    out = tmp_path_factory.mktemp("qwen3") / "model"
    shutil.copytree(tiny_dir, out)
    tok = AutoTokenizer.from_pretrained(out)
    tok.chat_template = (Path(__file__).parent / "templates" / "qwen3.jinja").read_text()
    tok.save_pretrained(out)
    return out
