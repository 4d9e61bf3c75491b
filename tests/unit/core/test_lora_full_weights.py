"""Full weights of a LoRA reward model, as the sharded export gathers them: the plain transformers names,
adapters merged, and the score head peft trains a copy of (`modules_to_save`), not its frozen original."""

import torch

from alignkit.config.schema import LoraConfig, ModelConfig
from alignkit.models.load import load_reward_model
from alignkit.models.weights import full_weights


def test_lora_reward_model_yields_the_trained_score_head(tiny_dir):
    model = load_reward_model(ModelConfig(path=str(tiny_dir), lora=LoraConfig(rank=4)), torch.device("cpu"))
    trained = dict(model.named_parameters())["base_model.model.score.modules_to_save.default.weight"]
    with torch.no_grad():
        trained.add_(1.0)  # as training moves the copy; the original stays as loaded
    weights = {n: t.clone() for n, t in full_weights(model)}
    plain = load_reward_model(ModelConfig(path=str(tiny_dir)), torch.device("cpu"))
    assert weights.keys() == dict(plain.named_parameters()).keys()
    assert torch.equal(weights["score.weight"], trained)
