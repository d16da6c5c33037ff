// Drive the CLI in-process (runCli with captured output) or as the real `posttrain` bin in a
// child process (for signals, exit-on-its-own and multi-process tests).
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Sidecar, type SidecarSpec } from '../../src/bridge/sidecar.js';
import { runCli } from '../../src/cli/main.js';
import { DEFAULT_VENV_PYTHON, PACKAGE_ROOT } from '../../src/paths.js';

export const BIN = join(PACKAGE_ROOT, 'bin', 'posttrain.js');

export const tmp = (prefix = 'posttrain-test-') => mkdtempSync(join(tmpdir(), prefix));

export interface CliResult {
  code: number;
  out: string;
  err: string;
}

/** Env that makes a run use the fake sidecar with the given script. */
export function fakeEnv(script: unknown = {}): NodeJS.ProcessEnv {
  return { ...process.env, POSTTRAIN_SIDECAR_MODULE: 'posttrain_sidecar.fake', POSTTRAIN_FAKE_SCRIPT: JSON.stringify(script) };
}

export async function cli(args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): Promise<CliResult> {
  let out = '';
  let err = '';
  const code = await runCli(args, {
    out: (t) => void (out += t),
    err: (t) => void (err += t),
    isTTY: false,
    errIsTTY: false,
    cwd: opts.cwd ?? process.cwd(),
    env: opts.env ?? process.env,
  });
  return { code, out, err };
}

export interface Child {
  proc: ChildProcess;
  out: () => string;
  err: () => string;
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

export function spawnCli(args: string[], opts: { cwd: string; env?: NodeJS.ProcessEnv }): Child {
  const proc = spawn(process.execPath, [BIN, ...args], { cwd: opts.cwd, env: opts.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  proc.stdout!.on('data', (d) => (out += d));
  proc.stderr!.on('data', (d) => (err += d));
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => proc.on('exit', (code, signal) => resolve({ code, signal })));
  return { proc, out: () => out, err: () => err, exit };
}

export async function waitFor<T>(fn: () => T | undefined | false, timeoutMs = 15_000, what = 'condition'): Promise<T> {
  const start = Date.now();
  for (;;) {
    const v = fn();
    if (v) return v;
    if (Date.now() - start > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export const readJson = <T = any>(p: string): T => JSON.parse(readFileSync(p, 'utf8')) as T;

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** A started controller bridge to the fake sidecar (a real process), running `script`. */
export function startFakeSidecar(script: unknown, spec: Partial<SidecarSpec> = {}): Promise<Sidecar> {
  return Sidecar.start({
    python: DEFAULT_VENV_PYTHON,
    module: 'posttrain_sidecar.fake',
    cwd: tmp(),
    env: { POSTTRAIN_FAKE_SCRIPT: JSON.stringify(script) },
    startTimeoutS: 20,
    heartbeatIntervalS: 0.5,
    heartbeatTimeoutS: 10,
    ...spec,
  });
}
