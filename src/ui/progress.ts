// Progress reporting: the interface every renderer implements, what they share (key metrics,
// step totals), and the plain renderer for logs and pipes. The in-place terminal view is tty.ts,
// the --json event stream ndjson.ts, and select.ts picks one; all write progress to stderr except
// --json, whose events are stdout's only content.
import type { Config, StageName } from '../config/schema.js';
import { stageEntry } from '../stages/catalogue.js';
import { inert } from './inert.js';
import { formatDuration, type Phase, RunTracker } from './track.js';

/** A health rule that fired on the metric stream (see src/pipeline/health.ts). */
export interface HealthAlert {
  rule: string;
  /** fatal: the stage is stopped (NaN loss, or a rule named in monitor.stop_on / --stop-on). */
  severity: 'warning' | 'fatal';
  step: number;
  message: string;
  /** What to change, e.g. "lower stages.grpo.learning_rate or raise stages.grpo.beta". */
  hint: string;
}

/** What a renderer is told, in order: runStart, sidecarState…, per stage stageStart → … → stageEnd, runEnd. */
export interface Progress {
  runStart(info: { runId: string; runDir: string; stages: StageName[]; resume?: boolean }): void;
  /** The sidecar's life: starting (spawned, importing torch), ready (hello received), stopping. */
  sidecarState(state: 'starting' | 'ready' | 'stopping', detail: string | null): void;
  stageStart(stage: StageName, config: Config, resumedFrom: string | null): void;
  state(stage: StageName, state: string, message: string | null): void;
  metric(stage: StageName, step: number, values: Record<string, number | null>): void;
  log(stage: StageName, level: string, message: string): void;
  alert(stage: StageName, alert: HealthAlert): void;
  stageEnd(stage: StageName, status: string, wallS: number): void;
  note(text: string): void;
  /** Last call; status is the run's status after this command (ok, failed, interrupted…). */
  runEnd(info: { runDir: string; status: string }): void;
}

/** Metric keys worth a glance, per stage, in the order shown (the catalogue's `live`). */
export const keyMetrics = (stage: StageName): readonly string[] => stageEntry(stage).live;

/** The key metrics to show now: a multi-phase stage (RLHF) shows its current phase's keys. */
export const keyMetricsNow = (stage: StageName, phase: Phase | null): readonly string[] =>
  (phase && stageEntry(stage).phases?.[phase]?.live) || keyMetrics(stage);

export const fmt = (v: number | null | undefined) =>
  v === null || v === undefined ? '–' : !Number.isFinite(v) ? String(v) : Math.abs(v) >= 1e4 || (Math.abs(v) < 1e-3 && v !== 0) ? v.toExponential(2) : v.toFixed(4);

export function totalSteps(config: Config, stage: StageName): number | null {
  if (stage === 'rlhf') {
    const { reward_model: rm, policy } = config.stages.rlhf;
    return rm.max_steps !== null && policy.max_steps !== null ? rm.max_steps + policy.max_steps : null;
  }
  return config.stages[stage].max_steps;
}

/** An alert as text lines (no trailing newline); fatal ones say the stage is being stopped. */
export const alertText = (stage: StageName, a: HealthAlert) =>
  `${stage}: ${a.severity === 'fatal' ? 'STOPPING' : 'alert'}: step ${a.step}: ${a.message}\n${stage}:   hint: ${a.hint}`;

const wantsLog = (level: string) => level === 'warning' || level === 'error';

/**
 * The renderer for logs and pipes (CI, files): a line per state change and per stage at most one
 * metric line a second (always its first and last step), with step/total, elapsed time and ETA.
 */
export function plainProgress(write: (text: string) => void, now: () => number = Date.now): Progress {
  const track = new RunTracker(now);
  const lastLine = new Map<StageName, { t: number; what: string }>();
  const metricLine = (stage: StageName) => {
    const v = track.stages.get(stage)!;
    const shown = keyMetricsNow(stage, v.phase).filter((k) => k in v.values).map((k) => `${k} ${fmt(v.values[k])}`);
    const what = `${stage}: step ${v.step}${v.total ? `/${v.total}` : ''}${shown.length ? `  ${shown.join('  ')}` : ''}`;
    const eta = track.etaS(v);
    const elapsed = track.elapsedS(v);
    const clock = `${elapsed === null ? '' : `  elapsed ${formatDuration(elapsed)}`}${v.active && v.total !== null && v.step! < v.total ? `  eta ${eta === null ? '–' : formatDuration(eta)}` : ''}`;
    return { what, text: `${what}${clock}\n` };
  };
  const emit = (stage: StageName, force: boolean) => {
    if (track.stages.get(stage)?.step == null) return;
    const prev = lastLine.get(stage);
    const t = now();
    const l = metricLine(stage);
    if (prev && (force ? prev.what === l.what : t - prev.t < 1000)) return;
    lastLine.set(stage, { t, what: l.what });
    write(l.text);
  };
  return {
    runStart(info) {
      track.runStart(info);
      write(`run ${info.runId}${info.resume ? ' (continuing)' : ''}: ${info.runDir}\n`);
    },
    sidecarState(state, detail) {
      track.sidecarState(state, detail);
      if (state === 'starting') write(`starting the sidecar…${detail ? ` (${detail})` : ''}\n`);
      if (state === 'ready') {
        const after = track.sidecar.readyAfterMs;
        write(`sidecar ready${after === null ? '' : ` in ${formatDuration(after / 1000)}`}${detail ? ` (${detail})` : ''}\n`);
      }
    },
    stageStart(stage, config, resumedFrom) {
      track.stageStart(stage, totalSteps(config, stage), resumedFrom);
      lastLine.delete(stage);
      write(`${stage}: starting${resumedFrom ? ` (resuming from ${resumedFrom})` : ''}\n`);
    },
    state(stage, state, message) {
      track.state(stage, state, message);
      write(`${stage}: ${state}${message ? ` – ${message}` : ''}\n`);
    },
    metric(stage, step, values) {
      // The reward model's last line (its final eval accuracy) before RLHF's policy takes over.
      if (track.startsPolicy(stage, values)) emit(stage, true);
      track.metric(stage, step, values);
      emit(stage, false);
    },
    log(stage, level, message) {
      if (wantsLog(level)) write(`${stage}: ${level}: ${inert(message)}\n`);
    },
    alert(stage, a) {
      write(`${alertText(stage, a)}\n`);
    },
    stageEnd(stage, status, wallS) {
      track.stageEnd(stage, status);
      emit(stage, true);
      write(`${stage}: ${status} in ${wallS.toFixed(1)} s\n`);
    },
    note(text) {
      write(`${inert(text)}\n`);
    },
    runEnd({ status }) {
      track.runEnd(status);
    },
  };
}

/** `--progress none`: no progress, but what needs a reader still shows (notes, alerts, warnings). */
export function quietProgress(write: (text: string) => void): Progress {
  const nothing = () => {};
  return {
    runStart: nothing,
    sidecarState: nothing,
    stageStart: nothing,
    state: nothing,
    metric: nothing,
    log: (stage, level, message) => void (wantsLog(level) && write(`${stage}: ${level}: ${message}\n`)),
    alert: (stage, a) => write(`${alertText(stage, a)}\n`),
    stageEnd: nothing,
    note: (text) => write(`${text}\n`),
    runEnd: nothing,
  };
}
