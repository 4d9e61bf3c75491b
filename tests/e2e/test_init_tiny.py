"""`alignkit init-tiny`: a Hugging Face model + tokenizer that load with the Auto classes."""

import torch
from helpers import run_cli
from transformers import AutoModelForCausalLM, AutoTokenizer


def test_init_tiny_loads_and_round_trips(tmp_path):
    out = tmp_path / "tiny"
    assert run_cli("init-tiny", "--output", out, "--hidden", 32, "--layers", 1, "--heads", 2, "--kv_heads", 1) == 0
    model = AutoModelForCausalLM.from_pretrained(out)
    tok = AutoTokenizer.from_pretrained(out)
    assert model.config.model_type == "llama" and model.config.hidden_size == 32
    for text in ["12+35=47", "  héllo\n\tworld 🙂 ", "sort: 5 2 9 1 = 1 2 5 9", "<|im_start|>user\nhi<|im_end|>\n"]:
        assert tok.decode(tok(text, add_special_tokens=False)["input_ids"]) == text
    assert tok.chat_template and tok.apply_chat_template(
        [{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True
    ) == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    out_ids = model.generate(torch.tensor([tok("1+2=")["input_ids"]]), max_new_tokens=3, do_sample=False)
    assert out_ids.shape[1] > 4
