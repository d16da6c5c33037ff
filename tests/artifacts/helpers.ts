// Shared test helpers: real temp folders, a config, and real child processes that run the
// artifact code itself (transpiled with the TypeScript compiler, no mocks).
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { onTestFinished } from 'vitest';
import { type Config, ConfigSchema } from '../../src/config/schema.js';
import type { RunInit } from '../../src/artifacts/index.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/** A fresh temp folder, removed when the current test ends. */
export function tempDir(prefix = 'posttrain-artifacts-'): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  onTestFinished(() => {
    fs.chmodSync(dir, 0o700); // a test may have made it read-only
    fs.rmSync(dir, { recursive: true, force: true });
  });
  return dir;
}

export function config(): Config {
  return ConfigSchema.parse({ model: { id: 'tiny-model' } });
}

export function runInit(extra: Partial<RunInit> = {}): RunInit {
  return {
    preset: 'smoke',
    config_file: null,
    overrides: [],
    stages_selected: ['sft', 'dpo'],
    config: config(),
    versions: { posttrain: '0.1.0' },
    data: {},
    ...extra,
  };
}

// Modules a child process needs: only these import nothing outside the repo's own files.
const CHILD_SOURCES = ['src/errors.ts', 'src/artifacts/errors.ts', 'src/artifacts/atomic.ts', 'src/artifacts/lock.ts'];

/**
 * Write an ESM script into a fresh temp folder (removed when the test ends) that also holds the
 * artifact modules as plain JavaScript, so the script can `import './src/artifacts/lock.js'`.
 * Returns the script's path. The folder is world-readable, for the unprivileged child in atomic.test.ts.
 */
export function childScript(name: string, code: string): string {
  const root = tempDir('posttrain-child-');
  fs.chmodSync(root, 0o755);
  fs.writeFileSync(path.join(root, 'package.json'), '{"type":"module"}\n');
  for (const rel of CHILD_SOURCES) {
    const source = fs.readFileSync(path.join(ROOT, rel), 'utf8');
    const out = ts.transpileModule(source, { compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 } });
    const dest = path.join(root, rel.replace(/\.ts$/, '.js'));
    fs.mkdirSync(path.dirname(dest), { recursive: true });
    fs.writeFileSync(dest, out.outputText);
  }
  const file = path.join(root, name);
  fs.writeFileSync(file, code);
  return file;
}

/** Run a command to completion. */
export function runSync(cmd: string, args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 20_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Resolve once `child` printed a line equal to `line` on stdout. */
export function waitForLine(child: ChildProcess, line: string): Promise<void> {
  return new Promise((resolve, reject) => {
    let buf = '';
    let err = '';
    child.stderr?.on('data', (d: Buffer) => (err += d.toString()));
    child.stdout?.on('data', (d: Buffer) => {
      buf += d.toString();
      if (buf.split('\n').includes(line)) resolve();
    });
    child.once('exit', (code) => reject(new Error(`child exited (${code}) before printing "${line}": ${err}`)));
  });
}

/** Kill `child` and wait until it is reaped (so its pid is really gone, not a zombie). */
export async function killAndReap(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGKILL');
  await exited;
}

/** A process that idles for `seconds`; killed when the test ends. */
export function idleProcess(seconds = 10): ChildProcess {
  const child = spawn(process.execPath, ['-e', `setTimeout(() => {}, ${seconds * 1000})`], { stdio: 'ignore' });
  onTestFinished(() => killAndReap(child));
  return child;
}

/** A pid that belonged to a process which has exited (and been reaped). */
export function deadPid(): number {
  const r = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
  return Number(r.stdout);
}
