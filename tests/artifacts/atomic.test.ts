// Atomic writes: the target holds the old content or the new one, never a mix; failures name
// the path and the OS reason and leave no temp file behind. Every failure here is a real one
// produced by the OS (no mocks); where the environment cannot produce one, the test says so.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ArtifactError, describeFsError, readJson, writeError, writeFileAtomic, writeJsonAtomic } from '../../src/artifacts/index.js';
import { childScript, runSync, tempDir } from './helpers.js';

function thrown(fn: () => unknown): unknown {
  try {
    fn();
  } catch (err) {
    return err;
  }
  throw new Error('expected a throw');
}

describe('writeFileAtomic', () => {
  it('replaces the content whole and leaves no temp file', () => {
    const dir = tempDir();
    const file = path.join(dir, 'state.json');
    writeFileAtomic(file, 'a'.repeat(100_000));
    writeFileAtomic(file, 'short');
    expect(fs.readFileSync(file, 'utf8')).toBe('short');
    writeFileAtomic(file, new Uint8Array([104, 105]));
    expect(fs.readFileSync(file, 'utf8')).toBe('hi');
    expect(fs.readdirSync(dir)).toEqual(['state.json']);
  });

  it('writeJsonAtomic writes pretty JSON with a trailing newline; readJson reads it back', () => {
    const file = path.join(tempDir(), 'x.json');
    writeJsonAtomic(file, { a: 1, b: [true, null] });
    expect(fs.readFileSync(file, 'utf8')).toBe('{\n  "a": 1,\n  "b": [\n    true,\n    null\n  ]\n}\n');
    expect(readJson(file)).toEqual({ a: 1, b: [true, null] });
  });

  it('read-only folder: throws ArtifactError naming the path, old file intact', ({ skip }) => {
    const dir = tempDir();
    const file = path.join(dir, 'run.json');
    fs.writeFileSync(file, 'old');
    fs.chmodSync(dir, 0o500);
    let writable = true;
    try {
      fs.writeFileSync(path.join(dir, 'probe'), 'x');
      fs.unlinkSync(path.join(dir, 'probe'));
    } catch {
      writable = false;
    }
    skip(writable, 'running as root (or with CAP_DAC_OVERRIDE): chmod 0o500 does not stop writes here, so EACCES cannot be produced in-process; the setpriv, disk-full and file-size tests below cover the failure path');
    const err = thrown(() => writeFileAtomic(file, 'new'));
    expect(err).toBeInstanceOf(ArtifactError);
    expect((err as Error).message).toContain(file);
    expect((err as Error).message).toMatch(/not writable/);
    expect(fs.readFileSync(file, 'utf8')).toBe('old');
    expect(fs.readdirSync(dir)).toEqual(['run.json']);
  });

  it('read-only folder, as an unprivileged child process (root drops to nobody with setpriv)', ({ skip }) => {
    skip(process.getuid?.() !== 0, 'not root: the in-process read-only test above covers this');
    const probe = runSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', 'true']);
    skip(probe.status !== 0, `setpriv cannot drop to uid 65534 here: ${probe.stderr.trim()}`);
    const base = tempDir();
    fs.chmodSync(base, 0o755);
    const dir = path.join(base, 'ro');
    fs.mkdirSync(dir);
    fs.writeFileSync(path.join(dir, 'run.json'), 'old content');
    fs.chmodSync(dir, 0o555);
    const script = childScript(
      'ro-writer.mjs',
      `import * as fs from 'node:fs';
import { writeFileAtomic } from './src/artifacts/atomic.js';
const file = process.argv[2] + '/run.json';
let error = null;
try { writeFileAtomic(file, 'new'); } catch (e) { error = { name: e.name, message: e.message }; }
console.log(JSON.stringify({ error, content: fs.readFileSync(file, 'utf8'), files: fs.readdirSync(process.argv[2]) }));
`,
    );
    const r = runSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, script, dir]);
    expect(r.status, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as { error: { name: string; message: string }; content: string; files: string[] };
    expect(out.error).toEqual({ name: 'ArtifactError', message: `Could not write ${path.join(dir, 'run.json')}: not writable (EACCES).` });
    expect(out.content).toBe('old content');
    expect(out.files).toEqual(['run.json']);
  });

  it('a parent that is a regular file (ENOTDIR): ArtifactError naming the path', () => {
    const dir = tempDir();
    fs.writeFileSync(path.join(dir, 'plain'), 'x');
    const file = path.join(dir, 'plain', 'run.json');
    const err = thrown(() => writeFileAtomic(file, 'new'));
    expect(err).toBeInstanceOf(ArtifactError);
    expect((err as ArtifactError).exitCode).toBe(1);
    expect((err as Error).message).toBe(`Could not write ${file}: a parent of the path is not a folder (ENOTDIR).`);
  });

  it('a failing rename (target is a folder) removes the temp file and leaves the target alone', () => {
    const dir = tempDir();
    const target = path.join(dir, 'out');
    fs.mkdirSync(target);
    fs.writeFileSync(path.join(target, 'keep'), 'k');
    const err = thrown(() => writeFileAtomic(target, 'new'));
    expect(err).toBeInstanceOf(ArtifactError);
    expect((err as Error).message).toContain(target);
    expect(fs.readdirSync(dir)).toEqual(['out']);
    expect(fs.readFileSync(path.join(target, 'keep'), 'utf8')).toBe('k');
  });

  it('maps a real ENOSPC (from writing to /dev/full) to "disk full" with a hint', ({ skip }) => {
    skip(!fs.existsSync('/dev/full'), 'no /dev/full on this system');
    const fd = fs.openSync('/dev/full', 'w');
    const err = thrown(() => fs.writeSync(fd, 'x'));
    fs.closeSync(fd);
    expect(describeFsError(err)).toBe('disk full (ENOSPC)');
    const wrapped = writeError('/runs/x/run.json', err);
    expect(wrapped.message).toBe('Could not write /runs/x/run.json: disk full (ENOSPC).');
    expect(wrapped.hint).toMatch(/free some disk space/);
  });

  // A child process (the real module, transpiled) writes into a folder and reports what it saw.
  const writer = () =>
    childScript(
      'atomic-writer.mjs',
      `import * as fs from 'node:fs';
import * as path from 'node:path';
import { writeFileAtomic } from './src/artifacts/atomic.js';
const [dir, size] = process.argv.slice(2);
const file = path.join(dir, 'run.json');
fs.writeFileSync(file, 'old content');
let error = null;
try { writeFileAtomic(file, 'n'.repeat(Number(size))); } catch (e) { error = { name: e.name, message: e.message, hint: e.hint ?? null }; }
console.log(JSON.stringify({ error, content: fs.readFileSync(file, 'utf8'), files: fs.readdirSync(dir) }));
`,
    );

  it('disk really full (tiny tmpfs in a private mount namespace): "disk full", old file intact, no temp file', ({ skip }) => {
    const dir = tempDir();
    const script = writer();
    // unshare -m: the mount exists only inside the child's namespace and vanishes with it.
    const probe = runSync('unshare', ['-m', 'true']);
    skip(probe.status !== 0, `cannot make a mount namespace here (needs unshare and CAP_SYS_ADMIN): ${probe.stderr.trim()}`);
    const r = runSync('unshare', ['-m', 'sh', '-c', 'mount -t tmpfs -o size=64k tmpfs "$1" || exit 97; exec "$2" "$3" "$1" 1000000', 'sh', dir, process.execPath, script]);
    skip(r.status === 97, `cannot mount a tmpfs here: ${r.stderr.trim()}`);
    expect(r.status, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as { error: { name: string; message: string; hint: string }; content: string; files: string[] };
    expect(out.error.name).toBe('ArtifactError');
    expect(out.error.message).toBe(`Could not write ${path.join(dir, 'run.json')}: disk full (ENOSPC).`);
    expect(out.error.hint).toMatch(/free some disk space/);
    expect(out.content).toBe('old content');
    expect(out.files).toEqual(['run.json']);
  });

  it('file-size limit hit mid-write (ulimit -f, EFBIG): old file intact, no temp file', ({ skip }) => {
    skip(process.platform === 'win32', 'no ulimit on Windows');
    const dir = tempDir();
    const script = writer();
    // Node ignores SIGXFSZ, so the write fails with EFBIG instead of killing the process.
    const r = runSync('sh', ['-c', 'ulimit -f 16 && exec "$0" "$@"', process.execPath, script, dir, '1000000']);
    expect(r.status, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as { error: { name: string; message: string }; content: string; files: string[] };
    expect(out.error.name).toBe('ArtifactError');
    expect(out.error.message).toBe(`Could not write ${path.join(dir, 'run.json')}: file-size limit reached (EFBIG).`);
    expect(out.content).toBe('old content');
    expect(out.files).toEqual(['run.json']);
  });
});

describe('readJson', () => {
  it('missing, empty and corrupt files give ArtifactError naming the path', () => {
    const dir = tempDir();
    const missing = path.join(dir, 'nope.json');
    expect(() => readJson(missing)).toThrow(new ArtifactError(`${missing} does not exist.`));
    const empty = path.join(dir, 'empty.json');
    fs.writeFileSync(empty, '');
    expect(() => readJson(empty)).toThrow(`${empty} is empty.`);
    const bad = path.join(dir, 'bad.json');
    fs.writeFileSync(bad, '{"a": 1,');
    const err = thrown(() => readJson(bad));
    expect(err).toBeInstanceOf(ArtifactError);
    expect((err as Error).message).toMatch(new RegExp(`^${bad.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} is not valid JSON \\(`));
  });
});
