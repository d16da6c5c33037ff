// `--json`: every progress event as one JSON object per line on stdout, for scripts. The schema
// is docs/PROGRESS.md. Times are Unix seconds like metrics.jsonl's `ts`; non-finite numbers are
// written as the strings "NaN", "Infinity" and "-Infinity", exactly as metrics.jsonl writes them
// (JSON has no such numbers, and a diverging loss is what a watcher most needs to see).
import type { Progress } from './progress.js';
import { totalSteps } from './progress.js';

/** Non-finite numbers anywhere in an event become strings (metrics.ts's encoding). */
const finite = (_key: string, v: unknown) => (typeof v === 'number' && !Number.isFinite(v) ? String(v) : v);

/** One event line: `event` first, then `ts`, then the fields. */
export function ndjsonLine(event: string, fields: Record<string, unknown>, nowMs: number = Date.now()): string {
  return `${JSON.stringify({ event, ts: nowMs / 1000, ...fields }, finite)}\n`;
}

/** The last line of a failed command in --json mode (written by src/cli/main.ts, which owns exit codes). */
export interface ErrorEvent {
  /** Machine-readable kind: the error class in snake case (config_error, sidecar_crashed_error, …), usage_error for bad flags, an OS code (ENOSPC), or internal. */
  code: string;
  message: string;
  hint: string | null;
  exit_code: number;
}

export function ndjsonProgress(write: (text: string) => void, now: () => number = Date.now): Progress {
  let runId: string | null = null;
  const emit = (event: string, fields: Record<string, unknown>) => write(ndjsonLine(event, fields, now()));
  return {
    runStart({ runId: id, runDir, stages, resume }) {
      runId = id;
      emit('run_start', { run_id: id, run_dir: runDir, stages, resume: Boolean(resume) });
    },
    sidecarState(state, detail) {
      emit('sidecar', { state, detail });
    },
    stageStart(stage, config, resumedFrom) {
      emit('stage_start', { stage, total_steps: totalSteps(config, stage), resumed_from: resumedFrom });
    },
    state(stage, state, message) {
      emit('state', { stage, state, message });
    },
    metric(stage, step, values) {
      emit('metric', { stage, step, values });
    },
    log(stage, level, message) {
      // debug is the sidecar's chatter (it stays in the stage's sidecar.log); info and up are few.
      if (level !== 'debug') emit('log', { stage, level, message });
    },
    alert(stage, a) {
      emit('alert', { stage, rule: a.rule, severity: a.severity, step: a.step, message: a.message, hint: a.hint });
    },
    stageEnd(stage, status, wallS) {
      emit('stage_end', { stage, status, wall_s: wallS });
    },
    note(text) {
      emit('note', { level: /^warning\b/.test(text) ? 'warning' : 'info', message: text.trim() });
    },
    runEnd({ runDir, status }) {
      emit('run_end', { run_id: runId, run_dir: runDir, status });
    },
  };
}
