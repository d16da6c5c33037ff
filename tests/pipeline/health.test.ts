// Health rules over the metric stream: each rule on synthetic streams (fires, once, honours its
// settings), real smoke-run streams as negative controls, and the controller path end to end
// against the fake sidecar (a fatal alert stops the stage with a checkpoint; resume finishes it).
import { existsSync, mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { newestCompleteCheckpoint, readMetrics } from '../../src/artifacts/index.js';
import { resolveConfig } from '../../src/config/resolve.js';
import { type Config, ConfigSchema, type StageName } from '../../src/config/schema.js';
import { ConfigError, EXIT, UsageError } from '../../src/errors.js';
import { stopOnOverride } from '../../src/cli/options.js';
import { HEALTH_RULES, HealthMonitor, HealthStopError } from '../../src/pipeline/health.js';
import type { HealthAlert } from '../../src/ui/progress.js';
import { cli, fakeEnv, readJson, tmp } from '../helpers/cli.js';

const FIXTURES = join(__dirname, '..', 'fixtures', 'health');

/** The smoke preset's config with `monitor` overrides. */
function config(monitor: Record<string, unknown> = {}): Config {
  return resolveConfig({ preset: 'smoke', set: [`monitor=${JSON.stringify(monitor)}`], cwd: process.cwd() }).config;
}

type Row = [step: number, values: Record<string, number | null>];

function replay(stage: StageName, rows: Row[], c: Config = config()): HealthAlert[] {
  const m = new HealthMonitor(stage, c.monitor, c);
  return rows.flatMap(([step, values]) => m.observe(step, values));
}

/** `n` steps from `from`, each with the values `f(step)`. */
const steps = (from: number, n: number, f: (s: number) => Record<string, number | null>): Row[] => Array.from({ length: n }, (_, i) => [from + i, f(from + i)]);

const smoke = (stage: StageName): Row[] => readMetrics(join(FIXTURES, `${stage}.metrics.jsonl`)).map((r) => [r.step, r.values]);

describe('real smoke-run streams (negative controls)', () => {
  it.each(['sft', 'dpo', 'grpo'] as const)('%s: no alert under the defaults', (stage) => {
    expect(smoke(stage).length).toBeGreaterThan(25);
    expect(replay(stage, smoke(stage))).toEqual([]);
  });

  it('dpo: no accuracy alert even with the warm-up and window shortened so the rule runs', () => {
    expect(replay('dpo', smoke('dpo'), config({ dpo_accuracy_stuck: { warmup_steps: 5, steps: 10 } }))).toEqual([]);
  });

  it('rlhf: the random-init policy hits max_completion_length (a true alert), once, as a warning', () => {
    const alerts = replay('rlhf', smoke('rlhf'));
    expect(alerts).toHaveLength(1);
    // clipped_ratio 1.0 at policy steps 104..108 is the first run of 5.
    expect(alerts[0]).toMatchObject({ rule: 'completions_clipped', severity: 'warning', step: 108 });
    expect(alerts[0]!.hint).toMatch(/raise stages\.rlhf\.policy\.max_completion_length \(now 16\)/);
  });
});

describe('nan_loss', () => {
  it('fires once, fatal by default, on the first non-finite *loss', () => {
    const rows: Row[] = [[1, { 'train/loss': 2.1 }], [2, { 'train/loss': Number.NaN }], [3, { 'train/loss': Number.POSITIVE_INFINITY }], [4, { 'eval/loss': Number.NaN }]];
    const alerts = replay('sft', rows);
    expect(alerts).toHaveLength(1);
    expect(alerts[0]).toMatchObject({ rule: 'nan_loss', severity: 'fatal', step: 2 });
    expect(alerts[0]!.message).toMatch(/train\/loss is NaN/);
    expect(alerts[0]!.hint).toMatch(/lower stages\.sft\.learning_rate \(now 0\.005\)/);
  });

  it.each([
    ['eval/loss', -Infinity, 'dpo', 'stages.dpo.learning_rate'],
    ['train/train_loss', Infinity, 'grpo', 'stages.grpo.learning_rate'],
    ['rm/train/loss', NaN, 'rlhf', 'stages.rlhf.reward_model.learning_rate'],
    ['train/loss', NaN, 'rlhf', 'stages.rlhf.policy.learning_rate'],
  ] as const)('%s = %s in %s names %s', (key, v, stage, hintKey) => {
    const alerts = replay(stage, [[7, { [key]: v }]]);
    expect(alerts).toHaveLength(1);
    expect(alerts[0]!.hint).toContain(hintKey);
  });

  it('ignores finite, null and non-loss values; fatal: false warns; enabled: false is silent', () => {
    const rows: Row[] = [[1, { 'train/loss': null, 'train/grad_norm': Number.NaN, 'train/reward': Number.POSITIVE_INFINITY }], [2, { 'train/loss': Number.NaN }]];
    expect(replay('sft', rows.slice(0, 1))).toEqual([]);
    expect(replay('sft', rows, config({ nan_loss: { fatal: false } }))).toMatchObject([{ rule: 'nan_loss', severity: 'warning', step: 2 }]);
    expect(replay('sft', rows, config({ nan_loss: { enabled: false } }))).toEqual([]);
  });

  it('float16 adds the dtype to the hint', () => {
    const c = resolveConfig({ preset: 'smoke', set: ['model.dtype=float16', 'runtime.device=auto'], cwd: process.cwd() }).config;
    expect(replay('sft', [[1, { 'train/loss': Number.NaN }]], c)[0]!.hint).toMatch(/model\.dtype float16/);
  });
});

describe('reward_nonfinite', () => {
  it('fires, fatal by default, on the first step a reward function had NaN/inf, naming it; zero shares are quiet', () => {
    const rows: Row[] = [
      [1, { 'rewards/format/nonfinite': 0, 'rewards/badrewards.nan/nonfinite': 0 }],
      [2, { 'rewards/format/nonfinite': 0, 'rewards/badrewards.nan/nonfinite': 0.25 }],
      [3, { 'rewards/badrewards.nan/nonfinite': 1 }],
    ];
    const alerts = replay('grpo', rows);
    expect(alerts).toHaveLength(1);
    expect(alerts[0]).toMatchObject({ rule: 'reward_nonfinite', severity: 'fatal', step: 2 });
    expect(alerts[0]!.message).toMatch(/reward function badrewards\.nan returned NaN or inf for 25% of completions/);
    expect(alerts[0]!.hint).toMatch(/monitor\.reward_nonfinite\.fatal false/);
    expect(replay('grpo', rows, config({ reward_nonfinite: { fatal: false } }))[0]!.severity).toBe('warning');
    expect(replay('grpo', steps(1, 5, () => ({ 'rewards/format/nonfinite': 0 })))).toEqual([]);
  });
});

describe('reward_std_zero', () => {
  const flat = { 'train/frac_reward_zero_std': 1, 'train/reward_std': 0.3 };
  const fine = { 'train/frac_reward_zero_std': 0.25, 'train/reward_std': 0.4 };

  it('fires on the 10th flat step in a row, once, with GRPO hints', () => {
    const alerts = replay('grpo', [...steps(1, 9, () => flat), [10, fine], ...steps(11, 15, () => flat)]);
    expect(alerts).toHaveLength(1);
    expect(alerts[0]).toMatchObject({ rule: 'reward_std_zero', severity: 'warning', step: 20 });
    expect(alerts[0]!.hint).toMatch(/stages\.grpo\.temperature \(now 0\.12\).*stages\.grpo\.num_generations \(now 8\).*stages\.grpo\.reward_funcs/);
  });

  it('reward_std 0 counts as flat; fraction and steps are honoured; rlhf names the policy keys', () => {
    expect(replay('grpo', steps(1, 10, () => ({ 'train/reward_std': 0 })))).toMatchObject([{ step: 10 }]);
    expect(replay('grpo', steps(1, 10, () => ({ 'train/frac_reward_zero_std': 0.95 })))).toEqual([]);
    expect(replay('grpo', steps(1, 10, () => ({ 'train/frac_reward_zero_std': 0.95 })), config({ reward_std_zero: { fraction: 0.9 } }))).toHaveLength(1);
    expect(replay('grpo', steps(1, 3, () => flat), config({ reward_std_zero: { steps: 3 } }))).toMatchObject([{ step: 3 }]);
    expect(replay('rlhf', steps(101, 10, () => flat))[0]!.hint).toMatch(/stages\.rlhf\.policy\.temperature/);
  });

  it('does not apply to sft or dpo', () => {
    expect(replay('dpo', steps(1, 30, () => flat))).toEqual([]);
  });
});

describe('completions_clipped', () => {
  it('fires after 5 steps in a row at ratio 1.0, once; 0.99 is not clipped', () => {
    const rows = [...steps(1, 4, () => ({ 'completions/clipped_ratio': 1 })), [5, { 'completions/clipped_ratio': 0.99 }] as Row, ...steps(6, 12, () => ({ 'completions/clipped_ratio': 1, 'completions/mean_length': 256 }))];
    const alerts = replay('grpo', rows);
    expect(alerts).toHaveLength(1);
    expect(alerts[0]).toMatchObject({ rule: 'completions_clipped', step: 10 });
    expect(alerts[0]!.message).toMatch(/100% of completions hit stages\.grpo\.max_completion_length .*mean length 256/);
    expect(alerts[0]!.hint).toMatch(/raise stages\.grpo\.max_completion_length \(now 16\).*length/);
  });

  it('several events at one step count as one step', () => {
    const rows: Row[] = [1, 1, 1, 2, 2, 2, 3].map((s) => [s, { 'completions/clipped_ratio': 1 }]);
    expect(replay('grpo', rows)).toEqual([]);
  });

  it('ratio and steps are honoured', () => {
    expect(replay('grpo', steps(1, 2, () => ({ 'completions/clipped_ratio': 0.9 })), config({ completions_clipped: { ratio: 0.8, steps: 2 } }))).toMatchObject([{ step: 2 }]);
  });
});

describe('kl_runaway', () => {
  it('fires when train/kl passes max, with beta and learning_rate in the hint', () => {
    const alerts = replay('grpo', [[1, { 'train/kl': 3 }], [2, { 'train/kl': 12 }], [3, { 'train/kl': 40 }]]);
    expect(alerts).toHaveLength(1);
    expect(alerts[0]).toMatchObject({ rule: 'kl_runaway', step: 2 });
    expect(alerts[0]!.hint).toBe('raise stages.grpo.beta (now 0.04) to hold the policy nearer the reference, or lower stages.grpo.learning_rate (now 0.003).');
    expect(replay('grpo', [[1, { 'train/kl': 12 }]], config({ kl_runaway: { max: 20 } }))).toEqual([]);
  });

  it('fires when the recent window mean is growth× the one before, above growth_min', () => {
    const rows = [...steps(1, 10, () => ({ 'train/kl': 0.5 })), ...steps(11, 15, () => ({ 'train/kl': 3 }))];
    // Step 20 completes two windows: recent mean 3 = 6× the previous 0.5.
    expect(replay('grpo', rows)).toMatchObject([{ rule: 'kl_runaway', step: 20, message: expect.stringMatching(/growing fast: mean 3 .*6×/) }]);
    expect(replay('grpo', rows, config({ kl_runaway: { growth: 8 } }))).toEqual([]);
    expect(replay('grpo', rows, config({ kl_runaway: { growth_min: 5 } }))).toEqual([]);
  });

  it('a high but steady KL, or a rise from ~0 that stays small, is not a runaway', () => {
    expect(replay('grpo', steps(1, 40, () => ({ 'train/kl': 6 })))).toEqual([]);
    expect(replay('rlhf', steps(101, 40, (s) => ({ 'train/kl': (s - 100) * 0.02 })))).toEqual([]);
  });
});

describe('dpo_accuracy_stuck', () => {
  // A batch of 4 at chance: per-step accuracies jump around 0.5.
  const chance = (s: number) => ({ 'rewards/accuracies': [0.25, 0.75, 0.5, 0.5][s % 4]! });

  it('fires when the window mean sits at chance after the warm-up, once', () => {
    const alerts = replay('dpo', steps(1, 60, chance));
    expect(alerts).toHaveLength(1);
    // Warm-up 20, then a full window of 20 logged steps.
    expect(alerts[0]).toMatchObject({ rule: 'dpo_accuracy_stuck', severity: 'warning', step: 40 });
    expect(alerts[0]!.hint).toMatch(/chosen and rejected.*stages\.dpo\.learning_rate \(now 0\.005\).*stages\.dpo\.beta \(now 0\.1\)/);
  });

  it('a learning policy, the warm-up and the tolerance are honoured', () => {
    expect(replay('dpo', steps(1, 60, () => ({ 'rewards/accuracies': 0.625 })))).toEqual([]);
    expect(replay('dpo', steps(1, 60, () => ({ 'rewards/accuracies': 0.625 })), config({ dpo_accuracy_stuck: { tolerance: 0.2 } }))).toHaveLength(1);
    expect(replay('dpo', steps(1, 39, chance))).toEqual([]);
    expect(replay('dpo', steps(1, 15, chance), config({ dpo_accuracy_stuck: { warmup_steps: 0, steps: 8 } }))).toMatchObject([{ step: 8 }]);
    expect(replay('grpo', steps(1, 60, chance))).toEqual([]);
  });
});

describe('stop_on, resume and the error', () => {
  const clipped = steps(1, 5, () => ({ 'completions/clipped_ratio': 1 }));

  it('stop_on makes a rule fatal; "all" makes every rule fatal', () => {
    expect(replay('grpo', clipped, config({ stop_on: ['completions_clipped'] }))).toMatchObject([{ severity: 'fatal' }]);
    expect(replay('grpo', clipped, config({ stop_on: ['kl_runaway'] }))).toMatchObject([{ severity: 'warning' }]);
    expect(replay('grpo', clipped, config({ stop_on: ['all'] }))).toMatchObject([{ severity: 'fatal' }]);
    expect(replay('grpo', clipped, config({ completions_clipped: { fatal: true } }))).toMatchObject([{ severity: 'fatal' }]);
  });

  it('rules that warned before a resume stay quiet; fatal ones can stop again', () => {
    const c = config();
    const quiet = new HealthMonitor('grpo', c.monitor, c, ['completions_clipped', 'nan_loss']);
    expect(clipped.flatMap(([s, v]) => quiet.observe(s, v))).toEqual([]);
    expect(quiet.observe(6, { 'train/loss': Number.NaN })).toMatchObject([{ rule: 'nan_loss', severity: 'fatal' }]);
  });

  it('a stop_on rule that is disabled is a config error', () => {
    expect(() => config({ stop_on: ['kl_runaway'], kl_runaway: { enabled: false } })).toThrow(ConfigError);
    expect(() => config({ stop_on: ['kl_runaway'], kl_runaway: { enabled: false } })).toThrow(/monitor\.stop_on: names "kl_runaway", but monitor\.kl_runaway\.enabled is false/);
    expect(() => config({ stop_on: ['kl_runway'] })).toThrow(/monitor\.stop_on\.0/);
  });

  it('HealthStopError exits 1 and says how to fix, continue, and only warn', () => {
    const alert: HealthAlert = { rule: 'nan_loss', severity: 'fatal', step: 3, message: 'train/loss is NaN: training diverged.', hint: 'lower stages.sft.learning_rate.' };
    const e = new HealthStopError('sft', alert, { runDir: join(process.cwd(), 'runs', 'r1'), checkpoint: true, monitor: config().monitor });
    expect(e.exitCode).toBe(EXIT.runFailed);
    expect(e.code).toBe('health/nan_loss');
    expect(e.message).toBe('Stage sft was stopped at step 3 by health rule nan_loss: train/loss is NaN: training diverged.');
    expect(e.hint).toMatch(/^lower stages\.sft\.learning_rate\. Then start the stage over .*`posttrain stage sft --run r1 --resume`.* To only warn: --set monitor\.nan_loss\.fatal=false\.$/);
    const viaStopOn = new HealthStopError('grpo', { ...alert, rule: 'kl_runaway' }, { runDir: join(process.cwd(), 'runs', 'r1'), checkpoint: false, monitor: config({ stop_on: ['all'] }).monitor });
    expect(viaStopOn.hint).not.toMatch(/--resume|fatal=false/);
    expect(viaStopOn.hint).toMatch(/To only warn: leave kl_runaway out of monitor\.stop_on \/ --stop-on\.$/);
  });
});

describe('stopOnOverride (--stop-on)', () => {
  it('turns a list into a --set override that resolves', () => {
    expect(stopOnOverride(undefined)).toEqual([]);
    const set = stopOnOverride(' kl_runaway, nan_loss,kl_runaway ');
    expect(set).toEqual(['monitor.stop_on=["kl_runaway","nan_loss"]']);
    expect(resolveConfig({ preset: 'smoke', set, cwd: process.cwd() }).config.monitor.stop_on).toEqual(['kl_runaway', 'nan_loss']);
    expect(stopOnOverride('all')).toEqual(['monitor.stop_on=["all"]']);
  });

  it('unknown or empty names are usage errors naming the flag', () => {
    expect(() => stopOnOverride('kl_runway')).toThrow(UsageError);
    expect(() => stopOnOverride('kl_runway')).toThrow('--stop-on: unknown health rule "kl_runway". Did you mean "kl_runaway"?');
    expect(() => stopOnOverride(' , ')).toThrow('--stop-on is empty.');
  });

  it('the schema default has nothing in stop_on and only nan_loss and reward_nonfinite fatal', () => {
    const m = ConfigSchema.parse({ model: { id: 'x' } }).monitor;
    expect(m.stop_on).toEqual([]);
    expect(HEALTH_RULES.filter((r) => m[r].fatal)).toEqual(['nan_loss', 'reward_nonfinite']);
  });
});

// ---------------------------------------------------------------------------------------------
// End to end against the fake sidecar.

function onlyRun(cwd: string): string {
  const runs = readdirSync(join(cwd, 'runs')).filter((d) => !d.startsWith('.'));
  expect(runs).toHaveLength(1);
  return join(cwd, 'runs', runs[0]!);
}

const alertLines = (dir: string, stage: string) => {
  const f = join(dir, 'stages', stage, 'alerts.jsonl');
  return existsSync(f) ? readFileSync(f, 'utf8').trim().split('\n').filter(Boolean).map((l) => JSON.parse(l)) : [];
};
const metricSteps = (dir: string, stage: string) => readMetrics(join(dir, 'stages', stage, 'metrics.jsonl')).map((m) => m.step);

describe('the controller path (fake sidecar)', () => {
  // Slow enough that the cancel lands well before the last step.
  const nanAt3 = { stages: { '*': { steps: 10, step_time_s: 0.05, save_every: 2, values: { '3': { 'train/loss': 'nan' } } } } };

  it('a NaN loss at step 3 stops the stage with a checkpoint (exit 1, health/nan_loss); resume finishes it', async () => {
    const cwd = tmp();
    const r = await cli(['run', '--preset', 'smoke', '--stages', 'sft,dpo'], { cwd, env: fakeEnv(nanAt3) });
    expect(r.code).toBe(EXIT.runFailed);
    expect(r.err).toMatch(/Stage sft was stopped at step 3 by health rule nan_loss: train\/loss is NaN/);
    expect(r.err).toMatch(/posttrain stage sft --run \S+ (--runs-dir \S+ )?--resume/);
    expect(r.err.match(/train\/loss is NaN/g)!.length).toBeLessThanOrEqual(2); // the alert line and the error, no repeats
    const dir = onlyRun(cwd);
    const run = readJson(join(dir, 'run.json'));
    expect(run.status).toBe('failed');
    expect(run.stages.sft).toMatchObject({ status: 'failed', error: { code: 'health/nan_loss' } });
    expect(run.stages.dpo.status).toBe('pending');

    const lines = alertLines(dir, 'sft');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toEqual({ stage: 'sft', step: 3, rule: 'nan_loss', severity: 'fatal', message: expect.stringMatching(/NaN/), hint: expect.stringMatching(/learning_rate/), ts: expect.any(Number) });
    const summary = readJson(join(dir, 'stages', 'sft', 'summary.json'));
    expect(summary).toMatchObject({ status: 'failed', error: { code: 'health/nan_loss' }, alerts: [{ rule: 'nan_loss', step: 3 }] });
    expect(readFileSync(join(dir, 'stages', 'sft', 'sidecar.log'), 'utf8')).toMatch(/\[alert\] fatal nan_loss at step 3/);
    // Stopped at a step boundary shortly after the alert, with a checkpoint there.
    const ckpt = newestCompleteCheckpoint(join(dir, 'stages', 'sft'))!;
    expect(ckpt.step).toBeGreaterThanOrEqual(3);
    expect(ckpt.step).toBeLessThan(10);
    expect(metricSteps(dir, 'sft').at(-1)).toBe(ckpt.step);

    const again = await cli(['stage', 'sft', '--resume'], { cwd, env: fakeEnv(nanAt3) });
    expect(again.code).toBe(0);
    expect(readJson(join(dir, 'run.json')).stages.sft).toMatchObject({ status: 'ok', error: null });
    expect(metricSteps(dir, 'sft')).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    // The step-3 alert is kept (its step is before the checkpoint) and not raised again.
    expect(alertLines(dir, 'sft')).toMatchObject([{ rule: 'nan_loss', step: 3 }]);
    expect(readJson(join(dir, 'stages', 'sft', 'summary.json'))).toMatchObject({ status: 'ok', alerts: [{ rule: 'nan_loss', step: 3 }] });
  });

  const clippedFrom2 = { stages: { '*': { steps: 12, step_time_s: 0.02, save_every: 4, values_from: { '2': { 'completions/clipped_ratio': 1 } } } } };

  it('a warning is printed once and recorded; the stage finishes', async () => {
    const cwd = tmp();
    const r = await cli(['run', '--preset', 'smoke', '--stages', 'grpo'], { cwd, env: fakeEnv(clippedFrom2) });
    expect(r.code).toBe(0);
    expect(r.err.match(/completions hit stages\.grpo\.max_completion_length/g)).toHaveLength(1);
    const dir = onlyRun(cwd);
    expect(alertLines(dir, 'grpo')).toMatchObject([{ stage: 'grpo', step: 6, rule: 'completions_clipped', severity: 'warning' }]);
    expect(readJson(join(dir, 'stages', 'grpo', 'summary.json'))).toMatchObject({ status: 'ok', alerts: [{ rule: 'completions_clipped' }] });
    expect(readJson(join(dir, 'run.json')).stages.grpo.status).toBe('ok');
  });

  it('an alerts.jsonl that cannot be written is reported once; the stage still finishes and summary.json keeps the alert', async () => {
    const cwd = tmp();
    const crashAt6 = { stages: { '*': { ...clippedFrom2.stages['*'], values_from: {}, crash_at_step: 6 } } };
    expect((await cli(['run', '--preset', 'smoke', '--stages', 'grpo'], { cwd, env: fakeEnv(crashAt6) })).code).toBe(EXIT.runFailed);
    const dir = onlyRun(cwd);
    mkdirSync(join(dir, 'stages', 'grpo', 'alerts.jsonl')); // a folder where the file should be
    const r = await cli(['stage', 'grpo', '--resume'], { cwd, env: fakeEnv(clippedFrom2) });
    expect(r.code).toBe(0);
    expect(r.err.match(/warning: cannot write .*alerts\.jsonl/g)).toHaveLength(1);
    expect(readJson(join(dir, 'stages', 'grpo', 'summary.json')).alerts).toMatchObject([{ rule: 'completions_clipped', step: 9 }]);
  });

  it('monitor.stop_on (what --stop-on sets) makes it fatal', async () => {
    const cwd = tmp();
    const r = await cli(['run', '--preset', 'smoke', '--stages', 'grpo', ...stopOnOverride('completions_clipped').flatMap((s) => ['--set', s])], { cwd, env: fakeEnv(clippedFrom2) });
    expect(r.code).toBe(EXIT.runFailed);
    expect(r.err).toMatch(/stopped at step 6 by health rule completions_clipped/);
    expect(readJson(join(onlyRun(cwd), 'run.json')).stages.grpo).toMatchObject({ status: 'failed', error: { code: 'health/completions_clipped' } });
  });
});
