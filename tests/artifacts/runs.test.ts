// Run folders and run.json: create, load (id / latest / unknown), list, update, interrupted runs.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  acquireLock,
  ArtifactError,
  createRun,
  listRuns,
  listRunsDetailed,
  loadRun,
  markInterruptedIfStale,
  newRunId,
  readLock,
  RunNotFoundError,
  runDir,
  stageDir,
  stagePaths,
  updateRun,
  updateStage,
} from '../../src/artifacts/index.js';
import { UsageError } from '../../src/errors.js';
import { deadPid, runInit, tempDir } from './helpers.js';

/** Create runs with the given ids whose `created` increases in that order. */
function makeRuns(runsDir: string, ids: string[]): void {
  ids.forEach((id, i) => {
    const { dir } = createRun(runsDir, runInit({ id }));
    updateRun(dir, (r) => {
      r.created = new Date(Date.UTC(2025, 0, 1, 0, 0, i)).toISOString();
    });
  });
}

function thrown(fn: () => unknown): Error {
  try {
    fn();
  } catch (err) {
    return err as Error;
  }
  throw new Error('expected a throw');
}

describe('ids and paths', () => {
  it('newRunId is YYYYMMDD-HHMMSS-xxxx in UTC and sorts by time', () => {
    const a = newRunId(new Date(Date.UTC(2025, 8, 7, 6, 5, 4)));
    expect(a).toMatch(/^20250907-060504-[0-9a-f]{4}$/);
    const b = newRunId(new Date(Date.UTC(2025, 8, 7, 6, 5, 5)));
    expect(a < b).toBe(true);
    expect(newRunId()).toMatch(/^\d{8}-\d{6}-[0-9a-f]{4}$/);
  });

  it('run, stage and file paths', () => {
    expect(runDir('/r', 'x')).toBe(path.join('/r', 'x'));
    expect(stageDir('/r/x', 'dpo')).toBe(path.join('/r/x', 'stages', 'dpo'));
    expect(stagePaths('/r/x', 'sft')).toEqual({
      dir: path.join('/r/x/stages/sft'),
      adapter: path.join('/r/x/stages/sft/adapter'),
      checkpoints: path.join('/r/x/stages/sft/checkpoints'),
      metrics: path.join('/r/x/stages/sft/metrics.jsonl'),
      summary: path.join('/r/x/stages/sft/summary.json'),
      log: path.join('/r/x/stages/sft/sidecar.log'),
    });
  });
});

describe('createRun / loadRun', () => {
  it('creates the folder layout and run.json: running, selected stages pending', () => {
    const runsDir = path.join(tempDir(), 'runs'); // does not exist yet
    const { dir, record } = createRun(runsDir, runInit({ fake_sidecar: true }));
    expect(dir).toBe(path.join(runsDir, record.id));
    expect(record.id).toMatch(/^\d{8}-\d{6}-[0-9a-f]{4}$/);
    expect(fs.readdirSync(dir).sort()).toEqual(['data', 'run.json', 'stages']);
    expect(record).toMatchObject({ status: 'running', preset: 'smoke', stages_selected: ['sft', 'dpo'], fake_sidecar: true });
    expect(record.created).toBe(record.updated);
    expect(Object.keys(record.stages)).toEqual(['sft', 'dpo']);
    expect(record.stages.sft).toEqual({
      status: 'pending', started: null, finished: null, input_adapter: null, output_adapter: null, resumed_from: null, steps: null, error: null,
    });
    expect(JSON.parse(fs.readFileSync(path.join(dir, 'run.json'), 'utf8'))).toEqual(record);
    expect(loadRun(runsDir, record.id)).toEqual({ dir, record });
  });

  it('an explicit id is used; a taken or unsafe one is a usage error', () => {
    const runsDir = tempDir();
    expect(createRun(runsDir, runInit({ id: 'my-run' })).dir).toBe(path.join(runsDir, 'my-run'));
    expect(() => createRun(runsDir, runInit({ id: 'my-run' }))).toThrow(UsageError);
    expect(() => createRun(runsDir, runInit({ id: '../escape' }))).toThrow(UsageError);
    expect(fs.readdirSync(runsDir)).toEqual(['my-run']);
  });

  it('a runs_dir that cannot be created is an ArtifactError naming it', () => {
    const base = tempDir();
    fs.writeFileSync(path.join(base, 'file'), '');
    const runsDir = path.join(base, 'file', 'runs');
    const err = thrown(() => createRun(runsDir, runInit()));
    expect(err).toBeInstanceOf(ArtifactError);
    expect(err.message).toContain(runsDir);
  });

  it('latest is the newest by created; listRuns is newest first', () => {
    const runsDir = tempDir();
    makeRuns(runsDir, ['b-run', 'c-run', 'a-run']); // created in this order
    expect(loadRun(runsDir, 'latest').record.id).toBe('a-run');
    expect(loadRun(runsDir, 'latest').dir).toBe(path.join(runsDir, 'a-run'));
    expect(listRuns(runsDir).map((r) => r.id)).toEqual(['a-run', 'c-run', 'b-run']);
  });

  it('broken folders are listed apart; hidden entries and plain files are ignored', () => {
    const runsDir = tempDir();
    makeRuns(runsDir, ['good']);
    fs.mkdirSync(path.join(runsDir, 'empty'));
    fs.mkdirSync(path.join(runsDir, 'corrupt'));
    fs.writeFileSync(path.join(runsDir, 'corrupt', 'run.json'), '{"id": "corr');
    fs.mkdirSync(path.join(runsDir, 'wrong'));
    fs.writeFileSync(path.join(runsDir, 'wrong', 'run.json'), '{"id": "wrong"}');
    fs.mkdirSync(path.join(runsDir, '.trash'));
    fs.writeFileSync(path.join(runsDir, 'notes.txt'), '');
    const { runs, broken } = listRunsDetailed(runsDir);
    expect(runs.map((r) => r.id)).toEqual(['good']);
    const reasons = Object.fromEntries(broken.map((b) => [path.basename(b.dir), b.reason]));
    expect(Object.keys(reasons).sort()).toEqual(['corrupt', 'empty', 'wrong']);
    expect(reasons.empty).toBe('no run.json');
    expect(reasons.corrupt).toContain('is not valid JSON');
    expect(reasons.wrong).toContain('is not a run record');
    expect(loadRun(runsDir, 'latest').record.id).toBe('good');
    expect(() => loadRun(runsDir, 'corrupt')).toThrow(ArtifactError);
    expect(() => loadRun(runsDir, 'empty')).toThrow(`${path.join(runsDir, 'empty')} is not a run: it has no run.json.`);
  });

  it('an unknown id: RunNotFoundError (exit 2) with a suggestion and the recent ids', () => {
    const runsDir = tempDir();
    makeRuns(runsDir, ['r1', 'r2', 'r3', 'r4', 'r5', 'r6', '20250101-000000-beef']);
    const err = thrown(() => loadRun(runsDir, '20250101-000000-beep'));
    expect(err).toBeInstanceOf(RunNotFoundError);
    expect((err as RunNotFoundError).exitCode).toBe(2);
    expect(err.message).toBe(`No run "20250101-000000-beep" in ${runsDir}. Did you mean "20250101-000000-beef"?`);
    expect((err as RunNotFoundError).hint).toBe('recent runs: 20250101-000000-beef, r6, r5, r4, r3, … (7 in all); or use "latest"');
    expect(thrown(() => loadRun(runsDir, 'zzzzzzzzzz')).message).toBe(`No run "zzzzzzzzzz" in ${runsDir}.`);
    expect(thrown(() => loadRun(runsDir, '../r1'))).toBeInstanceOf(RunNotFoundError);
  });

  it('no runs at all: a clear error naming runs_dir', () => {
    const runsDir = path.join(tempDir(), 'nothing-here');
    const err = thrown(() => loadRun(runsDir, 'latest'));
    expect(err).toBeInstanceOf(RunNotFoundError);
    expect(err.message).toBe(`No runs in ${runsDir} yet.`);
    expect(thrown(() => loadRun(runsDir, 'abc')).message).toBe(`No run "abc": ${runsDir} holds no runs yet.`);
    expect(listRunsDetailed(runsDir)).toEqual({ runs: [], broken: [] });
  });
});

describe('updateRun / updateStage', () => {
  it('patches one stage, bumps updated, leaves the rest', async () => {
    const { dir, record } = createRun(tempDir(), runInit());
    await new Promise((r) => setTimeout(r, 5));
    const after = updateStage(dir, 'sft', { status: 'running', started: '2025-01-01T00:00:00.000Z', steps: undefined });
    expect(after.stages.sft).toMatchObject({ status: 'running', started: '2025-01-01T00:00:00.000Z', steps: null });
    expect(after.stages.dpo).toEqual(record.stages.dpo);
    expect(after.updated > record.updated).toBe(true);
    expect(after.created).toBe(record.created);
    expect(loadRun(path.dirname(dir), record.id).record).toEqual(after);
    // A stage not selected at creation is created from pending.
    expect(updateStage(dir, 'grpo', { status: 'failed', error: { code: 'oom', message: 'CUDA out of memory' } }).stages.grpo).toMatchObject({
      status: 'failed', started: null, error: { code: 'oom', message: 'CUDA out of memory' },
    });
  });
});

describe('markInterruptedIfStale', () => {
  function runningRun() {
    const { dir } = createRun(tempDir(), runInit({ stages_selected: ['sft', 'dpo', 'grpo'] }));
    updateStage(dir, 'sft', { status: 'ok' });
    updateStage(dir, 'dpo', { status: 'running' });
    return dir;
  }

  it('no lock: run and its running stages become interrupted, once', () => {
    const dir = runningRun();
    expect(markInterruptedIfStale(dir)).toBe(true);
    const r = loadRun(path.dirname(dir), path.basename(dir)).record;
    expect(r.status).toBe('interrupted');
    expect([r.stages.sft?.status, r.stages.dpo?.status, r.stages.grpo?.status]).toEqual(['ok', 'interrupted', 'pending']);
    expect(fs.existsSync(path.join(dir, '.lock'))).toBe(false);
    expect(markInterruptedIfStale(dir)).toBe(false);
  });

  it('a lock left by a dead process counts as no lock (and is cleaned up)', () => {
    const dir = runningRun();
    fs.writeFileSync(path.join(dir, '.lock'), JSON.stringify({ pid: deadPid(), host: os.hostname(), started: new Date().toISOString(), command: 'run' }));
    expect(markInterruptedIfStale(dir)).toBe(true);
    expect(readLock(dir)).toBeNull();
  });

  it('a live lock, or a run that is not running, is left alone', () => {
    const dir = runningRun();
    const release = acquireLock(dir, 'run');
    const before = fs.readFileSync(path.join(dir, 'run.json'), 'utf8');
    expect(markInterruptedIfStale(dir)).toBe(false);
    expect(fs.readFileSync(path.join(dir, 'run.json'), 'utf8')).toBe(before);
    expect(readLock(dir)?.command).toBe('run');
    release();
    updateRun(dir, (r) => {
      r.status = 'ok';
    });
    expect(markInterruptedIfStale(dir)).toBe(false);
  });
});
