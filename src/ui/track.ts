// What the live renderers (TTY and plain) know about a run at any moment: per stage its status,
// step, total, clock, ETA and the latest value of every metric. Kept apart from drawing so both
// renderers agree on the numbers, and so those numbers are tested once.
import type { StageName } from '../config/schema.js';
import { firstPhase, type Phase } from '../stages/catalogue.js';

export type { Phase };

export interface StageView {
  stage: StageName;
  /** pending, starting, resuming, a sidecar state (loading_model, training, saving, …), then the stageEnd status. */
  status: string;
  /** The sidecar's message with its last state ("reward model" while saving it). */
  detail: string | null;
  /** True from stageStart until stageEnd (or runEnd, for a stage the sidecar died in). */
  active: boolean;
  step: number | null;
  total: number | null;
  startedAt: number | null;
  endedAt: number | null;
  /** Latest value per key: evaluation metrics come on other steps than training ones and stay shown. */
  values: Record<string, number | null>;
  /** RLHF only: which of its two trainers the metrics come from. */
  phase: Phase | null;
  /** Recent (time, step) pairs for the step rate; restarted when RLHF changes phase. */
  samples: { t: number; step: number }[];
}

export type SidecarView = { state: 'none' | 'starting' | 'ready' | 'stopping'; since: number; readyAfterMs: number | null; detail: string | null };

/** How many recent steps the rate is taken over: recent enough to follow a change of pace. */
const RATE_WINDOW = 20;

export class RunTracker {
  runId: string | null = null;
  runDir: string | null = null;
  resume = false;
  startedAt: number | null = null;
  endedAt: number | null = null;
  status: string | null = null;
  sidecar: SidecarView = { state: 'none', since: 0, readyAfterMs: null, detail: null };
  readonly stages = new Map<StageName, StageView>();

  constructor(private readonly now: () => number) {}

  runStart(info: { runId: string; runDir: string; stages: StageName[]; resume?: boolean }): void {
    this.runId = info.runId;
    this.runDir = info.runDir;
    this.resume = Boolean(info.resume);
    this.startedAt = this.now();
    for (const s of info.stages) this.view(s);
  }

  sidecarState(state: 'starting' | 'ready' | 'stopping', detail: string | null): void {
    const t = this.now();
    const readyAfterMs = state === 'ready' && this.sidecar.state === 'starting' ? t - this.sidecar.since : this.sidecar.readyAfterMs;
    this.sidecar = { state, since: t, readyAfterMs, detail };
  }

  /** `total`: totalSteps(config, stage) from progress.ts (null when the stage is bound by epochs). */
  stageStart(stage: StageName, total: number | null, resumedFrom: string | null): void {
    const v = this.view(stage);
    Object.assign(v, {
      status: resumedFrom ? 'resuming' : 'starting',
      detail: null,
      active: true,
      step: null,
      total,
      startedAt: this.now(),
      endedAt: null,
      values: {},
      phase: firstPhase(stage),
      samples: [],
    } satisfies Partial<StageView>);
  }

  state(stage: StageName, state: string, message: string | null): void {
    const v = this.view(stage);
    v.status = state;
    v.detail = message;
  }

  /** RLHF's policy phase starts with the first metric that is not the reward model's (`rm/…`). */
  startsPolicy(stage: StageName, values: Record<string, number | null>): boolean {
    return this.stages.get(stage)?.phase === 'reward_model' && Object.keys(values).some((k) => !k.startsWith('rm/'));
  }

  metric(stage: StageName, step: number, values: Record<string, number | null>): void {
    const v = this.view(stage);
    if (this.startsPolicy(stage, values)) {
      v.phase = 'policy';
      v.samples = [];
    }
    Object.assign(v.values, values);
    v.step = Math.max(v.step ?? 0, step);
    const last = v.samples[v.samples.length - 1];
    if (!last || step > last.step) {
      v.samples.push({ t: this.now(), step });
      if (v.samples.length > RATE_WINDOW) v.samples.shift();
    }
  }

  stageEnd(stage: StageName, status: string): void {
    const v = this.view(stage);
    v.status = status;
    v.detail = null;
    v.active = false;
    v.endedAt = this.now();
  }

  /**
   * A stage still active at the end lost its sidecar (no stageEnd came): it takes the run's
   * status. A stage that never started says so.
   */
  runEnd(status: string): void {
    this.status = status;
    this.endedAt = this.now();
    for (const v of this.stages.values()) {
      if (v.active) this.stageEnd(v.stage, status === 'ok' ? 'failed' : status);
      else if (v.startedAt === null) v.status = 'not run';
    }
  }

  /** Seconds since the stage started (frozen at its end); null before it starts. */
  elapsedS(v: StageView): number | null {
    return v.startedAt === null ? null : ((v.endedAt ?? this.now()) - v.startedAt) / 1000;
  }

  /**
   * Seconds left at the recent step rate, counting down between steps; null (unknown) until two
   * steps have arrived, when the total is unknown (epoch-bound stages), and during RLHF's
   * reward-model phase: its total includes the policy's steps, whose pace (generation) is
   * nothing like the reward model's, so any number would be a guess.
   */
  etaS(v: StageView): number | null {
    if (!v.active || v.total === null || v.step === null || v.samples.length < 2 || v.phase === 'reward_model') return null;
    const first = v.samples[0]!;
    const last = v.samples[v.samples.length - 1]!;
    if (last.t <= first.t) return null;
    const perMs = (last.step - first.step) / (last.t - first.t);
    const left = Math.max(0, v.total - v.step) / perMs - (this.now() - last.t);
    return Math.max(0, left / 1000);
  }

  private view(stage: StageName): StageView {
    let v = this.stages.get(stage);
    if (!v) {
      v = { stage, status: 'pending', detail: null, active: false, step: null, total: null, startedAt: null, endedAt: null, values: {}, phase: null, samples: [] };
      this.stages.set(stage, v);
    }
    return v;
  }
}

/** 3.2s, 42s, 4m05s, 1h02m: short enough for a status line. */
export function formatDuration(s: number): string {
  if (s < 10) return `${s.toFixed(1)}s`;
  if (s < 60) return `${Math.floor(s)}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(Math.floor(s % 60)).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}
