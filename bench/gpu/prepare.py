"""The GPU check's prepare step, on a machine with network and Node.js (this one): a bundle for an
air-gapped GPU host. Writes BUNDLE/ (default bench/gpu/bundle/, git-ignored):

  config.json  the check's config, resolved by the real CLI (`posttrain config --preset gpu` with
               check.CHECK_SETTINGS), so the host needs no Node.js and the config was validated by
               the same schema a `posttrain run` uses;
  wheels/      exactly the wheels the host lacks: of the sidecar's dependencies (pyproject.toml and its
               gpu extra, at the pins of scripts/constraints.txt) and of what they need, those the
               host manifest does not list (datasets, dill, multiprocess, ... on the issue's host),
               for CPython 3.12 on manylinux x86_64. Found by walking each wheel's Requires-Dist
               (markers evaluated for that host) against the manifest: a listed package is taken
               as present (and its listed version must satisfy the requirement, else the right
               version is brought and shadows it on PYTHONPATH).
               bitsandbytes ships one native library per CUDA/ROCm version (129 MB unpacked, 43 MB
               wheel); only those of the host's CUDA major (--cuda, default 13: torch 2.11 cu130)
               are kept, the wheel rewritten with its RECORD.

It fails when the bundle and the working tree together exceed the carry budget (--budget-mib, 64),
and prints the total either way.

    .venv/bin/python bench/gpu/prepare.py [--bundle DIR] [--host FILE] [--cuda 13] [--config-only]

--host: the manifest, one `name` or `name==version` a line (`pip list --format=freeze` of the host
works as is); default bench/gpu/host-packages.txt, the host the issue describes.
"""
from __future__ import annotations

import argparse
import base64
import hashlib
import json
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from importlib import metadata
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))

from check import CHECK_SETTINGS  # noqa: E402

from packaging.markers import Marker  # noqa: E402
from packaging.requirements import Requirement  # noqa: E402
from packaging.specifiers import SpecifierSet  # noqa: E402
from packaging.utils import canonicalize_name, parse_wheel_filename  # noqa: E402
from packaging.version import Version  # noqa: E402

PLATFORMS = ["manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_26_x86_64", "manylinux_2_24_x86_64",
             "manylinux_2_17_x86_64", "manylinux2014_x86_64", "manylinux1_x86_64", "linux_x86_64"]
HOST_ENV = {"python_version": "3.12", "python_full_version": "3.12.3", "sys_platform": "linux", "platform_system": "Linux",
            "platform_machine": "x86_64", "implementation_name": "cpython", "platform_python_implementation": "CPython",
            "os_name": "posix", "extra": ""}


def pins() -> dict[str, SpecifierSet]:
    """scripts/constraints.txt: the known-good versions, used for what the bundle brings (a package
    the host already has only needs to satisfy the requirement's range)."""
    out = {}
    for line in (ROOT / "scripts" / "constraints.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            req = Requirement(line)
            out[canonicalize_name(req.name)] = req.specifier
    try:
        out["datasets"] = SpecifierSet(f"=={metadata.version('datasets')}")  # what this project is tested with
    except metadata.PackageNotFoundError:
        pass
    return out


def wanted() -> list[str]:
    """What the sidecar needs: pyproject.toml's dependencies and its gpu extra (ranges), and datasets
    (TRL imports it)."""
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [*project["dependencies"], *project["optional-dependencies"]["gpu"], "datasets"]


def read_host(path: Path) -> dict[str, Version | None]:
    host: dict[str, Version | None] = {}
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if not line:
            continue
        name, _, version = line.partition("==")
        host[canonicalize_name(name.strip())] = Version(version.strip()) if version.strip() else None
    return host


def download(req: str, dest: Path) -> Path:
    before = set(dest.glob("*.whl"))
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check", "--no-deps",
           "--only-binary=:all:", "--python-version", "3.12", "--implementation", "cp", "--abi", "cp312", "--abi", "abi3",
           "--abi", "none", *[f"--platform={p}" for p in PLATFORMS], "-d", str(dest), req]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"prepare: pip could not download {req!r} for CPython 3.12 manylinux x86_64:\n{done.stderr.strip()}")
    new = set(dest.glob("*.whl")) - before
    if new:
        return new.pop()
    name = canonicalize_name(Requirement(req).name)
    spec = Requirement(req).specifier
    for w in dest.glob("*.whl"):  # already there from an earlier run
        n, v, _, _ = parse_wheel_filename(w.name)
        if n == name and spec.contains(v, prereleases=True):
            return w
    sys.exit(f"prepare: pip reported {req!r} downloaded but no wheel appeared in {dest}")


def requires(wheel: Path) -> list[Requirement]:
    with zipfile.ZipFile(wheel) as z:
        meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        text = z.read(meta).decode()
    out = []
    for line in text.splitlines():
        if line.startswith("Requires-Dist:"):
            req = Requirement(line.split(":", 1)[1].strip())
            if req.marker is None or Marker(str(req.marker)).evaluate(HOST_ENV):
                out.append(req)
    return out


def resolve(host: dict[str, Version | None], cache: Path) -> tuple[dict[str, Path], list[str]]:
    """Walk Requires-Dist from the wanted packages; return {name: wheel} to bring, and notes."""
    bring: dict[str, Path] = {}
    specs: dict[str, SpecifierSet] = {}
    notes: list[str] = []
    pinned = pins()
    queue = [Requirement(r) for r in wanted()]
    while queue:
        req = queue.pop(0)
        name = canonicalize_name(req.name)
        specs[name] = specs.get(name, SpecifierSet()) & req.specifier
        if name in host and name not in bring:
            have = host[name]
            if have is None or specs[name].contains(have, prereleases=True):
                continue
            notes.append(f"host has {name} {have}, but {req} is needed: bringing it (it shadows the host's on PYTHONPATH)")
        if name in bring:
            v = parse_wheel_filename(bring[name].name)[1]
            if specs[name].contains(v, prereleases=True):
                continue
        preferred = specs[name] & pinned.get(name, SpecifierSet())
        wheel = download(f"{req.name}{preferred}", cache)
        bring[name] = wheel
        queue.extend(requires(wheel))
    return bring, notes


def slim_bitsandbytes(wheel: Path, dest: Path, cuda_major: str) -> Path:
    """The wheel without the native libraries of other CUDA majors and ROCm; RECORD rewritten."""
    keep = re.compile(rf"libbitsandbytes_(cpu|cuda{cuda_major}\d+)\.so$")
    out = dest / wheel.name
    with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        record_name = next(n for n in src.namelist() if n.endswith(".dist-info/RECORD"))
        kept = []
        for info in src.infolist():
            if info.filename == record_name:
                continue
            if re.search(r"libbitsandbytes_\w+\.so$", info.filename) and not keep.search(info.filename):
                continue
            data = src.read(info.filename)
            dst.writestr(info, data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            kept.append(f"{info.filename},sha256={digest},{len(data)}")
        dst.writestr(record_name, "\n".join([*kept, f"{record_name},,"]) + "\n")
    libs = [n for n in zipfile.ZipFile(out).namelist() if n.endswith(".so") and "libbitsandbytes_cuda" in n]
    if not libs:
        sys.exit(f"prepare: {wheel.name} has no libbitsandbytes_cuda{cuda_major}x library; pass --cuda with the host's CUDA major")
    return out


def tree_bytes() -> int:
    """What travels besides the bundle: tracked files and untracked ones git does not ignore."""
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                         capture_output=True, check=True).stdout
    return sum((ROOT / f).stat().st_size for f in out.decode().split("\0") if f and (ROOT / f).is_file())


def write_config(dest: Path) -> None:
    cmd = ["node", str(ROOT / "bin" / "posttrain.js"), "config", "--preset", "gpu"]
    for s in CHECK_SETTINGS:
        cmd += ["--set", s]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        sys.exit(f"prepare: `posttrain config` refused the check's settings:\n{done.stderr.strip()}")
    json.loads(done.stdout)
    dest.write_text(done.stdout)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", type=Path, default=HERE / "bundle")
    ap.add_argument("--host", type=Path, default=HERE / "host-packages.txt")
    ap.add_argument("--cuda", default="13", help="the host torch's CUDA major (torch.version.cuda); bitsandbytes keeps only its libraries")
    ap.add_argument("--budget-mib", type=float, default=64.0)
    ap.add_argument("--config-only", action="store_true", help="write config.json only (the CPU twin's test)")
    a = ap.parse_args()
    a.bundle.mkdir(parents=True, exist_ok=True)
    write_config(a.bundle / "config.json")
    print(f"prepare: {a.bundle / 'config.json'} (posttrain config --preset gpu + {len(CHECK_SETTINGS)} check settings)")
    if a.config_only:
        return
    cache = a.bundle / ".download"
    cache.mkdir(exist_ok=True)
    bring, notes = resolve(read_host(a.host), cache)
    wheels = a.bundle / "wheels"
    shutil.rmtree(wheels, ignore_errors=True)
    wheels.mkdir()
    for name, w in sorted(bring.items()):
        if name == "bitsandbytes":
            slim = slim_bitsandbytes(w, wheels, a.cuda)
            print(f"prepare: bitsandbytes {w.stat().st_size / 2**20:.1f} MiB → {slim.stat().st_size / 2**20:.1f} MiB (CUDA {a.cuda}.x libraries only)")
        else:
            shutil.copy2(w, wheels / w.name)
    for n in notes:
        print(f"prepare: note: {n}")
    sizes = {w.name: w.stat().st_size for w in sorted(wheels.glob("*.whl"))}
    for n, b in sizes.items():
        print(f"  {b / 2**20:7.2f} MiB  {n}")
    total_wheels = sum(sizes.values())
    tree = tree_bytes()
    total = total_wheels + tree + (a.bundle / "config.json").stat().st_size
    print(f"prepare: {len(sizes)} wheels {total_wheels / 2**20:.1f} MiB + working tree {tree / 2**20:.1f} MiB = "
          f"{total / 2**20:.1f} MiB of the {a.budget_mib:.0f} MiB budget")
    (a.bundle / "manifest.json").write_text(json.dumps({"wheels": sizes, "tree_bytes": tree, "total_bytes": total,
                                                        "host": str(a.host), "cuda": a.cuda, "notes": notes}, indent=1))
    if total > a.budget_mib * 2**20:
        sys.exit(f"prepare: over budget by {(total - a.budget_mib * 2**20) / 2**20:.1f} MiB: list more of the host's packages "
                 "in --host (pip list --format=freeze there), or trim the working tree")


if __name__ == "__main__":
    main()
