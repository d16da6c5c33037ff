"""Builds the offline smoke model in data/smoke-model, deterministically.

A Llama-architecture causal LM (hidden 64, 2 layers, 4 heads, ~160k parameters, random init with
a fixed seed) and a byte-level BPE tokenizer trained with `tokenizers` on the smoke data, with
pad/eos tokens and a chat template. No network: nothing is downloaded. The output is committed;
tests/python/test_smoke_model.py checks this script reproduces it byte for byte.

Run: .venv/bin/python scripts/build_smoke_model.py [out_dir]
     [--hidden 64 --layers 2 --heads 4 --intermediate 2*hidden]

The size options build larger tiny models with the same tokenizer for benchmarks (e.g.
`--hidden 256 --layers 4 bench/models/tiny-256`); the defaults give the committed smoke model.
"""
import argparse
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "data" / "smoke-model"
VOCAB = 384
SPECIAL = ["<|pad|>", "<|endoftext|>", "<|system|>", "<|user|>", "<|assistant|>"]
# `{% generation %}` marks assistant tokens so TRL can train on assistant turns only.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'assistant' %}<|assistant|>\n{% generation %}{{ message['content'] }}<|endoftext|>{% endgeneration %}\n"
    "{% else %}<|{{ message['role'] }}|>\n{{ message['content'] }}<|endoftext|>\n{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


def corpus():
    for f in sorted((ROOT / "data" / "smoke").glob("*.jsonl")):
        for line in f.read_text(encoding="utf-8").splitlines():
            for v in json.loads(line).values():
                if isinstance(v, str):
                    yield v
    # A little general English and digits so unseen prompts tokenise into sensible pieces.
    yield "The quick brown fox jumps over the lazy dog. 0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18"


def build(out: Path, hidden: int = 64, layers: int = 2, heads: int = 4, intermediate: int | None = None) -> None:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    out.mkdir(parents=True, exist_ok=True)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB,
        special_tokens=SPECIAL,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus(), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="<|pad|>",
        eos_token="<|endoftext|>",
        additional_special_tokens=SPECIAL[2:],
        model_max_length=512,
        chat_template=CHAT_TEMPLATE,
    )
    fast.padding_side = "left"  # generation (GRPO) pads on the left; trainers set what they need
    fast.save_pretrained(out)

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(fast),
        hidden_size=hidden,
        intermediate_size=intermediate or 2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        pad_token_id=fast.pad_token_id,
        eos_token_id=fast.eos_token_id,
        bos_token_id=None,
        torch_dtype="float32",
    )
    model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = fast.pad_token_id
    model.generation_config.eos_token_id = fast.eos_token_id
    model.save_pretrained(out, safe_serialization=True)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description="Build the offline smoke model (or a larger one of the same family).")
    ap.add_argument("out", nargs="?", default=str(OUT))
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--intermediate", type=int, default=None, help="MLP width (default: 2 x hidden)")
    a = ap.parse_args()
    build(Path(a.out), hidden=a.hidden, layers=a.layers, heads=a.heads, intermediate=a.intermediate)
