// Health rules over a stage's metric stream: the failures that waste a run without crashing it
// (a NaN loss, GRPO groups with no reward variance, completions all cut at the length limit, a
// policy running away from its reference, DPO at chance). Pure and deterministic: the stage feeds
// every metric event in, and gets back the alerts that are new. Each rule fires at most once per
// stage, so a condition that persists is one alert, not one per step.
import type { Config, HealthRule, MonitorConfig, StageName } from '../config/schema.js';
import { HEALTH_RULES } from '../config/schema.js';
import { RunFailedError } from '../errors.js';
import { ruleApplies, stageEntry } from '../stages/catalogue.js';
import { stageCommand } from './commands.js';
import type { HealthAlert } from '../ui/progress.js';

export { HEALTH_RULES, type HealthRule };

type Values = Record<string, number | null>;

/** The last value of one metric per step, newest last, at most `keep` steps. */
class Series {
  private steps: number[] = [];
  readonly values: number[] = [];
  constructor(private readonly keep: number) {}

  /** Several events can carry the same step (eval, summaries): the step counts once, last value wins. */
  push(step: number, v: number): void {
    if (this.steps.length > 0 && this.steps[this.steps.length - 1] === step) {
      this.values[this.values.length - 1] = v;
      return;
    }
    this.steps.push(step);
    this.values.push(v);
    if (this.values.length > this.keep) {
      this.steps.shift();
      this.values.shift();
    }
  }

  /** How many of the newest values in a row satisfy `pred`. */
  streak(pred: (v: number) => boolean): number {
    let n = 0;
    for (let i = this.values.length - 1; i >= 0 && pred(this.values[i]!); i--) n++;
    return n;
  }
}

const mean = (xs: readonly number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
const num = (v: number | null | undefined): v is number => typeof v === 'number';
const fmt = (v: number) => (Number.isInteger(v) ? String(v) : Math.abs(v) >= 0.01 ? v.toFixed(3).replace(/\.?0+$/, '') : v.toPrecision(2));
const pct = (v: number) => `${Math.round(v * 100)}%`;

/** Config prefix of the stage's trainer (the policy phase, for RLHF): the catalogue's `trainer`. */
const trainerPrefix = (stage: StageName) => stageEntry(stage).trainer;

function valueAt(config: Config | undefined, path: string): unknown {
  let cur: unknown = config;
  for (const k of path.split('.')) {
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = (cur as Record<string, unknown>)[k];
  }
  return cur;
}

/** Whether a rule stops the stage under this config. */
export function isFatal(monitor: MonitorConfig, rule: HealthRule): boolean {
  return monitor[rule].fatal || monitor.stop_on.includes(rule) || monitor.stop_on.includes('all');
}

export class HealthMonitor {
  private readonly fired = new Set<HealthRule>();
  private readonly series = new Map<string, Series>();
  /** The alerts this monitor raised, in order. */
  readonly alerts: HealthAlert[] = [];

  /**
   * @param config the whole resolved config, when known: hints then quote current values
   *   ("raise stages.grpo.temperature (now 0.12)").
   * @param alreadyAlerted rules that already warned in an earlier attempt of this stage (a resume):
   *   they stay quiet, unless the rule is fatal now, since a fatal rule must be able to stop again.
   */
  constructor(
    readonly stage: StageName,
    private readonly monitor: MonitorConfig,
    private readonly config?: Config,
    alreadyAlerted: readonly string[] = [],
  ) {
    for (const r of alreadyAlerted) if ((HEALTH_RULES as readonly string[]).includes(r) && !isFatal(monitor, r as HealthRule)) this.fired.add(r as HealthRule);
  }

  /** Feed one metric event; returns the alerts it raised (each rule at most once per stage). */
  observe(step: number, values: Values): HealthAlert[] {
    const out: HealthAlert[] = [];
    const raise = (rule: HealthRule, message: string, hint: string) => {
      if (this.fired.has(rule) || !this.monitor[rule].enabled) return;
      this.fired.add(rule);
      const alert: HealthAlert = { rule, severity: isFatal(this.monitor, rule) ? 'fatal' : 'warning', step, message, hint };
      this.alerts.push(alert);
      out.push(alert);
    };
    // Which rules watch which stage is the catalogue's to say.
    const applies = (rule: HealthRule) => ruleApplies(this.stage, rule);
    if (applies('nan_loss')) this.nanLoss(step, values, raise);
    if (applies('reward_nonfinite')) this.rewardNonfinite(step, values, raise);
    if (applies('reward_std_zero')) this.rewardStdZero(step, values, raise);
    if (applies('completions_clipped')) this.completionsClipped(step, values, raise);
    if (applies('kl_runaway')) this.klRunaway(step, values, raise);
    if (applies('dpo_accuracy_stuck')) this.dpoAccuracyStuck(step, values, raise);
    return out;
  }

  /** `path (now v)` when the config is known, so a hint says where to start. */
  private key(path: string): string {
    const v = valueAt(this.config, path);
    return v === undefined ? path : `${path} (now ${JSON.stringify(v)})`;
  }

  private track(key: string, step: number, v: number, keep: number): Series {
    let s = this.series.get(key);
    if (!s) this.series.set(key, (s = new Series(keep)));
    s.push(step, v);
    return s;
  }

  private nanLoss(_step: number, values: Values, raise: Raise): void {
    const bad = Object.entries(values).find(([k, v]) => /loss$/.test(k) && num(v) && !Number.isFinite(v));
    if (!bad) return;
    const [k, v] = bad;
    // RLHF's reward-model phase has its own optimiser settings.
    const p = k.startsWith('rm/') ? 'stages.rlhf.reward_model' : trainerPrefix(this.stage);
    const dtype = valueAt(this.config, 'model.dtype');
    raise(
      'nan_loss',
      `${k} is ${v}: training diverged.`,
      `lower ${this.key(`${p}.learning_rate`)}, raise ${this.key(`${p}.warmup_ratio`)} or lower ${this.key(`${p}.max_grad_norm`)}` +
        (dtype === 'float16' ? '; model.dtype float16 overflows easily, use bfloat16 or float32' : '') +
        '; check the data for empty or extreme rows (`posttrain validate`).',
    );
  }

  private rewardNonfinite(_step: number, values: Values, raise: Raise): void {
    for (const [k, v] of Object.entries(values)) {
      const fn = /^rewards\/(.+)\/nonfinite$/.exec(k)?.[1];
      if (fn === undefined || !num(v) || v <= 0) continue;
      raise(
        'reward_nonfinite',
        `${k} is ${fmt(v)}: reward function ${fn} returned NaN or inf for ${pct(v)} of completions (dropped, as if it returned None); the sidecar's warning above names the first one.`,
        `fix the function in stages.grpo.reward_funcs to return finite numbers (None where it does not apply), or set monitor.reward_nonfinite.fatal false to train on the other rewards.`,
      );
      return;
    }
  }

  private rewardStdZero(step: number, values: Values, raise: Raise): void {
    const rule = this.monitor.reward_std_zero;
    const frac = values['train/frac_reward_zero_std'];
    const std = values['train/reward_std'];
    if (!num(frac) && !num(std)) return;
    const flat = (num(frac) && frac >= rule.fraction) || (num(std) && std === 0);
    const s = this.track('reward_std_zero', step, flat ? 1 : 0, rule.steps);
    if (s.streak((x) => x === 1) < rule.steps) return;
    const p = trainerPrefix(this.stage);
    const source =
      this.stage === 'grpo'
        ? `check that the reward functions (stages.grpo.reward_funcs) can score completions of one prompt differently — one that is always 0 or always 1 on this data gives no signal`
        : 'check that the reward model separates replies (rm/eval/accuracy well above 0.5)';
    raise(
      'reward_std_zero',
      `every group of completions got the same reward for ${rule.steps} logged steps in a row (train/frac_reward_zero_std ${num(frac) ? fmt(frac) : '–'}, train/reward_std ${num(std) ? fmt(std) : '–'}): all advantages are 0, so ${this.stage} learns nothing.`,
      `raise ${this.key(`${p}.temperature`)} or ${this.key(`${p}.num_generations`)} so completions differ; ${source}.`,
    );
  }

  private completionsClipped(step: number, values: Values, raise: Raise): void {
    const rule = this.monitor.completions_clipped;
    const r = values['completions/clipped_ratio'];
    if (!num(r)) return;
    const s = this.track('completions_clipped', step, r, rule.steps);
    if (s.streak((x) => x >= rule.ratio) < rule.steps) return;
    const p = trainerPrefix(this.stage);
    const len = values['completions/mean_length'];
    const brevity =
      this.stage === 'grpo'
        ? 'or reward brevity (a `length` entry in stages.grpo.reward_funcs, args {target: …})'
        : 'or teach the model to stop first (SFT on completions that end with EOS)';
    raise(
      'completions_clipped',
      `${pct(r)} of completions hit ${p}.max_completion_length for ${rule.steps} logged steps in a row${num(len) ? ` (mean length ${fmt(len)})` : ''}: rewards are judging cut-off text.`,
      `raise ${this.key(`${p}.max_completion_length`)}, ${brevity}.`,
    );
  }

  private klRunaway(step: number, values: Values, raise: Raise): void {
    const rule = this.monitor.kl_runaway;
    const kl = values['train/kl'];
    if (!num(kl) || !Number.isFinite(kl)) return;
    const s = this.track('kl_runaway', step, kl, rule.steps * 2);
    const p = trainerPrefix(this.stage);
    const hint = `raise ${this.key(`${p}.beta`)} to hold the policy nearer the reference, or lower ${this.key(`${p}.learning_rate`)}.`;
    if (kl > rule.max) {
      raise('kl_runaway', `train/kl is ${fmt(kl)} (above ${fmt(rule.max)} nats per token): the policy has drifted far from the reference model.`, hint);
      return;
    }
    if (s.values.length < rule.steps * 2) return;
    const before = mean(s.values.slice(0, rule.steps));
    const recent = mean(s.values.slice(rule.steps));
    if (recent >= rule.growth_min && recent >= rule.growth * before) {
      raise(
        'kl_runaway',
        `train/kl is growing fast: mean ${fmt(recent)} over the last ${rule.steps} logged steps, ${before > 0 ? `${fmt(recent / before)}×` : 'up from 0 over'} the ${rule.steps} before.`,
        hint,
      );
    }
  }

  private dpoAccuracyStuck(step: number, values: Values, raise: Raise): void {
    const rule = this.monitor.dpo_accuracy_stuck;
    const acc = values['rewards/accuracies'];
    if (!num(acc) || step <= rule.warmup_steps) return;
    // Per-step accuracy over a small batch is coarse (batch 4: 0, .25, .5, …), so the window mean
    // is what is compared with chance, not each step.
    const s = this.track('dpo_accuracy_stuck', step, acc, rule.steps);
    if (s.values.length < rule.steps) return;
    const m = mean(s.values);
    if (Math.abs(m - 0.5) > rule.tolerance) return;
    raise(
      'dpo_accuracy_stuck',
      `rewards/accuracies averaged ${fmt(m)} over the last ${rule.steps} logged steps: the policy prefers chosen over rejected no more often than chance.`,
      `check that chosen and rejected differ and are not swapped in part of the data (\`posttrain validate dpo <file>\`); raise ${this.key('stages.dpo.learning_rate')} or ${this.key('stages.dpo.beta')}.`,
    );
  }
}

type Raise = (rule: HealthRule, message: string, hint: string) => void;

/** A fatal health alert stopped the stage. Exit 1, like any failed stage. */
export class HealthStopError extends RunFailedError {
  /** The stage's error code in run.json and summary.json. */
  readonly code: string;

  constructor(
    readonly stage: StageName,
    readonly alert: HealthAlert,
    opts: { runDir: string; checkpoint: boolean; monitor: MonitorConfig },
  ) {
    const rule = alert.rule as HealthRule;
    const m = opts.monitor;
    // What made it fatal is what to undo for a warning instead.
    const relax = [
      ...(m[rule]?.fatal ? [`--set monitor.${rule}.fatal=false`] : []),
      ...(m.stop_on.includes(rule) || m.stop_on.includes('all') ? [`leave ${rule} out of monitor.stop_on / --stop-on`] : []),
    ].join(' and ');
    const over = `\`${stageCommand(stage, opts.runDir)}\` with your --preset/--config and --set`;
    super(
      `Stage ${stage} was stopped at step ${alert.step} by health rule ${rule}: ${alert.message}`,
      `${alert.hint.replace(/\.$/, '')}. ` +
        (opts.checkpoint
          ? `Then start the stage over with that change (${over}), or continue from the checkpoint saved at the stop: \`${stageCommand(stage, opts.runDir, { resume: true })}\` (it stops again if the rule fires again).`
          : `Then start the stage over with that change: ${over}.`) +
        (relax ? ` To only warn: ${relax}.` : ''),
    );
    this.code = `health/${rule}`;
  }
}
