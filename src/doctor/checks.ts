// The checks of `posttrain doctor`, as pure functions of what was found (the probe's answer, file
// stats, free bytes), so each verdict and its fix is unit-testable without a broken machine.
import { existsSync, readFileSync, readdirSync, realpathSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { DEFAULT_VENV_PYTHON, PACKAGE_ROOT } from '../paths.js';
import { describeTransport, type TransportPlan } from '../bridge/endpoint.js';
import type { PackageInfo, ProbeFailure, ProbeResult } from './probe.js';

export type CheckStatus = 'ok' | 'warn' | 'fail';

export interface Check {
  name: string;
  status: CheckStatus;
  detail: string;
  /** A command (or one instruction) that fixes it; only on warn/fail. */
  fix?: string;
}

const GiB = 2 ** 30;
export const gib = (bytes: number) => `${(bytes / GiB).toFixed(1)} GiB`;

/** Fix commands, absolute so they work from any directory. */
export const FIX = {
  setup: `make -C ${PACKAGE_ROOT} setup`,
  rebuildVenv: `rm -rf ${join(PACKAGE_ROOT, '.venv')} && make -C ${PACKAGE_ROOT} setup`,
  build: `npm --prefix ${PACKAGE_ROOT} run build`,
  pip: (python: string, what: string) => `${python} -m pip install -c ${join(PACKAGE_ROOT, 'scripts', 'constraints.txt')} ${what}`,
};

const isDefaultVenv = (python: string) => python === DEFAULT_VENV_PYTHON;

// ---------------------------------------------------------------------------------------------
// node and the build

/** `>=20.19` style ranges (what package.json engines uses); anything else is not judged. */
export function checkNode(version: string, engines: string | undefined): Check {
  const want = /^>=\s*(\d+)(?:\.(\d+))?(?:\.(\d+))?$/.exec(engines?.trim() ?? '');
  if (!want) return { name: 'node', status: 'ok', detail: `${version}` };
  const have = version.replace(/^v/, '').split('.').map(Number);
  const need = [Number(want[1]), Number(want[2] ?? 0), Number(want[3] ?? 0)];
  let cmp = 0;
  for (let i = 0; i < 3 && cmp === 0; i++) cmp = Math.sign((have[i] ?? 0) - (need[i] ?? 0));
  return cmp >= 0
    ? { name: 'node', status: 'ok', detail: `${version} (needs ${engines})` }
    : { name: 'node', status: 'fail', detail: `${version} is older than posttrain needs (${engines})`, fix: `Install Node.js ${engines} (https://nodejs.org), then ${FIX.setup}.` };
}

function newestMtime(dir: string): number {
  let newest = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    newest = Math.max(newest, e.isDirectory() ? newestMtime(p) : statSync(p).mtimeMs);
  }
  return newest;
}

/** dist/ present, and not older than src/ (a checkout has src/; an npm install has only dist/). */
export function checkBuild(root = PACKAGE_ROOT): Check {
  const main = join(root, 'dist', 'cli', 'main.js');
  if (!existsSync(main)) return { name: 'build', status: 'fail', detail: `${main} is missing (the CLI is not built)`, fix: FIX.build };
  const src = join(root, 'src');
  // Against the newest output, not main.js: an incremental tsc rewrites only what changed.
  if (existsSync(src) && newestMtime(src) > newestMtime(join(root, 'dist'))) {
    return { name: 'build', status: 'warn', detail: 'dist/ is older than src/ (the CLI runs stale code)', fix: FIX.build };
  }
  return { name: 'build', status: 'ok', detail: join(root, 'dist') };
}

// ---------------------------------------------------------------------------------------------
// Python

export function checkPythonFailure(python: string, failure: ProbeFailure): Check {
  if (failure.kind === 'missing') {
    return {
      name: 'python',
      status: 'fail',
      detail: isDefaultVenv(python) ? `${failure.message}: the project virtualenv is not set up` : failure.message,
      fix: isDefaultVenv(python) ? FIX.setup : 'Point --python (runtime.python, POSTTRAIN_PYTHON) at an existing interpreter, or unset it to use the project virtualenv.',
    };
  }
  return {
    name: 'python',
    status: 'fail',
    detail: failure.message,
    fix: isDefaultVenv(python) ? FIX.rebuildVenv : `Check that ${python} runs (\`${python} -c 'print(1)'\`).`,
  };
}

export function checkPython(python: string, probe: ProbeResult): Check {
  const [major = 0, minor = 0] = probe.python.version.split('.').map(Number);
  if (major < 3 || (major === 3 && minor < 10)) {
    return {
      name: 'python',
      status: 'fail',
      detail: `${python} is Python ${probe.python.version}; the sidecar needs 3.10 or newer`,
      fix: isDefaultVenv(python)
        ? `rm -rf ${join(PACKAGE_ROOT, '.venv')} && POSTTRAIN_BOOTSTRAP_PYTHON=python3.11 make -C ${PACKAGE_ROOT} setup`
        : 'Point --python (runtime.python, POSTTRAIN_PYTHON) at Python 3.10 or newer.',
    };
  }
  return { name: 'python', status: 'ok', detail: `${python} (Python ${probe.python.version})` };
}

export function checkVirtualenv(python: string, probe: ProbeResult, venvDir = join(PACKAGE_ROOT, '.venv')): Check {
  const project = existsSync(venvDir) ? realpathSync(venvDir) : venvDir;
  if (probe.python.prefix === project) return { name: 'virtualenv', status: 'ok', detail: `the project virtualenv (${venvDir})` };
  if (probe.python.prefix !== probe.python.base_prefix) {
    return { name: 'virtualenv', status: 'ok', detail: `a virtualenv of your own (${probe.python.prefix}), not the project's` };
  }
  return {
    name: 'virtualenv',
    status: 'warn',
    detail: `${python} is not in a virtualenv: the sidecar's packages live in the system Python (${probe.python.prefix})`,
    fix: `${FIX.setup}, then drop --python / runtime.python / POSTTRAIN_PYTHON to use the project virtualenv.`,
  };
}

// ---------------------------------------------------------------------------------------------
// packages

/** Known-good versions as `{pip name: "major.minor"}`: scripts/constraints.txt, plus torch from
 * setup.sh (torch stays out of the constraints so a user's own CUDA build is not replaced). */
export function knownGood(root = PACKAGE_ROOT): Record<string, string> {
  const out: Record<string, string> = {};
  const read = (p: string) => (existsSync(p) ? readFileSync(p, 'utf8') : '');
  for (const line of read(join(root, 'scripts', 'constraints.txt')).split('\n')) {
    // `name==5.18.*` → "5.18"; `name==27.*` → "27" (the known-good range is the whole major).
    const m = /^\s*([A-Za-z0-9_.-]+)\s*==\s*(\d+)(?:\.(\d+))?/.exec(line);
    if (m) out[m[1]!.toLowerCase()] = m[3] === undefined ? m[2]! : `${m[2]}.${m[3]}`;
  }
  const torch = /torch==(\d+)\.(\d+)/.exec(read(join(root, 'scripts', 'setup.sh')));
  if (torch) out.torch = `${torch[1]}.${torch[2]}`;
  return out;
}

/** Whether `version` falls in a known-good "major" or "major.minor". */
const sameRelease = (version: string, expected: string) => {
  const parts = expected.split('.').length;
  return version.split(/[.+]/).slice(0, parts).join('.') === expected;
};

export function checkPackage(name: string, info: PackageInfo | undefined, python: string, expected: string | undefined): Check {
  // torch is the one package whose build matters (CPU or CUDA): setup.sh picks it, plain pip may not.
  const install = (flags = '') =>
    name !== 'torch'
      ? FIX.pip(python, `${flags}${name}`)
      : isDefaultVenv(python)
        ? FIX.rebuildVenv
        : `${python} -m pip install ${flags}torch${expected ? `==${expected}.*` : ''} --index-url https://download.pytorch.org/whl/cpu  (the CPU build; for CUDA see https://pytorch.org)`;
  if (!info?.installed) return { name, status: 'fail', detail: 'not installed', fix: install() };
  if (info.error) return { name, status: 'fail', detail: `${info.version ?? 'installed'} but does not import: ${info.error}`, fix: install('--force-reinstall ') };
  const version = info.version ?? '?';
  if (expected && !sameRelease(version, expected)) {
    return { name, status: 'warn', detail: `${version}; posttrain is tested with ${expected}.x`, fix: install() };
  }
  return { name, status: 'ok', detail: version };
}

export function checkTorch(python: string, probe: ProbeResult, expected: string | undefined): Check {
  const base = checkPackage('torch', probe.packages.torch, python, expected);
  const t = probe.torch;
  if (base.status === 'fail' || !t) return base;
  const build = t.cuda_build ? `CUDA ${t.cuda_build} build` : 'CPU build';
  const cuda = t.cuda_available ? `CUDA available (${t.devices.length} device${t.devices.length === 1 ? '' : 's'})` : 'no CUDA device';
  return { ...base, detail: `${base.detail}, ${build}, ${cuda}` };
}

export function checkSidecar(python: string, probe: ProbeResult, expectedDir = join(PACKAGE_ROOT, 'sidecar', 'posttrain_sidecar')): Check {
  const fix = FIX.pip(python, `-e ${PACKAGE_ROOT}`);
  if (!probe.sidecar.importable) {
    return { name: 'posttrain_sidecar', status: 'fail', detail: `not importable by ${python}${probe.sidecar.error ? `: ${probe.sidecar.error}` : ''}`, fix };
  }
  const expected = existsSync(expectedDir) ? realpathSync(expectedDir) : expectedDir;
  if (probe.sidecar.location !== expected) {
    return { name: 'posttrain_sidecar', status: 'warn', detail: `imported from ${probe.sidecar.location}, not this install (${expected})`, fix };
  }
  return { name: 'posttrain_sidecar', status: 'ok', detail: probe.sidecar.location };
}

// ---------------------------------------------------------------------------------------------
// hardware

/** Under this much free GPU memory the GPU is effectively taken (another process holds it). */
export const GPU_FREE_WARN_BYTES = 2 * GiB;

export function checkGpu(probe: ProbeResult, nvidiaSmiGpus: number, python: string): Check {
  const t = probe.torch;
  if (t?.cuda_available) {
    const busy = t.devices.filter((d) => d.free_bytes < GPU_FREE_WARN_BYTES);
    const detail = t.devices.map((d) => `${d.index}: ${d.name}, ${gib(d.free_bytes)} free of ${gib(d.total_bytes)}`).join('; ');
    return busy.length
      ? { name: 'gpu', status: 'warn', detail: `${detail} — little memory free`, fix: 'nvidia-smi  (see which processes hold GPU memory; stop them or pick another GPU with CUDA_VISIBLE_DEVICES)' }
      : { name: 'gpu', status: 'ok', detail };
  }
  if (t?.error) return { name: 'gpu', status: 'warn', detail: `torch could not query CUDA: ${t.error}`, fix: 'nvidia-smi  (is the NVIDIA driver loaded?)' };
  if (nvidiaSmiGpus > 0) {
    return t && !t.cuda_build
      ? { name: 'gpu', status: 'warn', detail: `nvidia-smi sees ${nvidiaSmiGpus} GPU(s) but torch is a CPU build: training runs on CPU`, fix: isDefaultVenv(python) ? FIX.rebuildVenv : `${python} -m pip install torch  (a CUDA build: see https://pytorch.org)` }
      : { name: 'gpu', status: 'warn', detail: `nvidia-smi sees ${nvidiaSmiGpus} GPU(s) but torch (CUDA ${t?.cuda_build ?? '?'}) cannot use them`, fix: 'Update the NVIDIA driver to one that supports this CUDA version, or install a torch built for the installed driver.' };
  }
  return { name: 'gpu', status: 'ok', detail: 'none: training runs on CPU' };
}

export function checkBitsandbytes(probe: ProbeResult, python: string): Check {
  const info = probe.optional.bitsandbytes;
  const cuda = Boolean(probe.torch?.cuda_available);
  if (!cuda) return { name: 'bitsandbytes', status: 'ok', detail: info?.installed ? `${info.version} (unused without CUDA)` : 'not installed (only for 4-bit QLoRA on CUDA)' };
  if (!info?.installed) return { name: 'bitsandbytes', status: 'warn', detail: 'not installed: 4-bit QLoRA falls back to plain LoRA', fix: FIX.pip(python, 'bitsandbytes') };
  if (info.error) return { name: 'bitsandbytes', status: 'warn', detail: `${info.version} does not load: ${info.error}`, fix: FIX.pip(python, '--force-reinstall bitsandbytes') };
  return { name: 'bitsandbytes', status: 'ok', detail: `${info.version}` };
}

export function checkCpu(probe: ProbeResult): Check {
  const usable = probe.cpu.usable ?? probe.cpu.count;
  const threads = probe.torch?.threads;
  return { name: 'cpu', status: 'ok', detail: `${usable ?? '?'} usable core(s)${threads ? `, torch uses ${threads} thread(s) (runtime.threads sets it)` : ''}` };
}

/** report_to integrations: never a problem here (doctor does not know a run's config); the
 * sidecar's preflight makes a missing one an error for a run that asks for it. */
export function checkIntegration(name: string, info: PackageInfo | undefined, python: string): Check {
  return info?.installed
    ? { name, status: 'ok', detail: `${info.version ?? 'installed'} (for runtime.report_to)` }
    : { name, status: 'ok', detail: `not installed (optional, for runtime.report_to: ${python} -m pip install ${name})` };
}

// ---------------------------------------------------------------------------------------------
// disk and data

export const DISK = { warnBytes: 5 * GiB, failBytes: 1 * GiB };

export function checkDisk(path: string, freeBytes: number, limits = DISK): Check {
  const detail = `${gib(freeBytes)} free at ${path}`;
  const fix = `Free space there, or point runtime.runs_dir (and --runs-dir) at a bigger disk.`;
  if (freeBytes < limits.failBytes) return { name: 'disk', status: 'fail', detail: `${detail}: checkpoints and adapters will not fit (needs ≥ ${gib(limits.failBytes)})`, fix };
  if (freeBytes < limits.warnBytes) return { name: 'disk', status: 'warn', detail: `${detail}: tight for checkpoints of a real model (≥ ${gib(limits.warnBytes)} advised)`, fix };
  return { name: 'disk', status: 'ok', detail };
}

/** What doctor found about the runs folder: whether it can be written, and its run folders' modes. */
export interface RunsFolderFacts {
  exists: boolean;
  /** The errno code of a failed write test (EROFS, EACCES…), else undefined. */
  notWritable?: string;
  /** Permission bits of each run folder in it. */
  runModes: number[];
}

/** Runs are private (0700): a run folder others can read exposes its copy of the training data. */
export function checkRunsFolder(path: string, f: RunsFolderFacts): Check {
  const fix = `set runtime.runs_dir (or --runs-dir) to a folder you can write to`;
  if (f.notWritable) return { name: 'runs_folder', status: 'fail', detail: `${path} is not writable (${f.notWritable})`, fix };
  const open = f.runModes.filter((m) => (m & 0o077) !== 0);
  if (open.length > 0) {
    return {
      name: 'runs_folder',
      status: 'warn',
      detail: `${open.length} of ${f.runModes.length} run folder(s) in ${path} can be read by other users (made before runs were private, or chmod-ed): their data/ holds copies of training files`,
      fix: `chmod -R go-rwx ${path}/*`,
    };
  }
  const what = f.exists ? `${f.runModes.length} run folder(s), all private (0700)` : 'will be created; run folders are private (0700)';
  return { name: 'runs_folder', status: 'ok', detail: `${path}: ${what}` };
}

/** The socket the controller and sidecar would talk over now (src/bridge/endpoint.ts decides). */
export function checkTransport(plan: TransportPlan): Check {
  if (plan.kind === 'ipc') return { name: 'transport', status: 'ok', detail: describeTransport(plan) };
  return {
    name: 'transport',
    status: 'warn',
    detail: `${describeTransport(plan)}; other local users can connect to the port`,
    fix: 'export TMPDIR=/tmp (any short folder you can write to), so the sidecar socket is a private Unix socket',
  };
}

export function checkSmokeModel(root = PACKAGE_ROOT): Check {
  const dir = join(root, 'data', 'smoke-model');
  return existsSync(join(dir, 'model.safetensors'))
    ? { name: 'smoke_model', status: 'ok', detail: dir }
    : { name: 'smoke_model', status: 'warn', detail: `${dir} is missing: the smoke preset cannot run`, fix: FIX.setup };
}
