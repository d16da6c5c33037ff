// Everything a report shows, read from one run folder. Read-only and lenient: a report is most
// useful exactly when a run went wrong, so a damaged metrics line, a missing summary.json, a
// half-written samples file or a stage still running become notes in the report, never errors.
// Only a run that cannot be found (RunNotFoundError, from loadRun) or whose run.json is unreadable
// stops the command.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { decodeMetric, isRunUnlocked, type MetricRecord, type RunRecord, type StageRecord, stagePaths } from '../artifacts/index.js';
import { STAGES, type StageName } from '../config/schema.js';

export interface Sample {
  prompt: string;
  before: string;
  after: string;
}

/** One line of `stages/<s>/alerts.jsonl` (written by the health checks while a stage trains). */
export interface Alert {
  step: number | null;
  rule: string;
  severity: string;
  message: string;
  hint: string;
  ts: number | string | null;
}

/** Lines of a JSONL file that were read, and how many were not what they should be. */
interface Lines<T> {
  rows: T[];
  bad: number;
}

export interface StageData {
  name: StageName;
  /** The stage's entry in run.json (absent for a stage that was never selected). */
  record: StageRecord | undefined;
  metrics: MetricRecord[];
  /** metrics.jsonl lines that are not metric records (damage, or a line being written right now). */
  badMetricLines: number;
  /** summary.json, written when the stage ends; null while it runs or when it is unreadable. */
  summary: Record<string, unknown> | null;
  samples: Sample[];
  badSampleLines: number;
  alerts: Alert[];
  badAlertLines: number;
}

export interface RunData {
  dir: string;
  record: RunRecord;
  /** run.json says running but no live process holds the lock (crashed or killed). */
  abandoned: boolean;
  /** Stages that were selected or have a record, in pipeline order. */
  stages: StageData[];
}

/** File text, or null when it is missing or unreadable (shown as absent rather than stopping the report). */
function readText(file: string): string | null {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return null;
  }
}

/** Parse each non-empty line with `parse`; lines it rejects (null) are counted, not thrown. */
function readJsonl<T>(file: string, parse: (line: string) => T | null): Lines<T> {
  const text = readText(file);
  const out: Lines<T> = { rows: [], bad: 0 };
  if (text === null) return out;
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    const row = parse(line);
    if (row === null) out.bad++;
    else out.rows.push(row);
  }
  return out;
}

function jsonObject(line: string): Record<string, unknown> | null {
  try {
    const v: unknown = JSON.parse(line);
    return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}

const str = (v: unknown): string => (typeof v === 'string' ? v : v === undefined || v === null ? '' : JSON.stringify(v));

function parseSample(line: string): Sample | null {
  const o = jsonObject(line);
  if (o === null || !('prompt' in o)) return null;
  return { prompt: str(o.prompt), before: str(o.before), after: str(o.after) };
}

function parseAlert(line: string): Alert | null {
  const o = jsonObject(line);
  if (o === null || typeof o.rule !== 'string' || typeof o.message !== 'string') return null;
  return {
    step: typeof o.step === 'number' ? o.step : null,
    rule: o.rule,
    severity: typeof o.severity === 'string' ? o.severity : 'warning',
    message: o.message,
    hint: str(o.hint),
    ts: typeof o.ts === 'number' || typeof o.ts === 'string' ? o.ts : null,
  };
}

function readSummary(file: string): Record<string, unknown> | null {
  const text = readText(file);
  return text === null ? null : jsonObject(text);
}

function collectStage(runDir: string, name: StageName, record: StageRecord | undefined): StageData {
  const p = stagePaths(runDir, name);
  const metrics = readJsonl(p.metrics, decodeMetric);
  const samples = readJsonl(join(p.dir, 'samples.jsonl'), parseSample);
  const alerts = readJsonl(join(p.dir, 'alerts.jsonl'), parseAlert);
  return {
    name,
    record,
    metrics: metrics.rows,
    badMetricLines: metrics.bad,
    summary: readSummary(p.summary),
    samples: samples.rows,
    badSampleLines: samples.bad,
    alerts: alerts.rows,
    badAlertLines: alerts.bad,
  };
}

/** Read a run folder whose run.json was already loaded (loadRun). */
export function collectRun(dir: string, record: RunRecord): RunData {
  const stages = STAGES.filter((s) => record.stages_selected.includes(s) || record.stages[s] !== undefined).map((s) => collectStage(dir, s, record.stages[s]));
  let abandoned = false;
  if (record.status === 'running') {
    try {
      abandoned = isRunUnlocked(dir);
    } catch {
      abandoned = false; // an unreadable lock: say nothing rather than guess
    }
  }
  return { dir, record, abandoned, stages };
}
