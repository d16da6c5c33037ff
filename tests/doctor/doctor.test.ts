// `posttrain doctor` against real interpreters: the project venv, a missing one, a bare venv
// without torch, and a copy of the install that has no .venv at all.
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, cpSync, mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { type Check, checkDisk, checkNode, checkPackage, checkPythonFailure, checkRunsFolder, checkTransport, DISK, FIX, knownGood } from '../../src/doctor/checks.js';
import { freeBytesAt } from '../../src/doctor/index.js';
import { DEFAULT_VENV_PYTHON, PACKAGE_ROOT } from '../../src/paths.js';
import { cli, tmp } from '../helpers/cli.js';

const GiB = 2 ** 30;
const byName = (checks: Check[]) => Object.fromEntries(checks.map((c) => [c.name, c]));
const envWithout = (...keys: string[]) => Object.fromEntries(Object.entries(process.env).filter(([k]) => !keys.includes(k)));
const STACK = /\n\s+at .+:\d+:\d+/;

describe('doctor checks (unit)', () => {
  it('disk: fail under 1 GiB, warn under 5 GiB, ok above, each with a fix when not ok', () => {
    expect(checkDisk('/r', 0.5 * GiB).status).toBe('fail');
    expect(checkDisk('/r', DISK.failBytes).status).toBe('warn');
    expect(checkDisk('/r', 4.9 * GiB).status).toBe('warn');
    expect(checkDisk('/r', DISK.warnBytes).status).toBe('ok');
    expect(checkDisk('/r', 0.5 * GiB).fix).toMatch(/runs_dir/);
    expect(checkDisk('/r', 10 * GiB).fix).toBeUndefined();
    expect(checkDisk('/r', 3 * GiB, { warnBytes: 2 * GiB, failBytes: 0 }).status).toBe('ok');
  });

  it('disk: a runs folder that does not exist yet is measured at its nearest existing ancestor', () => {
    const dir = tmp();
    const { at, free } = freeBytesAt(join(dir, 'not', 'yet', 'runs'));
    expect(at).toBe(dir);
    expect(free).toBeGreaterThan(0);
  });

  it('node: compared with package.json engines', () => {
    expect(checkNode('v20.19.0', '>=20.19').status).toBe('ok');
    expect(checkNode('v22.1.0', '>=20.19').status).toBe('ok');
    const old = checkNode('v20.11.1', '>=20.19');
    expect(old.status).toBe('fail');
    expect(old.fix).toMatch(/Node\.js >=20\.19/);
  });

  it('known-good versions come from constraints.txt, torch from setup.sh', () => {
    const good = knownGood();
    expect(good).toMatchObject({ torch: '2.13', transformers: '5.18', peft: '0.21', trl: '1.13', pyzmq: '27', tensorboard: '2.21' });
  });

  it('a different minor version warns with the constrained install; a missing default venv says make setup', () => {
    const c = checkPackage('transformers', { installed: true, version: '5.17.2', error: null }, '/p/python', '5.18');
    expect(c.status).toBe('warn');
    expect(c.fix).toBe(FIX.pip('/p/python', 'transformers'));
    expect(checkPackage('transformers', { installed: true, version: '5.18.3', error: null }, '/p/python', '5.18').status).toBe('ok');
    expect(checkPackage('transformers', { installed: true, version: '5.1.0', error: null }, '/p/python', '5.18').status).toBe('warn');
    expect(checkPackage('pyzmq', { installed: true, version: '27.9.1', error: null }, '/p/python', '27').status).toBe('ok');
    expect(checkPackage('pyzmq', { installed: true, version: '26.4.0', error: null }, '/p/python', '27').status).toBe('warn');
    const broken = checkPackage('peft', { installed: true, version: '0.21.2', error: 'ImportError: boom' }, '/p/python', '0.21');
    expect(broken.status).toBe('fail');
    expect(broken.fix).toContain('--force-reinstall peft');
    const missing = checkPythonFailure(DEFAULT_VENV_PYTHON, { kind: 'missing', message: `${DEFAULT_VENV_PYTHON} does not exist` });
    expect(missing).toMatchObject({ status: 'fail', fix: FIX.setup });
  });
});

describe('doctor: run-folder permissions and the socket transport', () => {
  it('reports private run folders, warns about readable ones with the chmod fix, and names the transport', async () => {
    const cwd = tmp();
    const r0 = await cli(['doctor', '--json', '--python', '/nonexistent/bin/python'], { cwd });
    const fresh = byName(JSON.parse(r0.out).checks);
    expect(fresh.runs_folder).toMatchObject({ status: 'ok', detail: expect.stringMatching(/will be created; run folders are private \(0700\)/) });
    expect(fresh.transport).toMatchObject({ status: 'ok', detail: expect.stringMatching(/^ipc socket in a private 0700 folder under \//) });
    for (const [id, mode] of [['old', 0o755], ['new', 0o700]] as const) {
      mkdirSync(join(cwd, 'runs', id), { recursive: true });
      writeFileSync(join(cwd, 'runs', id, 'run.json'), '{}');
      chmodSync(join(cwd, 'runs', id), mode);
    }
    const r = await cli(['doctor', '--json', '--python', '/nonexistent/bin/python'], { cwd });
    const runs = byName(JSON.parse(r.out).checks).runs_folder!;
    expect(runs).toMatchObject({ status: 'warn', fix: `chmod -R go-rwx ${join(cwd, 'runs')}/*` });
    expect(runs.detail).toMatch(/1 of 2 run folder\(s\) .* can be read by other users/);
    // TMPDIR too long for a socket: the next short base is used and named.
    const long = join(cwd, 'x'.repeat(110));
    mkdirSync(long);
    const r2 = await cli(['doctor', '--json', '--python', '/nonexistent/bin/python'], { cwd, env: { ...process.env, TMPDIR: long } });
    expect(byName(JSON.parse(r2.out).checks).transport!.detail).toMatch(/passed over .*path too long for a socket/);
  });

  it('unit: a loopback TCP transport is a warning with the TMPDIR fix; an unwritable runs folder fails', () => {
    expect(checkTransport({ kind: 'tcp', reason: 'no short private folder for a socket' })).toMatchObject({ status: 'warn', fix: expect.stringMatching(/TMPDIR/) });
    expect(checkRunsFolder('/r', { exists: true, notWritable: 'EROFS', runModes: [] })).toMatchObject({ status: 'fail', detail: '/r is not writable (EROFS)' });
  });
});

describe('posttrain doctor', () => {
  it('with the project venv: every core check is ok and torch 2.13.0 CPU is reported', async () => {
    const r = await cli(['doctor', '--json'], { cwd: tmp(), env: envWithout('POSTTRAIN_PYTHON') });
    const report = JSON.parse(r.out) as { ok: boolean; python: string; checks: Check[] };
    const checks = byName(report.checks);
    for (const name of ['node', 'python', 'virtualenv', 'torch', 'transformers', 'peft', 'trl', 'accelerate', 'pyzmq', 'msgpack', 'posttrain_sidecar', 'smoke_model']) {
      expect(checks[name], name).toMatchObject({ status: 'ok' });
    }
    expect(report.python).toBe(DEFAULT_VENV_PYTHON);
    expect(checks.virtualenv!.detail).toContain('the project virtualenv');
    expect(checks.torch!.detail).toMatch(/^2\.13\.0.*CPU build/);
    expect(checks.transformers!.detail).toBe('5.18.0');
    expect(checks.tensorboard).toMatchObject({ status: 'ok' }); // a dev dependency, so installed here
    expect(['ok', 'warn', 'fail']).toContain(checks.disk!.status);
    for (const c of report.checks) expect(Object.keys(c).sort()).toEqual(c.fix === undefined ? ['detail', 'name', 'status'] : ['detail', 'fix', 'name', 'status']);
    expect(report.ok).toBe(report.checks.every((c) => c.status !== 'fail'));
    expect(r.code).toBe(report.ok ? 0 : 1);
  }, 120_000);

  it('the table: one ✓/!/✗ line per check and fix lines under problems', async () => {
    const r = await cli(['doctor', '--python', '/nonexistent/bin/python'], { cwd: tmp() });
    expect(r.code).toBe(1);
    expect(r.out).toMatch(/^ {2}✗ python +\/nonexistent\/bin\/python does not exist$/m);
    expect(r.out).toMatch(/^ +fix: Point --python/m);
    expect(r.out).toMatch(/^ {2}✓ node /m);
    expect(r.out).toMatch(/^\d+ problems?, \d+ warnings?\.$/m);
    expect(r.out).not.toMatch(/torch/); // nothing is claimed about packages nobody could look at
    expect(r.err).toMatch(/^error: 1 check\(s\) failed: python\./m);
    expect(r.err).not.toMatch(STACK);
  });

  it('a Python without torch (a bare venv): torch and the sidecar fail with pip fixes for that Python', async () => {
    const dir = tmp('posttrain-doctor-venv-');
    execFileSync('python3', ['-m', 'venv', '--without-pip', join(dir, 'venv')]);
    const python = join(dir, 'venv', 'bin', 'python');
    const r = await cli(['doctor', '--json', '--python', python], { cwd: dir });
    expect(r.code).toBe(1);
    const checks = byName((JSON.parse(r.out) as { checks: Check[] }).checks);
    expect(checks.python).toMatchObject({ status: 'ok' });
    expect(checks.virtualenv!.detail).toContain('a virtualenv of your own');
    expect(checks.torch).toMatchObject({ status: 'fail', detail: 'not installed' });
    expect(checks.torch!.fix).toContain(`${python} -m pip install torch==2.13.*`);
    expect(checks.transformers!.fix).toBe(FIX.pip(python, 'transformers'));
    expect(checks.posttrain_sidecar).toMatchObject({ status: 'fail', fix: FIX.pip(python, `-e ${PACKAGE_ROOT}`) });
    expect(r.err).not.toMatch(STACK);
  }, 60_000);

  it('an install without .venv (a copy of the CLI, no make setup yet): python fails with `make setup`', () => {
    const root = tmp('posttrain-doctor-novenv-');
    for (const p of ['package.json', 'bin', 'dist', 'scripts', 'sidecar']) cpSync(join(PACKAGE_ROOT, p), join(root, p), { recursive: true });
    symlinkSync(join(PACKAGE_ROOT, 'node_modules'), join(root, 'node_modules'));
    mkdirSync(join(root, 'work'));
    const r = spawnSync(process.execPath, [join(root, 'bin', 'posttrain.js'), 'doctor'], {
      cwd: join(root, 'work'),
      env: envWithout('POSTTRAIN_PYTHON'),
      encoding: 'utf8',
      timeout: 60_000,
    });
    expect(r.status).toBe(1);
    expect(r.stdout).toContain(`✗ python`);
    expect(r.stdout).toContain(`${join(root, '.venv', 'bin', 'python')} does not exist: the project virtualenv is not set up`);
    expect(r.stdout).toContain(`fix: make -C ${root} setup`);
    expect(r.stdout).toMatch(/! smoke_model .*missing/);
    expect(r.stderr).not.toMatch(STACK);
  }, 60_000);
});
