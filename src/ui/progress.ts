// Progress reporting. This is the plain renderer: one line per state change and at most one
// metric line per second per stage, on stderr (stdout stays clean for --json and pipes).
import type { Config, StageName } from '../config/schema.js';

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

/** Metric keys worth a glance, per stage, in the order shown. */
export const KEY_METRICS: Record<StageName, string[]> = {
  sft: ['train/loss'],
  dpo: ['train/loss', 'rewards/margins', 'rewards/accuracies'],
  grpo: ['train/reward', 'train/kl'],
  rlhf: ['rm/train/loss', 'rm/eval/accuracy', 'train/reward', 'train/kl'],
};

const fmt = (v: number | null | undefined) => (v === null || v === undefined ? '–' : Math.abs(v) >= 1e4 || (Math.abs(v) < 1e-3 && v !== 0) ? v.toExponential(2) : v.toFixed(4));

export function totalSteps(config: Config, stage: StageName): number | null {
  if (stage === 'rlhf') {
    const { reward_model: rm, policy } = config.stages.rlhf;
    return rm.max_steps !== null && policy.max_steps !== null ? rm.max_steps + policy.max_steps : null;
  }
  return config.stages[stage].max_steps;
}

export function plainProgress(write: (text: string) => void, now: () => number = Date.now): Progress {
  const lastLine = new Map<StageName, number>();
  const totals = new Map<StageName, number | null>();
  const latest = new Map<StageName, { step: number; values: Record<string, number | null> }>();
  const line = (stage: StageName, step: number, values: Record<string, number | null>) => {
    const total = totals.get(stage);
    const shown = KEY_METRICS[stage].filter((k) => k in values).map((k) => `${k} ${fmt(values[k])}`);
    return `${stage}: step ${step}${total ? `/${total}` : ''}${shown.length ? `  ${shown.join('  ')}` : ''}\n`;
  };
  return {
    runStart({ runId, runDir, resume }) {
      write(`run ${runId}${resume ? ' (continuing)' : ''}: ${runDir}\n`);
    },
    sidecarState(state, detail) {
      if (state === 'starting') write(`starting the sidecar…${detail ? ` (${detail})` : ''}\n`);
    },
    stageStart(stage, config, resumedFrom) {
      totals.set(stage, totalSteps(config, stage));
      write(`${stage}: starting${resumedFrom ? ` (resuming from ${resumedFrom})` : ''}\n`);
    },
    state(stage, state, message) {
      write(`${stage}: ${state}${message ? ` – ${message}` : ''}\n`);
    },
    metric(stage, step, values) {
      const merged = { ...(latest.get(stage)?.step === step ? latest.get(stage)!.values : {}), ...values };
      latest.set(stage, { step, values: merged });
      const t = now();
      if (t - (lastLine.get(stage) ?? 0) < 1000) return;
      lastLine.set(stage, t);
      write(line(stage, step, merged));
    },
    log(stage, level, message) {
      if (level === 'warning' || level === 'error') write(`${stage}: ${level}: ${message}\n`);
    },
    alert(stage, a) {
      write(`${stage}: ${a.severity === 'fatal' ? 'STOPPING' : 'alert'}: step ${a.step}: ${a.message}\n${stage}:   hint: ${a.hint}\n`);
    },
    stageEnd(stage, status, wallS) {
      const l = latest.get(stage);
      if (l) write(line(stage, l.step, l.values));
      write(`${stage}: ${status} in ${wallS.toFixed(1)} s\n`);
    },
    note(text) {
      write(`${text}\n`);
    },
    runEnd() {},
  };
}
