"""Any pad/EOS layout: no pad token, a list of EOS ids, pad == EOS. The pad id is always an int inside
the embedding, the tokenizer is saved as it came, a reward model's config gets an int pad id (never a
list), and generation stops on every EOS id."""

import json
import logging
import shutil
from types import SimpleNamespace

import torch
from transformers import AutoTokenizer

from alignkit.config.schema import ModelConfig
from alignkit.models.load import load_reward_model, load_tokenizer
from alignkit.models.padding import pad_id
from alignkit.rollout.stop import eos_ids


def test_pad_id_falls_back_to_eos_then_zero():
    assert pad_id(SimpleNamespace(pad_token_id=0, eos_token_id=2)) == 0
    assert pad_id(SimpleNamespace(pad_token_id=None, eos_token_id=2)) == 2
    assert pad_id(SimpleNamespace(pad_token_id=None, eos_token_id=None)) == 0


def test_llama3_layout_loads_without_inventing_a_pad_token(arch_dir):
    folder = arch_dir("llama3")
    tok = load_tokenizer(ModelConfig(path=str(folder)))
    assert tok.pad_token_id is None and pad_id(tok) == tok.eos_token_id == 2
    model = load_reward_model(ModelConfig(path=str(folder)), torch.device("cpu"))
    assert model.config.pad_token_id == 2 and model.config.eos_token_id == [2, 4]
    # transformers' own forward (which refuses a batch of 2 without a pad id) runs
    assert model(torch.tensor([[5, 6, 7], [8, 9, 2]])).logits.shape == (2, 1)


def test_pad_outside_the_embedding_is_dropped(tiny_dir, tmp_path, caplog):
    shutil.copytree(tiny_dir, tmp_path / "m")
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    tok = AutoTokenizer.from_pretrained(tmp_path / "m")
    tok.add_special_tokens({"pad_token": "<|new_pad|>"})  # added without resizing the model
    tok.save_pretrained(tmp_path / "m")
    assert tok.pad_token_id == config["vocab_size"]
    with caplog.at_level(logging.WARNING, logger="alignkit"):
        loaded = load_tokenizer(ModelConfig(path=str(tmp_path / "m")))
    assert pad_id(loaded) == loaded.eos_token_id
    assert f"pad token '<|new_pad|>' (id {config['vocab_size']}) is outside the model's {config['vocab_size']}-row " \
           f"embedding; padding with id {loaded.eos_token_id} instead" in caplog.text


def test_eos_ids_take_every_id_of_a_list():
    tok = SimpleNamespace(eos_token_id=2)
    text = SimpleNamespace(eos_token_id=[2, 4, 9])
    model = SimpleNamespace(generation_config=SimpleNamespace(eos_token_id=[2, 7]),
                            config=SimpleNamespace(get_text_config=lambda: text))
    assert eos_ids(tok, model) == {2, 4, 7, 9}
    model.generation_config = None
    assert eos_ids(tok, model) == {2, 4, 9}


def test_reward_model_scores_do_not_depend_on_padding(arch_dir):
    """A llama3-layout reward model (serve-reward's scorer) scores a ragged batch as it scores each alone."""
    from alignkit.rewards.base import RewardInput
    from alignkit.rewards.model import ModelReward

    scorer = ModelReward(str(arch_dir("llama3")), normalize=False, batch_size=8, device="cpu")
    prompts, responses = ["1+1=", "sort: 3 1 2 =", "hi"], ["2", "1 2 3 and more", "hello there"]
    together = scorer(RewardInput(prompts, responses, [None] * 3)).scores
    alone = [scorer(RewardInput([p], [r], [None])).scores[0] for p, r in zip(prompts, responses, strict=True)]
    assert torch.allclose(together, torch.stack(alone), atol=1e-5)
