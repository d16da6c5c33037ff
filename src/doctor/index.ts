// `posttrain doctor`: is this machine ready to train? Node, the build, the sidecar's Python and
// its packages (through one probe process), GPU, disk, the smoke model; each problem with the
// command that fixes it.
import { accessSync, constants, existsSync, mkdtempSync, readdirSync, readFileSync, rmdirSync, statfsSync, statSync } from 'node:fs';
import { planTransport } from '../bridge/endpoint.js';
import { dirname, join, resolve } from 'node:path';
import { execa } from 'execa';
import { PACKAGE_ROOT } from '../paths.js';
import { sidecarPython } from '../pipeline/sidecar-spec.js';
import {
  type Check,
  checkBitsandbytes,
  checkBuild,
  checkCpu,
  checkDisk,
  checkGpu,
  checkIntegration,
  checkNode,
  checkPackage,
  checkPython,
  checkPythonFailure,
  checkRunsFolder,
  checkSidecar,
  checkSmokeModel,
  checkTorch,
  checkTransport,
  checkVirtualenv,
  knownGood,
  type RunsFolderFacts,
} from './checks.js';
import { isProbeFailure, runProbe } from './probe.js';

export type { Check, CheckStatus } from './checks.js';

export interface DoctorOptions {
  /** --python; else runtime.python's fallbacks, exactly as a run's sidecar picks its interpreter. */
  python?: string;
  runsDir: string;
  cwd: string;
  env: NodeJS.ProcessEnv;
  /** The first torch import takes ~5 s on a small machine, much longer on a cold disk. */
  probeTimeoutMs?: number;
}

export interface DoctorReport {
  ok: boolean;
  python: string;
  checks: Check[];
}

const CORE_PACKAGES = ['transformers', 'peft', 'trl', 'accelerate', 'pyzmq', 'msgpack'] as const;
const INTEGRATIONS = ['tensorboard', 'wandb', 'trackio'] as const;

/** Free bytes for unprivileged users on the filesystem that holds `path` (or would: the nearest
 * existing ancestor, since runs/ may not exist yet). */
export function freeBytesAt(path: string): { at: string; free: number } {
  let at = resolve(path);
  while (!existsSync(at) && dirname(at) !== at) at = dirname(at);
  const s = statfsSync(at);
  return { at, free: Number(s.bavail) * Number(s.bsize) };
}

/** Can a folder be made in the runs folder (a real write: access() misses a read-only mount for
 * some users), and the mode of each run folder in it. `at`: the runs folder's nearest existing
 * ancestor (freeBytesAt's), where a missing one would be made. */
export function runsFolderFacts(runsDir: string, at: string): RunsFolderFacts {
  if (!existsSync(runsDir)) {
    try {
      accessSync(at, constants.W_OK);
    } catch (e) {
      return { exists: false, notWritable: (e as NodeJS.ErrnoException).code ?? 'error', runModes: [] };
    }
    return { exists: false, runModes: [] };
  }
  const runModes: number[] = [];
  for (const e of readdirSync(runsDir, { withFileTypes: true })) {
    if (e.isDirectory() && !e.name.startsWith('.') && existsSync(join(runsDir, e.name, 'run.json'))) runModes.push(statSync(join(runsDir, e.name)).mode & 0o777);
  }
  try {
    rmdirSync(mkdtempSync(join(runsDir, '.doctor-')));
  } catch (e) {
    return { exists: true, notWritable: (e as NodeJS.ErrnoException).code ?? 'error', runModes };
  }
  return { exists: true, runModes };
}

async function nvidiaSmiGpus(): Promise<number> {
  const r = await execa('nvidia-smi', ['-L'], { reject: false, timeout: 10_000, stdin: 'ignore' });
  return r.exitCode === 0 ? String(r.stdout).split('\n').filter((l) => l.startsWith('GPU ')).length : 0;
}

export async function runDoctor(opts: DoctorOptions): Promise<DoctorReport> {
  const python = opts.python ?? sidecarPython(null, opts.env);
  const engines = (JSON.parse(readFileSync(join(PACKAGE_ROOT, 'package.json'), 'utf8')) as { engines?: { node?: string } }).engines?.node;
  const checks: Check[] = [checkNode(process.version, engines), checkBuild()];

  // Started together: the probe (torch import) dominates, nvidia-smi runs beside it.
  const [probe, gpus] = await Promise.all([
    runProbe(python, { cwd: opts.cwd, env: opts.env, timeoutMs: opts.probeTimeoutMs ?? 90_000 }),
    nvidiaSmiGpus(),
  ]);
  if (isProbeFailure(probe)) {
    // Everything below needs a working interpreter; its one fix comes first.
    checks.push(checkPythonFailure(python, probe));
  } else {
    const good = knownGood();
    checks.push(
      checkPython(python, probe),
      checkVirtualenv(python, probe),
      checkTorch(python, probe, good.torch),
      ...CORE_PACKAGES.map((n) => checkPackage(n, probe.packages[n], python, good[n])),
      checkSidecar(python, probe),
      checkGpu(probe, gpus, python),
      checkBitsandbytes(probe, python),
      checkCpu(probe),
      ...INTEGRATIONS.map((n) => checkIntegration(n, probe.optional[n], python)),
    );
  }
  const runsDir = resolve(opts.cwd, opts.runsDir);
  const { at, free } = freeBytesAt(runsDir);
  checks.push(checkDisk(at, free), checkRunsFolder(runsDir, runsFolderFacts(runsDir, at)), checkTransport(planTransport(opts.env)), checkSmokeModel());
  return { ok: checks.every((c) => c.status !== 'fail'), python, checks };
}

const MARK = { ok: '✓', warn: '!', fail: '✗' } as const;

export function formatDoctor(report: DoctorReport): string {
  const width = Math.max(...report.checks.map((c) => c.name.length));
  const lines = [`posttrain doctor  (install: ${PACKAGE_ROOT})`];
  for (const c of report.checks) {
    lines.push(`  ${MARK[c.status]} ${c.name.padEnd(width)}  ${c.detail}`);
    if (c.fix && c.status !== 'ok') lines.push(`    ${' '.repeat(width)}  fix: ${c.fix}`);
  }
  const fails = report.checks.filter((c) => c.status === 'fail').length;
  const warns = report.checks.filter((c) => c.status === 'warn').length;
  const plural = (n: number, w: string) => `${n} ${w}${n === 1 ? '' : 's'}`;
  lines.push(fails + warns === 0 ? 'All checks passed.' : `${plural(fails, 'problem')}, ${plural(warns, 'warning')}.`);
  return `${lines.join('\n')}\n`;
}
