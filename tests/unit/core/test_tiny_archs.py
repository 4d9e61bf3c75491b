"""`alignkit init-tiny --arch NAME`: every architecture of the matrix builds offline, loads with the Auto
classes, reads text as the same ids as the default model, and keeps what makes it different."""

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from alignkit.cli import main
from alignkit.models.tiny_archs import ARCHS, NO_PAD_TOKEN

TEXT = "12+35=47 sort: 5 2 9 = 2 5 9 <|im_start|>user\nhi<|im_end|>\n"


@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_arch_builds_loads_and_reads_the_same_ids(arch, arch_dir, tokenizer):
    folder = arch_dir(arch)
    tok = AutoTokenizer.from_pretrained(folder)
    assert tok(TEXT)["input_ids"] == tokenizer(TEXT)["input_ids"]
    assert (tok.pad_token_id is None) == (arch in NO_PAD_TOKEN)
    model = AutoModelForCausalLM.from_pretrained(folder, attn_implementation="eager")
    ids = torch.tensor([tok(TEXT)["input_ids"]])
    assert model(ids).logits.shape == (1, ids.shape[1], model.config.vocab_size)
    assert model.generation_config.eos_token_id == [tok.eos_token_id, tok.convert_tokens_to_ids("<|im_end|>")]


def test_family_traits(arch_dir):
    def config(arch):
        return AutoModelForCausalLM.from_pretrained(arch_dir(arch)).config

    assert config("mistral").sliding_window == 8
    assert config("gemma3").layer_types == ["sliding_attention", "full_attention"]
    assert config("gemma2").final_logit_softcapping is not None
    assert config("qwen3_moe").num_experts == 4
    assert not config("llama_untied").tie_word_embeddings and config("llama").tie_word_embeddings


def run_cli(*args) -> int:
    return main([str(a) for a in args])


def test_unknown_arch_is_one_line_error(tmp_path, capsys):
    assert run_cli("init-tiny", "--output", tmp_path / "m", "--arch", "llama9") == 2
    assert "--arch 'llama9' is not a known architecture; choose one of llama, llama_untied" in capsys.readouterr().err


def test_model_vocab_pads_the_embedding(tmp_path):
    assert run_cli("init-tiny", "--output", tmp_path / "m", "--hidden", 32, "--layers", 1, "--heads", 2, "--kv_heads", 1,
                   "--arch", "qwen2", "--model_vocab", 1000) == 0
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "m")
    assert model.config.vocab_size == 1000 and len(AutoTokenizer.from_pretrained(tmp_path / "m")) < 1000
