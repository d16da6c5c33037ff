// A full disk and an unusable runs_dir, at CLI level with the fake sidecar. The disk is a real
// tiny tmpfs mounted in a private mount namespace (unshare -m, as tests/artifacts does); the real
// bin runs inside it, and what it left is copied out for inspection. Whatever stage the disk fills
// in, the answer is exit 1 or 2 with "disk full", no stack trace, and what was written before
// (run.json, finished stages' adapters and summaries, metrics lines) is intact and parseable.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { BIN, cli, fakeEnv, tmp } from '../helpers/cli.js';
import { recordReliability } from '../helpers/reliability.js';

const STACK = /^\s+at .+:\d+:\d+\)?$/m;

function run(cmd: string, args: string[], env: NodeJS.ProcessEnv, timeoutMs: number): Promise<{ code: number | null; err: string; timedOut: boolean }> {
  return new Promise((resolve) => {
    const p = spawn(cmd, args, { env, stdio: ['ignore', 'ignore', 'pipe'], detached: true });
    let err = '';
    let timedOut = false;
    p.stderr.on('data', (d) => (err += d));
    const t = setTimeout(() => {
      timedOut = true;
      try {
        process.kill(-p.pid!, 'SIGKILL'); // the whole group we started: sh, node, the sidecar
      } catch {
        // gone
      }
    }, timeoutMs);
    p.on('exit', (code) => {
      clearTimeout(t);
      resolve({ code, err, timedOut });
    });
  });
}

/** Check every artifact a (possibly failed) run left: returns how many files were verified. */
function checkArtifacts(runsDir: string): number {
  let checked = 0;
  if (!existsSync(runsDir)) return 0;
  expect(readdirSync(runsDir).filter((n) => n.startsWith('.staging-')), 'staging folders left behind').toEqual([]);
  for (const id of readdirSync(runsDir)) {
    const dir = join(runsDir, id);
    const runJson = join(dir, 'run.json');
    if (!existsSync(runJson)) continue;
    const record = JSON.parse(readFileSync(runJson, 'utf8')) as { status: string; stages: Record<string, { status: string } | undefined> };
    checked += 1;
    expect(record.status).not.toBe('ok');
    for (const [stage, info] of Object.entries(record.stages)) {
      const sdir = join(dir, 'stages', stage);
      const metrics = join(sdir, 'metrics.jsonl');
      if (existsSync(metrics)) {
        const lines = readFileSync(metrics, 'utf8').split('\n');
        const complete = lines.slice(0, -1); // the last element is '' or a line cut by the full disk
        for (const l of complete) JSON.parse(l);
        checked += 1;
      }
      if (info?.status === 'ok') {
        JSON.parse(readFileSync(join(sdir, 'summary.json'), 'utf8'));
        JSON.parse(readFileSync(join(sdir, 'adapter', 'adapter_config.json'), 'utf8'));
        checked += 2;
      }
    }
  }
  return checked;
}

describe('disk full and unusable runs_dir', () => {
  it('runs_dir on a tiny tmpfs: exit 1/2, "disk full", no stack, earlier artifacts intact (data check and mid-run)', async ({ skip }) => {
    const probe = spawnSync('unshare', ['-m', 'sh', '-c', `mount -t tmpfs -o size=16k tmpfs "${tmp()}"`], { encoding: 'utf8' });
    skip(probe.status !== 0, `cannot mount a tmpfs in a private mount namespace here (needs unshare -m and CAP_SYS_ADMIN): ${(probe.stderr ?? '').trim()}`);
    // 16k: full while the canonical data is written (before any run exists);
    // 160k: full somewhere after sft (checkpoints, adapters, run.json rewrites).
    const sizes = ['16k', '160k'];
    let ok = 0;
    let files = 0;
    for (const size of sizes) {
      const mnt = tmp('posttrain-full-');
      const out = tmp('posttrain-full-out-');
      const script = 'mount -t tmpfs -o size="$1" tmpfs "$2" || exit 97; "$3" "$4" run --preset smoke --set runtime.runs_dir="$2/runs"; rc=$?; cp -a "$2/." "$5/" 2>/dev/null; exit $rc';
      const r = await run('unshare', ['-m', 'sh', '-c', script, 'sh', size, mnt, process.execPath, BIN, out], fakeEnv({ stages: { '*': { steps: 10, step_time_s: 0, save_every: 5 } } }), 25_000);
      expect(r.timedOut, `size ${size}: the run did not exit within 25 s (hang after ENOSPC?): ${r.err}`).toBe(false);
      expect(r.code, `size ${size}: ${r.err}`).not.toBe(97);
      expect([1, 2], `size ${size}: ${r.err}`).toContain(r.code);
      expect(r.err, `size ${size}`).toMatch(/disk full \(ENOSPC\)/);
      expect(r.err).toMatch(/hint: free some disk space/);
      expect(r.err).not.toMatch(STACK);
      expect(r.err).not.toContain('internal error');
      files += checkArtifacts(join(out, 'runs'));
      ok += 1;
    }
    expect(files).toBeGreaterThan(0); // the mid-run case left a run to inspect
    recordReliability({ fault: 'runs_dir on a full tmpfs (16 KiB: during the data check; 160 KiB: mid-run)', stage: 'disk', injected: sizes.length, survived: ok, lost: 0, outcome: `exit 1/2 "disk full (ENOSPC)" + hint, no stack; run.json, finished stages' summary/adapter and ${files} artifacts parse`, test: 'tests/hostile/disk.test.ts' });
  }, 60_000);

  it('runs_dir below a regular file (ENOTDIR): clear error, nothing written', async () => {
    const dir = tmp('posttrain-notdir-');
    const file = join(dir, 'plain');
    writeFileSync(file, 'x');
    const r = await cli(['run', '--preset', 'smoke', '--set', `runtime.runs_dir=${join(file, 'runs')}`], { cwd: dir, env: fakeEnv() });
    expect([1, 2], r.err).toContain(r.code);
    expect(r.err).toMatch(/not a folder|ENOTDIR/);
    expect(r.err).toContain(file);
    expect(r.err).not.toMatch(STACK);
    expect(r.err).not.toContain('internal error');
    expect(readdirSync(dir)).toEqual(['plain']);
    expect(readFileSync(file, 'utf8')).toBe('x');
    recordReliability({ fault: 'runs_dir below a regular file (ENOTDIR)', stage: 'disk', injected: 1, survived: 1, lost: 0, outcome: `exit ${r.code}: ${r.err.split('\n')[0]}`, test: 'tests/hostile/disk.test.ts' });
  });

  it('a read-only runs folder (EROFS): named as read-only with the fix, not ENOENT; no run or staging folder left', async ({ skip }) => {
    const probe = spawnSync('unshare', ['-m', 'sh', '-c', `mount -t tmpfs -o ro tmpfs "${tmp()}"`], { encoding: 'utf8' });
    skip(probe.status !== 0, `cannot mount a tmpfs in a private mount namespace here: ${(probe.stderr ?? '').trim()}`);
    // Two cases: the runs folder is missing on a read-only mount (mkdir -p of it fails), and it
    // exists there (the staging folder inside it fails).
    const script = 'mount -t tmpfs tmpfs "$1" && mkdir "$1/runs" && mount -o remount,ro "$1" || exit 97; for d in "$1/missing/runs" "$1/runs"; do "$2" "$3" run --preset smoke --stages sft --runs-dir "$d"; echo "rc=$?" >&2; done; ls -A "$1/runs" >&2; echo "left=$(ls -A "$1/runs" | wc -l)" >&2';
    const r = await run('unshare', ['-m', 'sh', '-c', script, 'sh', tmp('posttrain-ro-'), process.execPath, BIN], fakeEnv(), 25_000);
    const errors = r.err.split('\n').filter((l) => l.startsWith('error:'));
    const ok = errors.length === 2 && errors.every((l) => /read-only file system \(EROFS\)/.test(l)) && /rc=1[\s\S]*rc=1/.test(r.err) && /left=0/.test(r.err);
    recordReliability({ fault: 'runs_dir on a read-only file system (missing there, and existing)', stage: 'disk', injected: 2, survived: ok ? 2 : 0, lost: 0, outcome: ok ? 'exit 1 "not writable, read-only file system (EROFS)" + "set runtime.runs_dir to a folder on a writable file system"; nothing left' : r.err.slice(-400), test: 'tests/hostile/disk.test.ts' });
    expect(r.err).not.toMatch(/ENOENT/);
    expect(errors, r.err).toHaveLength(2);
    for (const l of errors) expect(l).toMatch(/Could not write .*: not writable, read-only file system \(EROFS\)/);
    expect(r.err).toMatch(/hint: set runtime\.runs_dir to a folder on a writable file system/);
    expect(r.err).toMatch(/left=0/);
    expect(r.err).not.toMatch(STACK);
  });

  it('a file-size limit (ulimit -f) hit while the real sidecar checkpoints: named with the fix, earlier artifacts intact, resumable', async () => {
    const cwd = tmp('posttrain-fsize-');
    // 100 KiB: the smoke model's first checkpoint (adapter + optimizer state) does not fit.
    const r = await run('sh', ['-c', 'cd "$1" && ulimit -f 200 && exec "$2" "$3" run --preset smoke --stages sft --set stages.sft.max_steps=4 --set stages.sft.save_steps=2', 'sh', cwd, process.execPath, BIN], process.env, 90_000);
    const id = readdirSync(join(cwd, 'runs')).find((d) => !d.startsWith('.'))!;
    const dir = join(cwd, 'runs', id);
    const record = JSON.parse(readFileSync(join(dir, 'run.json'), 'utf8'));
    const metrics = readFileSync(join(dir, 'stages', 'sft', 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    const ok = r.code === 1 && /\[file_too_large\].*ulimit -f unlimited/.test(r.err) && !/internal_error/.test(r.err) && record.stages.sft.status === 'failed';
    recordReliability({ fault: 'file-size limit (ulimit -f 100 KiB) reached while the real sidecar writes its first checkpoint', stage: 'sft', injected: 1, survived: ok ? 1 : 0, lost: 0, outcome: ok ? `exit 1 [file_too_large] with the limit and "ulimit -f unlimited", then resume; run.json and ${metrics.length} metric lines parse` : r.err.slice(-300), test: 'tests/hostile/disk.test.ts' });
    expect(r.code, r.err).toBe(1);
    expect(r.err).toMatch(/\[file_too_large\] writing a checkpoint failed: a file reached the file-size limit \(ulimit -f\), which is 102400 bytes here/);
    expect(r.err).toMatch(/posttrain run --resume --run /);
    expect(r.err).not.toContain('internal_error');
    expect(r.err).not.toMatch(STACK);
    expect(record.stages.sft.status).toBe('failed');
    expect(metrics.length).toBeGreaterThan(0);
  }, 120_000);
});
