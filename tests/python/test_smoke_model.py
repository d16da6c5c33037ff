"""The committed smoke model is exactly what scripts/build_smoke_model.py builds (offline, seeded)."""
import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_builder_reproduces_the_committed_model(tmp_path):
    spec = importlib.util.spec_from_file_location("build_smoke_model", ROOT / "scripts" / "build_smoke_model.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    mod.build(tmp_path)
    committed = ROOT / "data" / "smoke-model"
    names = sorted(p.name for p in committed.iterdir())
    assert names == sorted(p.name for p in tmp_path.iterdir())
    for name in names:
        assert (tmp_path / name).read_bytes() == (committed / name).read_bytes(), name


def test_smoke_model_is_tiny_and_complete():
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = ROOT / "data" / "smoke-model"
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path)
    assert sum(p.numel() for p in model.parameters()) < 300_000
    assert tok.pad_token and tok.eos_token and tok.pad_token != tok.eos_token
    text = tok.apply_chat_template([{"role": "user", "content": "Add 2 and 3."}], tokenize=False, add_generation_prompt=True)
    assert text.endswith("<|assistant|>\n")
    # byte-level: any text round-trips
    s = "Ünïcödé → 1,080 #### -7"
    assert tok.decode(tok(s, add_special_tokens=False)["input_ids"]) == s
