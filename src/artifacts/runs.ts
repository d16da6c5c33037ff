// Run folders and their run.json: create, find (by id or `latest`), list, update.
// run.json is only ever replaced atomically (read-modify-write under the run's lock, which the
// caller holds), so readers never see half a record.
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Config, StageName } from '../config/schema.js';
import { didYouMean } from '../config/suggest.js';
import { EXIT, PosttrainError, UsageError } from '../errors.js';
import { fsErrorCode, makeDir, readJson, writeError, writeJsonAtomic } from './atomic.js';
import { ArtifactError } from './errors.js';
import { acquireLock, isRunUnlocked, RunLockedError } from './lock.js';

export const RUN_FILE = 'run.json';

export type StageStatus = 'pending' | 'running' | 'ok' | 'failed' | 'cancelled' | 'interrupted';
/** `incomplete`: nothing failed or was interrupted, but some selected stage has not run yet
 * (e.g. after `stage grpo --resume` finished grpo while rlhf is still pending). */
export type RunStatus = 'running' | 'ok' | 'failed' | 'cancelled' | 'interrupted' | 'incomplete';
const RUN_STATUSES: readonly string[] = ['running', 'ok', 'failed', 'cancelled', 'interrupted', 'incomplete'];

export interface StageRecord {
  status: StageStatus;
  started: string | null;
  finished: string | null;
  /** Adapter folder this stage started from (lineage; relative to the run folder); null = the base model. */
  input_adapter: string | null;
  output_adapter: string | null;
  /** Checkpoint folder the stage resumed from, if it did. */
  resumed_from: string | null;
  steps: number | null;
  error: { code: string; message: string } | null;
  /** What the stage started from (pipeline/lineage.ts): its parent, that adapter's and its data's hashes. */
  inputs?: { parent: StageName | null; adapter_sha256: string | null; data_sha256: Record<string, string>; config_sha256?: string };
  /** sha256 of the adapter this stage wrote (weights + config), for its children's staleness checks. */
  output_sha256?: string | null;
  /** The config this stage ran with when `posttrain stage` changed it (--preset/--config/--set);
   * absent: the run's. The run's own config is never overwritten by one stage's changes. */
  config?: Config;
  /** The --set overrides of that change. */
  overrides?: string[];
}

export interface DataRecord {
  /** Absolute path of the user's file. */
  source: string;
  sha256: string;
  bytes: number;
  rows: number;
  format: string;
  /** `data/<target>.jsonl`, the canonical rows the sidecar reads (relative to the run folder; older runs: absolute). */
  canonical: string;
  /** Bad rows left out under `on_bad_rows: skip` (0 otherwise). */
  skipped: number;
  /** The source settings the snapshot was taken with (a changed one takes a new snapshot). */
  spec?: string;
}

export interface RunRecord {
  id: string;
  created: string;
  updated: string;
  status: RunStatus;
  preset: string | null;
  config_file: string | null;
  overrides: string[];
  stages_selected: StageName[];
  config: Config;
  versions: Record<string, string>;
  /** Earlier version sets, when a later attempt ran under other library versions (newest last). */
  versions_history?: { until: string; versions: Record<string, string> }[];
  data: Record<string, DataRecord>;
  stages: Partial<Record<StageName, StageRecord>>;
  fake_sidecar?: boolean;
}

export type RunInit = Omit<RunRecord, 'id' | 'created' | 'updated' | 'status' | 'stages'> & { id?: string };

/** No run with that id (or no runs at all) in the runs folder. */
export class RunNotFoundError extends PosttrainError {
  constructor(message: string, hint?: string) {
    super(message, { exitCode: EXIT.usage, hint });
  }
}

const RUN_ID = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

/** `YYYYMMDD-HHMMSS-xxxx` in UTC (so ids sort by time whatever the time zone), 4 random hex digits. */
export function newRunId(now: Date = new Date()): string {
  const p = (n: number) => String(n).padStart(2, '0');
  const date = `${now.getUTCFullYear()}${p(now.getUTCMonth() + 1)}${p(now.getUTCDate())}`;
  const time = `${p(now.getUTCHours())}${p(now.getUTCMinutes())}${p(now.getUTCSeconds())}`;
  return `${date}-${time}-${randomBytes(2).toString('hex')}`;
}

/** Whether `id` can name a run folder (no path separators, no `..`, no leading dot). */
export function isValidRunId(id: string): boolean {
  return RUN_ID.test(id) && id.length <= 200;
}

export function runDir(runsDir: string, id: string): string {
  return path.join(runsDir, id);
}

export function stageDir(runDir: string, stage: StageName): string {
  return path.join(runDir, 'stages', stage);
}

export function pendingStage(): StageRecord {
  return { status: 'pending', started: null, finished: null, input_adapter: null, output_adapter: null, resumed_from: null, steps: null, error: null };
}

/**
 * A run folder is private to its owner (0700, whatever the umask): it holds copies of the user's
 * training data, which may be private (a 0600 file must not become readable through its copy),
 * and checkpoints and samples of their model. Everything inside inherits that protection; the
 * runs folder itself is left to the user's umask.
 */
export const RUN_DIR_MODE = 0o700;

/** Create the run folder (and `data/`, `stages/`) and its run.json: status running, stages pending. */
export function createRun(runsDir: string, init: RunInit): { dir: string; record: RunRecord } {
  const { id: wanted, ...rest } = init;
  if (wanted !== undefined && !isValidRunId(wanted)) {
    throw new UsageError(`Invalid run id "${wanted}".`, 'use letters, digits, ".", "_" and "-" only, not starting with "." or "-"');
  }
  makeDir(runsDir);
  let id = wanted ?? newRunId();
  let dir = runDir(runsDir, id);
  for (let attempt = 0; ; attempt++) {
    try {
      makeDir(dir, { recursive: false, mode: RUN_DIR_MODE });
      break;
    } catch (err) {
      if (fsErrorCode(err) !== 'EEXIST') throw err;
      if (wanted !== undefined) throw new UsageError(`Run "${wanted}" already exists in ${runsDir}.`, `choose another id, or remove ${dir}`);
      if (attempt >= 20) throw writeError(dir, err);
      id = newRunId();
      dir = runDir(runsDir, id);
    }
  }
  const now = new Date().toISOString();
  const record: RunRecord = {
    id,
    created: now,
    updated: now,
    status: 'running',
    preset: rest.preset,
    config_file: rest.config_file,
    overrides: rest.overrides,
    stages_selected: rest.stages_selected,
    stages: Object.fromEntries(rest.stages_selected.map((s) => [s, pendingStage()])),
    data: rest.data,
    versions: rest.versions,
    ...(rest.fake_sidecar === undefined ? {} : { fake_sidecar: rest.fake_sidecar }),
    config: rest.config,
  };
  try {
    makeDir(path.join(dir, 'data'), { recursive: false });
    makeDir(path.join(dir, 'stages'), { recursive: false });
    writeJsonAtomic(path.join(dir, RUN_FILE), record);
  } catch (err) {
    fs.rmSync(dir, { recursive: true, force: true }); // no half-made run folders
    throw err;
  }
  return { dir, record };
}

/** The reason `value` is not a usable run record, or null when it is. */
function recordProblem(value: unknown): string | null {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return 'not a JSON object';
  const r = value as Record<string, unknown>;
  for (const key of ['id', 'created', 'updated'] as const) if (typeof r[key] !== 'string') return `"${key}" is missing or not a string`;
  if (typeof r.status !== 'string' || !RUN_STATUSES.includes(r.status)) return '"status" is missing or unknown';
  if (!Array.isArray(r.stages_selected)) return '"stages_selected" is missing';
  if (typeof r.stages !== 'object' || r.stages === null) return '"stages" is missing';
  return null;
}

/** Read and check `<dir>/run.json`; ArtifactError naming the file when it is missing or damaged. */
export function readRunRecord(dir: string): RunRecord {
  const file = path.join(dir, RUN_FILE);
  const value = readJson<unknown>(file);
  const problem = recordProblem(value);
  if (problem !== null) throw new ArtifactError(`${file} is not a run record (${problem}).`, 'the file is damaged; restore it or remove the run folder');
  return value as RunRecord;
}

function time(iso: string): number {
  const t = Date.parse(iso);
  return Number.isNaN(t) ? 0 : t;
}

interface Scan {
  runs: { dir: string; record: RunRecord }[];
  broken: { dir: string; reason: string }[];
}

function scan(runsDir: string): Scan {
  const out: Scan = { runs: [], broken: [] };
  let names: string[];
  try {
    names = fs.readdirSync(runsDir);
  } catch (err) {
    const code = fsErrorCode(err);
    if (code === 'ENOENT') return out;
    throw new ArtifactError(`Could not list ${runsDir}: ${err instanceof Error ? err.message : String(err)}.`, undefined, err);
  }
  for (const name of names) {
    if (name.startsWith('.')) continue;
    const dir = runDir(runsDir, name);
    try {
      if (!fs.statSync(dir).isDirectory()) continue;
    } catch {
      continue; // vanished, or a dangling link
    }
    if (!fs.existsSync(path.join(dir, RUN_FILE))) {
      out.broken.push({ dir, reason: `no ${RUN_FILE}` });
      continue;
    }
    try {
      out.runs.push({ dir, record: readRunRecord(dir) });
    } catch (err) {
      out.broken.push({ dir, reason: err instanceof Error ? err.message : String(err) });
    }
  }
  out.runs.sort((a, b) => time(b.record.created) - time(a.record.created) || (a.record.id < b.record.id ? 1 : -1));
  return out;
}

/** Every run, newest first, plus the folders whose run.json is missing or unreadable. */
export function listRunsDetailed(runsDir: string): { runs: RunRecord[]; broken: { dir: string; reason: string }[] } {
  const s = scan(runsDir);
  return { runs: s.runs.map((r) => r.record), broken: s.broken };
}

/** Every readable run, newest first. */
export function listRuns(runsDir: string): RunRecord[] {
  return listRunsDetailed(runsDir).runs;
}

/** Load a run by id, or the newest with `latest`. */
export function loadRun(runsDir: string, idOrLatest: string): { dir: string; record: RunRecord } {
  if (idOrLatest === 'latest') {
    const newest = scan(runsDir).runs[0];
    if (newest === undefined) throw new RunNotFoundError(`No runs in ${runsDir} yet.`, 'start one with `posttrain run`, or point runtime.runs_dir at the folder that holds your runs');
    return newest;
  }
  const dir = runDir(runsDir, idOrLatest);
  if (isValidRunId(idOrLatest) && fs.existsSync(dir)) {
    if (!fs.existsSync(path.join(dir, RUN_FILE))) throw new ArtifactError(`${dir} is not a run: it has no ${RUN_FILE}.`);
    return { dir, record: readRunRecord(dir) };
  }
  const ids = scan(runsDir).runs.map((r) => r.record.id);
  if (ids.length === 0) throw new RunNotFoundError(`No run "${idOrLatest}": ${runsDir} holds no runs yet.`, 'start one with `posttrain run`, or point runtime.runs_dir at the folder that holds your runs');
  const recent = ids.slice(0, 5).join(', ') + (ids.length > 5 ? `, … (${ids.length} in all)` : '');
  throw new RunNotFoundError(`No run "${idOrLatest}" in ${runsDir}.${didYouMean(idOrLatest, ids)}`, `recent runs: ${recent}; or use "latest"`);
}

/** Read-modify-write run.json atomically; bumps `updated`. The caller holds the run's lock. */
export function updateRun(dir: string, mutate: (r: RunRecord) => void): RunRecord {
  const record = readRunRecord(dir);
  mutate(record);
  record.updated = new Date().toISOString();
  writeJsonAtomic(path.join(dir, RUN_FILE), record);
  return record;
}

/** Patch one stage's record (created as pending first if absent). Undefined patch values are ignored. */
export function updateStage(dir: string, stage: StageName, patch: Partial<StageRecord>): RunRecord {
  const defined = Object.fromEntries(Object.entries(patch).filter(([, v]) => v !== undefined)) as Partial<StageRecord>;
  return updateRun(dir, (r) => {
    r.stages[stage] = { ...(r.stages[stage] ?? pendingStage()), ...defined };
  });
}

/**
 * A run that says `running` but has no live lock was abandoned (crash, kill -9, power loss):
 * mark it and its running stages `interrupted`. Returns whether run.json changed. Takes the
 * run's lock while doing so (a stale lock is thereby cleaned up), so call it before taking the
 * lock yourself: a run locked by a live process, this one included, is left alone.
 */
export function markInterruptedIfStale(dir: string): boolean {
  if (readRunRecord(dir).status !== 'running' || !isRunUnlocked(dir)) return false;
  let release: () => void;
  try {
    release = acquireLock(dir, 'mark-interrupted');
  } catch (err) {
    if (err instanceof RunLockedError) return false; // a process started working in it meanwhile
    throw err;
  }
  try {
    if (readRunRecord(dir).status !== 'running') return false;
    updateRun(dir, (r) => {
      r.status = 'interrupted';
      for (const s of Object.values(r.stages)) if (s !== undefined && s.status === 'running') s.status = 'interrupted';
    });
    return true;
  } finally {
    release();
  }
}

/** The config a stage runs with: its own when `posttrain stage` changed it, else the run's. */
export function stageConfig(record: RunRecord, stage: StageName): Config {
  return record.stages[stage]?.config ?? record.config;
}
