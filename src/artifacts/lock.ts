// One process per run folder. `<run>/.lock` is created with O_EXCL and holds the owner's pid,
// host, start time and command. A lock whose owner is gone (same host, pid not alive) is stale
// and is taken over; a lock from another host (shared file system) cannot be checked and is
// always respected.
//
// Takeovers are serialised by a second O_EXCL file, `.lock.takeover`: the taker re-reads the
// lock while holding it and replaces a still-stale lock with an atomic rename, so two processes
// that both find the same stale lock cannot both win, and `.lock` never goes missing in between
// (which would let a third process in by plain O_EXCL creation).
//
// Pid reuse: the lock also records the owner's process start time (Linux: /proc/<pid>/stat
// field 22, clock ticks since boot). A live pid whose start time differs is another process that
// got the dead owner's pid, so the lock is stale. Known limit: without /proc (macOS) or for locks
// written before this field existed, only the pid's existence is checked.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { EXIT, PosttrainError } from '../errors.js';
import { fsErrorCode, readJson, writeAllSync, writeError, writeFileAtomic } from './atomic.js';

export const LOCK_FILE = '.lock';
const TAKEOVER_FILE = '.lock.takeover';
/** An unreadable lock older than this was left by a process that died while writing it. */
const CORRUPT_STALE_MS = 5_000;
/** A takeover guard older than this was left by a process that died while taking over. */
const TAKEOVER_STALE_MS = 10_000;
const MAX_ATTEMPTS = 20;

export interface LockInfo {
  pid: number;
  host: string;
  /** ISO time the lock was taken. */
  started: string;
  /** What the owner is doing, e.g. `run --preset smoke`. */
  command: string;
  /** The owner's process start time (/proc/<pid>/stat starttime), to tell a reused pid; null where unknown. */
  pid_start?: string | null;
}

/** The run folder is in use by another process (or by this one, a second time). */
export class RunLockedError extends PosttrainError {
  /** The lock as read, when it could be read. */
  readonly lock: LockInfo | null;

  constructor(message: string, hint: string, lock: LockInfo | null) {
    super(message, { exitCode: EXIT.usage, hint });
    this.lock = lock;
  }
}

type LockState = { kind: 'none' } | { kind: 'ok'; info: LockInfo } | { kind: 'corrupt'; ageMs: number };

export function lockPath(runDir: string): string {
  return path.join(runDir, LOCK_FILE);
}

function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/** Whether a process with this pid exists (EPERM means it exists but belongs to someone else). */
export function isPidAlive(pid: number): boolean {
  if (!Number.isSafeInteger(pid) || pid <= 0) return false; // 0 / negative would address process groups
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return fsErrorCode(err) !== 'ESRCH';
  }
}

/** When the process with this pid started (clock ticks since boot), or null without /proc. */
export function processStart(pid: number): string | null {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may hold spaces and parentheses: fields resume after the last ')'.
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19] ?? null;
  } catch {
    return null;
  }
}

/**
 * Stale = written on this host by a process that no longer exists, or whose pid now belongs to a
 * process that started at another time (pid reuse). Other hosts' locks are never stale.
 */
export function isLockStale(info: LockInfo): boolean {
  if (info.host !== os.hostname()) return false;
  if (!isPidAlive(info.pid)) return true;
  const now = info.pid_start ? processStart(info.pid) : null;
  return now !== null && now !== info.pid_start;
}

function parseLock(value: unknown): LockInfo | null {
  if (typeof value !== 'object' || value === null) return null;
  const v = value as Record<string, unknown>;
  if (typeof v.pid !== 'number' || typeof v.host !== 'string' || typeof v.started !== 'string') return null;
  return {
    pid: v.pid,
    host: v.host,
    started: v.started,
    command: typeof v.command === 'string' ? v.command : '?',
    ...(typeof v.pid_start === 'string' ? { pid_start: v.pid_start } : {}),
  };
}

function ageMs(file: string): number {
  try {
    return Date.now() - fs.statSync(file).mtimeMs;
  } catch {
    return 0;
  }
}

function readLockState(runDir: string): LockState {
  const file = lockPath(runDir);
  // A lock just created by another process may not hold its content yet: look again briefly.
  for (let i = 0; ; i++) {
    if (!fs.existsSync(file)) return { kind: 'none' };
    let info: LockInfo | null = null;
    try {
      info = parseLock(readJson<unknown>(file));
    } catch {
      if (!fs.existsSync(file)) return { kind: 'none' };
    }
    if (info !== null) return { kind: 'ok', info };
    if (i >= 10) return { kind: 'corrupt', ageMs: ageMs(file) };
    sleepSync(20);
  }
}

function stateIsStale(state: LockState): boolean {
  if (state.kind === 'ok') return isLockStale(state.info);
  if (state.kind === 'corrupt') return state.ageMs > CORRUPT_STALE_MS;
  return false;
}

/** The lock holder, or null when the run is not locked (or its lock cannot be read). */
export function readLock(runDir: string): LockInfo | null {
  const state = readLockState(runDir);
  return state.kind === 'ok' ? state.info : null;
}

/** Whether the run has no live lock: none at all, or a stale one. Used to spot interrupted runs. */
export function isRunUnlocked(runDir: string): boolean {
  const state = readLockState(runDir);
  return state.kind === 'none' || stateIsStale(state);
}

/** Create `file` with O_EXCL and `text` in it. False when it already exists. */
function tryCreate(file: string, text: string): boolean {
  let fd: number;
  try {
    fd = fs.openSync(file, 'wx');
  } catch (err) {
    if (fsErrorCode(err) === 'EEXIST') return false;
    throw writeError(file, err);
  }
  try {
    writeAllSync(fd, Buffer.from(text, 'utf8'));
    fs.fsyncSync(fd);
  } catch (err) {
    try {
      fs.closeSync(fd);
      fs.unlinkSync(file);
    } catch {
      // reporting the write error matters more
    }
    throw writeError(file, err);
  }
  fs.closeSync(fd);
  return true;
}

/** Replace a stale lock with ours. False when another process got in first (the caller looks again). */
function takeOver(runDir: string, text: string): boolean {
  const guard = path.join(runDir, TAKEOVER_FILE);
  if (!tryCreate(guard, `${process.pid}\n`)) {
    if (ageMs(guard) > TAKEOVER_STALE_MS) {
      try {
        fs.unlinkSync(guard);
      } catch {
        // someone else cleaned it up
      }
    }
    return false;
  }
  try {
    const state = readLockState(runDir);
    // Gone (released meanwhile: plain creation may race us, so go back to that) or live again.
    if (state.kind === 'none' || !stateIsStale(state)) return false;
    writeFileAtomic(lockPath(runDir), text);
    return true;
  } finally {
    try {
      fs.unlinkSync(guard);
    } catch {
      // already gone
    }
  }
}

function lockedError(runDir: string, state: LockState): RunLockedError {
  const file = lockPath(runDir);
  if (state.kind !== 'ok') {
    return new RunLockedError(
      `Run ${runDir} is locked by another process (${file} is being written or is unreadable).`,
      `try again in a moment; if this persists and no posttrain process works in this run, delete ${file}`,
      null,
    );
  }
  const { pid, host, started, command } = state.info;
  const here = host === os.hostname();
  const where = here ? '' : ` on host ${host}`;
  const hint = here
    ? `wait for it to finish or stop it (kill ${pid}); a lock left by a dead process is taken over automatically`
    : `wait for it to finish or stop it on ${host} (kill ${pid}); a lock from another host cannot be checked from here, so if that process is gone delete ${file}`;
  return new RunLockedError(
    `Run ${runDir} is in use by process ${pid}${where} (\`${command}\`, started ${started}).`,
    hint,
    state.info,
  );
}

/**
 * Take the run's lock for this process. Returns `release()`, which removes the lock only if it
 * still is ours (safe to call more than once; never throws). Throws RunLockedError when a live
 * process holds it (this one included), ArtifactError when the lock cannot be written.
 */
export function acquireLock(runDir: string, command: string): () => void {
  const file = lockPath(runDir);
  const mine: LockInfo = { pid: process.pid, host: os.hostname(), started: new Date().toISOString(), command, pid_start: processStart(process.pid) };
  const text = `${JSON.stringify(mine, null, 2)}\n`;
  let state: LockState = { kind: 'none' };
  for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
    if (tryCreate(file, text)) return releaser(runDir, mine);
    state = readLockState(runDir);
    if (state.kind === 'none') continue; // released meanwhile
    if (!stateIsStale(state)) throw lockedError(runDir, state);
    if (takeOver(runDir, text)) return releaser(runDir, mine);
    sleepSync(25); // another process is taking over: see who won
  }
  throw lockedError(runDir, state);
}

function releaser(runDir: string, mine: LockInfo): () => void {
  let released = false;
  return () => {
    if (released) return;
    released = true;
    try {
      const state = readLockState(runDir);
      if (state.kind !== 'ok') return;
      const { pid, host, started } = state.info;
      if (pid === mine.pid && host === mine.host && started === mine.started) fs.unlinkSync(lockPath(runDir));
    } catch {
      // A lock we could not remove is stale once we exit and will be taken over.
    }
  };
}
