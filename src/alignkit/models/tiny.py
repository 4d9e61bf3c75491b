"""A tiny random model (Llama by default; models/tiny_archs.py for the others) and a locally trained
tokenizer, saved in Hugging Face format.

Everything is built offline: the tokenizer is a byte-level BPE trained with `tokenizers` on a small
built-in corpus (so any text round-trips exactly), digits are split one per token (arithmetic is
learnable by a tiny model), and the chat template is ChatML-style. Every architecture gets the same
tokenizer, so the same text is the same ids whichever model reads it (tested).
"""

from __future__ import annotations

import random
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import AutoModelForCausalLM, GenerationConfig, PreTrainedTokenizerFast

from alignkit.config.schema import TinyModelConfig
from alignkit.errors import ConfigError
from alignkit.models.tiny_archs import ARCHS, NO_PAD_TOKEN, Sizes, SpecialIds

SPECIAL_TOKENS = ["<|pad|>", "<|bos|>", "<|eos|>", "<|im_start|>", "<|im_end|>"]

# ChatML-style; every turn ends with <|im_end|>, and generation stops at <|im_end|> or <|eos|>.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

_WORDS = (
    "the a an is are was of to and in on for with what which answer question sort reverse compute "
    "number numbers list letters word sum plus minus times result correct wrong yes no please "
    "user assistant system hello world model reward good bad step first then so because"
).split()


def _corpus(seed: int, n: int = 4000) -> list[str]:
    rng = random.Random(seed)
    lines = []
    for _ in range(n):
        a, b = rng.randrange(100), rng.randrange(100)
        digits = " ".join(str(rng.randrange(10)) for _ in range(rng.randint(3, 6)))
        letters = "".join(rng.choice("abcdefgh") for _ in range(rng.randint(3, 6)))
        words = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(3, 10)))
        lines += [f"{a}+{b}={a + b}", f"sort: {digits} =", f"reverse: {letters} =", words.capitalize() + "."]
    return lines


def build_tokenizer(vocab: int, seed: int = 0) -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(seed), trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|bos|>",
        eos_token="<|eos|>",
        pad_token="<|pad|>",
        chat_template=CHAT_TEMPLATE,
        clean_up_tokenization_spaces=False,
        model_max_length=1 << 20,
    )


def build_tiny(spec: TinyModelConfig) -> Path:
    """Write a randomly initialised tiny model of `spec.arch` and its tokenizer to `spec.output`;
    returns the folder."""
    if spec.arch not in ARCHS:
        raise ConfigError(f"--arch {spec.arch!r} is not a known architecture; choose one of {', '.join(ARCHS)}")
    out = Path(spec.output)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(spec.vocab, spec.seed)
    eos = [tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("<|im_end|>")]
    if spec.arch in NO_PAD_TOKEN:
        tokenizer.pad_token = None
    sizes = Sizes(
        vocab=max(spec.model_vocab, len(tokenizer)),
        hidden=spec.hidden,
        layers=spec.layers,
        heads=spec.heads,
        kv_heads=spec.kv_heads,
        intermediate=spec.intermediate or int(spec.hidden * 8 / 3 + 31) // 32 * 32,
        max_position=spec.max_position,
        window=spec.window,
    )
    ids = SpecialIds(tokenizer.bos_token_id, eos, tokenizer.pad_token_id)
    config = ARCHS[spec.arch](sizes, ids)
    torch.manual_seed(spec.seed)
    model = AutoModelForCausalLM.from_config(config)
    model.generation_config = GenerationConfig(bos_token_id=ids.bos, eos_token_id=eos, pad_token_id=ids.pad)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out
