"""Dropout is off in training by default (models/dropout.py): a model in train mode computes the same
function as in eval mode, the one the sampler and the reference use; `--model.dropout true` keeps it."""

import torch

from alignkit.config.schema import ModelConfig
from alignkit.models.load import load_causal_lm


def forwards(model, ids):
    model.train()
    a, b = model(ids).logits, model(ids).logits
    model.eval()
    return a, b, model(ids).logits


def test_gpt2_dropout_is_off_in_training_and_kept_on_request(arch_dir, caplog):
    folder = arch_dir("gpt2")  # GPT-2 configs default to dropout 0.1 on attention, residuals and embeddings
    ids = torch.randint(0, 300, (2, 24))
    with caplog.at_level("INFO", logger="alignkit"):
        model = load_causal_lm(ModelConfig(path=str(folder)), torch.device("cpu"))
    assert "dropout rates set to 0 for training" in caplog.text
    a, b, evaluated = forwards(model, ids)
    assert torch.equal(a, b) and torch.allclose(a, evaluated, atol=1e-6)
    assert model.config.resid_pdrop == 0.1  # the config, and so the exported model, keeps its rates

    kept = load_causal_lm(ModelConfig(path=str(folder), dropout=True), torch.device("cpu"))
    a, b, _ = forwards(kept, ids)
    assert not torch.equal(a, b)
