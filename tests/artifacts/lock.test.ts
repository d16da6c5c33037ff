// One process per run folder, checked with real processes: this one, idle children whose pid is
// written into the lock, and children that take the lock through the real module.
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { acquireLock, ArtifactError, isLockStale, type LockInfo, processStart, readLock, RunLockedError } from '../../src/artifacts/index.js';
import { childScript, deadPid, idleProcess, killAndReap, tempDir, waitForLine } from './helpers.js';
import { recordReliability } from '../helpers/reliability.js';

function writeLock(dir: string, info: Partial<LockInfo>): LockInfo {
  const full: LockInfo = { pid: process.pid, host: os.hostname(), started: '2025-01-02T03:04:05.000Z', command: 'run --preset smoke', ...info };
  fs.writeFileSync(path.join(dir, '.lock'), JSON.stringify(full));
  return full;
}

function lockedError(fn: () => unknown): RunLockedError {
  try {
    fn();
  } catch (err) {
    if (err instanceof RunLockedError) return err;
    throw err;
  }
  throw new Error('expected RunLockedError');
}

describe('acquireLock', () => {
  it('writes our pid, host, start time and command; release removes it', () => {
    const dir = tempDir();
    const release = acquireLock(dir, 'run --preset smoke');
    const info = readLock(dir);
    expect(info).toMatchObject({ pid: process.pid, host: os.hostname(), command: 'run --preset smoke' });
    expect(Number.isNaN(Date.parse(info!.started))).toBe(false);
    expect(isLockStale(info!)).toBe(false);
    release();
    expect(fs.existsSync(path.join(dir, '.lock'))).toBe(false);
    expect(readLock(dir)).toBeNull();
    release(); // twice is harmless
    acquireLock(dir, 'again')();
  });

  it('a second acquire in the same process throws RunLockedError naming pid, command and start', () => {
    const dir = tempDir();
    const release = acquireLock(dir, 'run --preset smoke');
    const { started } = readLock(dir)!;
    const err = lockedError(() => acquireLock(dir, 'resume'));
    expect(err.exitCode).toBe(2);
    expect(err.message).toBe(`Run ${dir} is in use by process ${process.pid} (\`run --preset smoke\`, started ${started}).`);
    expect(err.hint).toBe(`wait for it to finish or stop it (kill ${process.pid}); a lock left by a dead process is taken over automatically`);
    expect(err.lock?.pid).toBe(process.pid);
    release();
  });

  it('respects a lock held by a live child process, takes it over once the child is dead', async () => {
    const dir = tempDir();
    const child = idleProcess();
    writeLock(dir, { pid: child.pid! });
    expect(isLockStale(readLock(dir)!)).toBe(false);
    const err = lockedError(() => acquireLock(dir, 'resume'));
    expect(err.message).toContain(`process ${child.pid}`);
    expect(err.hint).toContain(`kill ${child.pid}`);

    await killAndReap(child);
    expect(isLockStale(readLock(dir)!)).toBe(true);
    const release = acquireLock(dir, 'resume');
    expect(readLock(dir)).toMatchObject({ pid: process.pid, command: 'resume' });
    expect(fs.readdirSync(dir)).toEqual(['.lock']); // no takeover guard or temp file left
    release();
    expect(fs.existsSync(path.join(dir, '.lock'))).toBe(false);
  });

  it('a reused pid: the lock names a live unrelated process that started at another time; it is stale and taken over', async () => {
    const dir = tempDir();
    const stranger = idleProcess(); // alive, but not the process that wrote the lock
    const start = processStart(stranger.pid!);
    expect(start).toMatch(/^\d+$/);
    writeLock(dir, { pid: stranger.pid!, pid_start: String(Number(start) - 100) });
    const stale = isLockStale(readLock(dir)!);
    recordReliability({
      fault: "stale lock whose pid now belongs to an unrelated live process",
      stage: '-',
      injected: 1,
      survived: stale ? 1 : 0,
      lost: 0,
      outcome: stale ? 'seen as stale by its start time and taken over; no "kill <pid>" hint' : 'taken as live',
      test: 'tests/artifacts/lock.test.ts',
    });
    expect(stale).toBe(true);
    const release = acquireLock(dir, 'resume'); // no "kill <stranger>" hint: the lock is taken over
    expect(readLock(dir)).toMatchObject({ pid: process.pid, command: 'resume', pid_start: processStart(process.pid) });
    release();
    // The same pid with its real start time is the owner: respected.
    writeLock(dir, { pid: stranger.pid!, pid_start: start });
    expect(isLockStale(readLock(dir)!)).toBe(false);
    expect(lockedError(() => acquireLock(dir, 'resume')).hint).toContain(`kill ${stranger.pid}`);
    await killAndReap(stranger);
  });

  it('release only removes its own lock', () => {
    const dir = tempDir();
    const release = acquireLock(dir, 'run');
    const child = idleProcess();
    const other = writeLock(dir, { pid: child.pid! }); // e.g. taken over after we were presumed dead
    release();
    expect(readLock(dir)).toEqual(other);
  });

  it('a lock from another host is never treated as stale', () => {
    const dir = tempDir();
    const info = writeLock(dir, { pid: deadPid(), host: 'some-other-host' });
    expect(isLockStale(info)).toBe(false);
    const err = lockedError(() => acquireLock(dir, 'run'));
    expect(err.message).toContain('on host some-other-host');
    expect(err.hint).toContain(path.join(dir, '.lock'));
  });

  it('an unreadable lock: respected while fresh (being written), taken over once old', () => {
    const dir = tempDir();
    const file = path.join(dir, '.lock');
    fs.writeFileSync(file, '{"pid": 12'); // cut short
    expect(readLock(dir)).toBeNull();
    const err = lockedError(() => acquireLock(dir, 'run'));
    expect(err.lock).toBeNull();
    const old = (Date.now() - 60_000) / 1000;
    fs.utimesSync(file, old, old);
    const release = acquireLock(dir, 'run');
    expect(readLock(dir)?.pid).toBe(process.pid);
    release();
  });

  it('a run folder that does not exist is an ArtifactError, not a lock conflict', () => {
    const dir = path.join(tempDir(), 'missing');
    expect(() => acquireLock(dir, 'run')).toThrow(ArtifactError);
  });

  it('a lock taken by another process through this module is respected until that process dies', async () => {
    const dir = tempDir();
    const script = childScript(
      'lock-holder.mjs',
      `import { acquireLock } from './src/artifacts/lock.js';
acquireLock(process.argv[2], 'holder');
console.log('locked');
setTimeout(() => {}, 20000);
`,
    );
    const child = spawn(process.execPath, [script, dir], { stdio: ['ignore', 'pipe', 'pipe'] });
    try {
      await waitForLine(child, 'locked');
      const err = lockedError(() => acquireLock(dir, 'run'));
      expect(err.lock).toMatchObject({ pid: child.pid, command: 'holder' });
    } finally {
      await killAndReap(child); // SIGKILL: no chance to release
    }
    const release = acquireLock(dir, 'run');
    expect(readLock(dir)?.pid).toBe(process.pid);
    release();
  });

  it.each([
    ['a stale lock', true],
    ['no lock', false],
  ])('processes racing for %s: exactly one wins', async (_name, stale) => {
    const dir = tempDir();
    if (stale) writeLock(dir, { pid: deadPid() });
    const go = path.join(dir, 'go');
    const script = childScript(
      'lock-racer.mjs',
      `import * as fs from 'node:fs';
import { acquireLock, RunLockedError } from './src/artifacts/lock.js';
const [dir, go] = process.argv.slice(2);
console.log('ready');
while (!fs.existsSync(go)) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 2);
try {
  acquireLock(dir, 'racer');
  console.log('won');
  setTimeout(() => {}, 1500); // hold it while the others look
} catch (e) {
  console.log(e instanceof RunLockedError ? 'locked' : 'error ' + e.message);
}
`,
    );
    const n = 6;
    const children = Array.from({ length: n }, () => spawn(process.execPath, [script, dir, go], { stdio: ['ignore', 'pipe', 'pipe'] }));
    const outputs = children.map(
      (c) =>
        new Promise<string>((resolve) => {
          let out = '';
          c.stdout.on('data', (d: Buffer) => (out += d.toString()));
          c.stderr.on('data', (d: Buffer) => (out += d.toString()));
          c.on('exit', () => resolve(out));
        }),
    );
    await Promise.all(children.map((c) => waitForLine(c, 'ready')));
    fs.writeFileSync(go, '');
    const results = (await Promise.all(outputs)).map((o) => o.replace('ready\n', '').trim());
    expect(results.filter((r) => r === 'won')).toHaveLength(1);
    expect(results.filter((r) => r === 'locked')).toHaveLength(n - 1);
  });
});

describe('isLockStale', () => {
  it('same host: stale exactly when the pid is not alive', async () => {
    const host = os.hostname();
    expect(isLockStale({ pid: process.pid, host, started: '', command: '' })).toBe(false);
    expect(isLockStale({ pid: deadPid(), host, started: '', command: '' })).toBe(true);
    expect(isLockStale({ pid: 0, host, started: '', command: '' })).toBe(true); // never a real owner
    expect(isLockStale({ pid: -1, host, started: '', command: '' })).toBe(true);
  });
});
