// The sidecar-side preflight: right after hello and before any stage, the sidecar checks what the
// selected stages will need without loading weights (model config and tokenizer, reward functions,
// device, vLLM, bitsandbytes). Problems of severity "error" stop the run before anything trains;
// warnings and notes are printed and kept in run.json.
import { type RunRecord, updateRun } from '../artifacts/index.js';
import type { PreflightProblem, PreflightResult } from '../bridge/protocol.js';
import { PreflightTimeoutError, type Sidecar } from '../bridge/sidecar.js';
import type { Config, StageName } from '../config/schema.js';
import { EXIT, InterruptedError, PosttrainError } from '../errors.js';
import type { Progress } from '../ui/progress.js';
import type { Interrupt } from './interrupt.js';
import { inRun } from './lineage.js';
import { sourceLines } from './preflight.js';
import type { DataTarget } from '../data/targets.js';

interface RowProblem {
  row: number;
  roles: string;
  reason: string;
}

/**
 * A problem about rows of the run's copy of a data file (`data: {target, rows: [{row, roles,
 * reason}], count}`, row 0-based there) restated with the user's file:line, which is what they
 * can open and fix. The copy left bad rows out (on_bad_rows: skip), so lines come from reading the
 * source again the same way; when it changed since the copy was taken, rows are named in the copy.
 */
async function locateRows(p: PreflightProblem, config: Config, data: RunRecord['data']): Promise<PreflightProblem> {
  const target = p.data?.target as DataTarget | undefined;
  const rows = p.data?.rows as RowProblem[] | undefined;
  const record = target ? data[target] : undefined;
  if (!target || !Array.isArray(rows) || rows.length === 0 || !record) return p;
  const lines = await sourceLines(config, target, record.sha256).catch(() => null);
  const at = (r: RowProblem) => (lines?.[r.row] !== undefined ? `${record.source}:${lines[r.row]}` : `the run's ${record.canonical} row ${r.row + 1}`);
  const count = typeof p.data?.count === 'number' ? p.data.count : rows.length;
  const head = p.message.replace(/ \(first: row .*\)$/, '');
  const more = count > rows.length ? [`        … and ${count - rows.length} more`] : [];
  return { ...p, message: [`${head}:`, ...rows.map((r) => `        ${at(r)}: roles ${r.roles}: ${r.reason}`), ...more].join('\n') };
}

/** What run.json keeps of the last preflight (and, when it failed, why the run failed). */
export interface PreflightRecord {
  preflight?: { ok: boolean; checked: string; stages: StageName[]; problems: PreflightProblem[] };
  error?: { code: string; message: string } | null;
}

const where = (p: PreflightProblem) => (p.stage ? `[${p.stage}]` : '[all stages]');

export function formatProblem(p: PreflightProblem): string {
  return `  - ${where(p)} ${p.code}: ${p.message}${p.fix ? `\n      fix: ${p.fix}` : ''}`;
}

/** The sidecar found problems that would make a selected stage fail: nothing was trained. Exit 2. */
export class PreflightError extends PosttrainError {
  constructor(readonly problems: PreflightProblem[]) {
    const errors = problems.filter((p) => p.severity === 'error');
    const head = `The sidecar's preflight check found ${errors.length} problem${errors.length === 1 ? '' : 's'}; no stage was started.`;
    super([head, ...errors.map(formatProblem)].join('\n'), {
      exitCode: EXIT.usage,
      hint: 'Fix each problem above (config, model folder, reward module or environment) and run again; `posttrain config` shows the resolved config.',
    });
  }
}

export interface PreflightOptions {
  sidecar: Sidecar;
  config: Config;
  stages: readonly StageName[];
  runDir: string;
  interrupt: Interrupt;
  progress: Progress;
  /** The run-level sidecar.log. */
  log: (line: string) => void;
  /** The run's data: conversational rows are rendered through the chat template by the sidecar. */
  data?: RunRecord['data'];
  timeoutMs?: number;
}

/** Runs the check; returns the updated run record, or null when the sidecar did not answer in time. */
export async function sidecarPreflight(o: PreflightOptions): Promise<RunRecord | null> {
  let result: PreflightResult;
  // Ctrl-C while the sidecar checks: stop it now (nothing to checkpoint yet).
  const off = o.interrupt.onCancel(() => void o.sidecar.kill());
  try {
    const paths = Object.fromEntries(Object.entries(o.data ?? {}).flatMap(([t, d]) => (d ? [[t, inRun(o.runDir, d.canonical) ?? '']] : [])));
    result = await o.sidecar.preflight(o.config, o.stages, o.timeoutMs ?? o.config.runtime.start_timeout_s * 1000, paths);
  } catch (e) {
    if (o.interrupt.requested) throw new InterruptedError('Interrupted before any stage started.');
    if (e instanceof PreflightTimeoutError) {
      // An older sidecar ignores the message type; the stages still check their own inputs.
      o.log(`[preflight] ${e.message}; going on without it`);
      o.progress.note(`warning: the sidecar did not answer the preflight check (${e.message}); each stage checks its own inputs`);
      return null;
    }
    throw e;
  } finally {
    off();
  }
  result = { ...result, problems: await Promise.all(result.problems.map((p) => locateRows(p, o.config, o.data ?? {}))) };
  for (const p of result.problems) o.log(`[preflight] ${p.severity} ${where(p)} ${p.code}: ${p.message}${p.fix ? ` (fix: ${p.fix})` : ''}`);
  for (const p of result.problems) if (p.severity !== 'error') o.progress.note(`${p.severity === 'warning' ? 'warning' : 'note'}: ${where(p)} ${p.message}`);
  const errors = result.problems.filter((p) => p.severity === 'error');
  // ok is the sidecar's word; an error-severity problem fails the check whatever ok says.
  const failed = !result.ok || errors.length > 0;
  const failure = failed ? new PreflightError(errors.length > 0 ? result.problems : [{ stage: null, code: 'preflight_failed', message: 'the sidecar reported the check as failed without details', severity: 'error', fix: null }]) : null;
  const record = updateRun(o.runDir, (r: RunRecord & PreflightRecord) => {
    r.preflight = { ok: !failed, checked: new Date().toISOString(), stages: [...o.stages], problems: result.problems };
    if (failure) r.error = { code: 'preflight_failed', message: failure.message };
    else if (r.error?.code === 'preflight_failed') delete r.error;
  });
  if (failure) throw failure;
  return record;
}
