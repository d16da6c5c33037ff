"""The committed smoke data is exactly what its generator writes (so it can be regenerated)."""
import importlib.util
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_smoke_data_matches_generator(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("make_smoke_data", ROOT / "scripts" / "make_smoke_data.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    monkeypatch.setattr(mod, "OUT", tmp_path)
    mod.main()
    committed = sorted(p.name for p in (ROOT / "data" / "smoke").glob("*.jsonl"))
    generated = sorted(p.name for p in tmp_path.glob("*.jsonl"))
    assert generated == committed
    for name in committed:
        assert (tmp_path / name).read_bytes() == (ROOT / "data" / "smoke" / name).read_bytes(), name


def test_smoke_grpo_answers_are_sums():
    import json

    for line in (ROOT / "data" / "smoke" / "grpo.jsonl").read_text().splitlines():
        row = json.loads(line)
        digits = [int(t) for t in row["prompt"].replace("?", " ").replace(".", " ").replace("+", " ").split() if t.isdigit()]
        assert len(digits) == 2 and sum(digits) == int(row["answer"])
