"""What `posttrain doctor` asks the sidecar's Python: run by path (``python doctor_probe.py``), it
prints one JSON object on stdout and always exits 0 when the interpreter itself works.

Standalone on purpose: it imports nothing from posttrain_sidecar, so it reports a broken or
missing install instead of dying with it. Each package is imported on its own and a failure is
recorded, never raised. Optional integrations (tensorboard, wandb, trackio) are looked up without
importing them (wandb's import alone takes seconds); bitsandbytes is imported only where CUDA is,
since that import is the real test of whether it can load its CUDA libraries.
"""
from __future__ import annotations

import json
import os
import sys

# Run as a script, this file's folder (the sidecar package itself) is sys.path[0]: its modules
# (protocol, training, rewards, …) must not shadow top-level packages of the same name.
_here = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _here]

import importlib  # noqa: E402
import importlib.metadata  # noqa: E402
import importlib.util  # noqa: E402

# pip name -> module name, in the order doctor prints them
CORE = {"torch": "torch", "transformers": "transformers", "peft": "peft", "trl": "trl",
        "accelerate": "accelerate", "pyzmq": "zmq", "msgpack": "msgpack"}
OPTIONAL = {"bitsandbytes": "bitsandbytes", "tensorboard": "tensorboard", "wandb": "wandb", "trackio": "trackio"}


def _short(e: BaseException, limit: int = 300) -> str:
    text = f"{type(e).__name__}: {e}".strip().replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def dist_version(pip_name: str) -> str | None:
    try:
        return importlib.metadata.version(pip_name)
    except importlib.metadata.PackageNotFoundError:
        return None
    except Exception:  # noqa: BLE001 - a corrupt dist-info is "unknown version", not a crash
        return None


def imported(pip_name: str, module: str) -> dict:
    try:
        mod = importlib.import_module(module)
    except BaseException as e:  # noqa: BLE001 - SystemExit/ImportError/OSError from native libs alike
        installed = dist_version(pip_name)
        return {"installed": installed is not None, "version": installed, "error": _short(e)}
    version = getattr(mod, "__version__", None) or dist_version(pip_name)
    return {"installed": True, "version": str(version) if version is not None else None, "error": None}


def looked_up(pip_name: str, module: str) -> dict:
    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        found = False
    return {"installed": found, "version": dist_version(pip_name) if found else None, "error": None}


def torch_info() -> dict | None:
    if "torch" not in sys.modules:
        return None
    import torch

    info: dict = {
        "version": torch.__version__,
        "cuda_build": getattr(torch.version, "cuda", None),
        "cuda_available": False,
        "devices": [],
        "threads": torch.get_num_threads(),
        "error": None,
    }
    try:
        info["cuda_available"] = bool(torch.cuda.is_available())
        for i in range(torch.cuda.device_count() if info["cuda_available"] else 0):
            free, total = torch.cuda.mem_get_info(i)
            info["devices"].append({"index": i, "name": torch.cuda.get_device_name(i), "total_bytes": int(total), "free_bytes": int(free)})
    except Exception as e:  # noqa: BLE001 - a broken driver is a finding, not a crash
        info["error"] = _short(e)
    return info


def sidecar_info() -> dict:
    """Where `import posttrain_sidecar` would come from (without importing it)."""
    try:
        spec = importlib.util.find_spec("posttrain_sidecar")
    except (ImportError, ValueError) as e:
        return {"importable": False, "location": None, "error": _short(e)}
    if spec is None:
        return {"importable": False, "location": None, "error": None}
    location = list(spec.submodule_search_locations or []) or [spec.origin]
    return {"importable": True, "location": os.path.realpath(location[0]) if location[0] else None, "error": None}


def main() -> None:
    packages = {name: imported(name, mod) for name, mod in CORE.items()}
    t = torch_info()
    optional = {name: looked_up(name, mod) for name, mod in OPTIONAL.items()}
    if t and t["cuda_available"] and optional["bitsandbytes"]["installed"]:
        optional["bitsandbytes"] = imported("bitsandbytes", "bitsandbytes")
    try:
        affinity = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        affinity = None
    out = {
        "python": {
            "version": ".".join(map(str, sys.version_info[:3])),
            "executable": sys.executable,
            "prefix": os.path.realpath(sys.prefix),
            "base_prefix": os.path.realpath(getattr(sys, "base_prefix", sys.prefix)),
        },
        "packages": packages,
        "optional": optional,
        "torch": t,
        "sidecar": sidecar_info(),
        "cpu": {"count": os.cpu_count(), "usable": affinity},
    }
    sys.stdout.write(json.dumps(out) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
