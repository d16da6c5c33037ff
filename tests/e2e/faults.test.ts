// Fault tolerance with the REAL sidecar on the smoke preset: a SIGKILLed sidecar in each of the
// four stages, a SIGKILLed controller, SIGTERM to the CLI, and a checkpoint cut short mid-save.
// Every resume must reproduce an uninterrupted reference run (same seed, runtime.threads=1):
// adapters to 1e-6, every metric line to 1e-6, no metric step lost or duplicated.
//
// One reference run covers all four stages; ONE faulty run kills the sidecar once in each stage
// in turn (kill in sft, resume sft, run dpo and kill it, resume, …; RLHF twice: in its
// reward-model phase, then its resume in the policy phase). Kill steps are drawn from a
// seeded RNG (FAULT_SEED overrides it) after the stage's first checkpoint; a smoke step takes
// 5-60 ms, so the test watches metrics.jsonl every 2 ms and the kill may land a step or two after
// the drawn one. What counts is that it lands mid-training, which is asserted.
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { CHECKPOINT_MARKER, listCheckpoints, type MetricRecord, newestCompleteCheckpoint, readMetrics } from '../../src/artifacts/index.js';
import { DEFAULT_VENV_PYTHON } from '../../src/paths.js';
import { type Child, isAlive, readJson, spawnCli, tmp, waitFor } from '../helpers/cli.js';
import { recordReliability } from '../helpers/reliability.js';

// Every stage of the catalogue, the opt-in methods (ORPO, KTO, SimPO) included, in pipeline order.
const STAGES = ['sft', 'orpo', 'dpo', 'kto', 'simpo', 'grpo', 'rlhf'] as const;
type Stage = (typeof STAGES)[number];
const ENV = { ...process.env, POSTTRAIN_SIDECAR_MODULE: '' };
const TEST = 'tests/e2e/faults.test.ts';

// Smaller than the preset but long enough (0.3-1 s of training per stage) to kill mid-stage.
// GRPO: 16 steps of 4 prompts cross the 12-step epoch of the 48 smoke prompts (the epoch reseed).
const SETS = [
  `runtime.stages=${JSON.stringify(STAGES)}`,
  'stages.sft.max_steps=40',
  'stages.sft.save_steps=5',
  'stages.dpo.max_steps=24',
  'stages.dpo.save_steps=4',
  'stages.kto.max_steps=24',
  'stages.kto.save_steps=4',
  'stages.orpo.max_steps=24',
  'stages.orpo.save_steps=4',
  'stages.simpo.max_steps=24',
  'stages.simpo.save_steps=4',
  'stages.grpo.max_steps=16',
  'stages.grpo.save_steps=4',
  'stages.rlhf.reward_model.max_steps=20',
  'stages.rlhf.reward_model.save_steps=5',
  'stages.rlhf.policy.max_steps=10',
  'stages.rlhf.policy.save_steps=2',
].flatMap((s) => ['--set', s]);
/** Stage-wide steps (RLHF: reward model 1..20, then policy 21..30). */
const TOTAL: Record<Stage, number> = { sft: 40, orpo: 24, dpo: 24, kto: 24, simpo: 24, grpo: 16, rlhf: 30 };
/**
 * Where a kill is drawn: after the phase's first checkpoint (`ckpt`: the lowest stage-wide step a
 * complete checkpoint must have before the kill) and a few steps before its end, so it lands
 * mid-training even when the machine is slow to react. RLHF is killed twice, once per phase.
 */
interface KillPlan {
  stage: Stage;
  phase?: string;
  lo: number;
  hi: number;
  ckpt: number;
}
const KILLS: KillPlan[] = [
  { stage: 'sft', lo: 6, hi: 28, ckpt: 5 },
  { stage: 'dpo', lo: 5, hi: 17, ckpt: 4 },
  { stage: 'orpo', lo: 5, hi: 17, ckpt: 4 },
  { stage: 'kto', lo: 5, hi: 17, ckpt: 4 },
  { stage: 'simpo', lo: 5, hi: 17, ckpt: 4 },
  { stage: 'grpo', lo: 5, hi: 12, ckpt: 4 },
  { stage: 'rlhf', phase: 'reward_model', lo: 6, hi: 16, ckpt: 5 },
  { stage: 'rlhf', phase: 'policy', lo: 23, hi: 27, ckpt: 22 },
];
const SFT_KILL = KILLS[0]!;

const TOL = 1e-6;
// Wall-clock values (step_time, eval runtime and throughput) and the end-of-training summary
// (train_loss averages only the steps the last process ran) differ between any two runs by nature.
const reproducible = (key: string) => !/(^|\/)train\/train_|total_flos$|step_time$|\/runtime$|_per_second$/.test(key);

// ---------------------------------------------------------------------------------------------

/** mulberry32: a small seeded PRNG, so the kill steps are reproducible. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const SEED = Number(process.env.FAULT_SEED ?? 20261125);
const random = rng(SEED);
const draw = (lo: number, hi: number) => lo + Math.floor(random() * (hi - lo + 1));

const runDirIn = (cwd: string) => {
  const runs = existsSync(join(cwd, 'runs')) ? readdirSync(join(cwd, 'runs')).filter((d) => !d.startsWith('.')) : [];
  return runs.length === 1 ? join(cwd, 'runs', runs[0]!) : undefined;
};
const stageDir = (dir: string, s: Stage) => join(dir, 'stages', s);
const metricsOf = (dir: string, s: Stage) => readMetrics(join(stageDir(dir, s), 'metrics.jsonl'));
const lastStep = (dir: string, s: Stage) => {
  try {
    return Math.max(0, ...metricsOf(dir, s).map((m) => m.step));
  } catch {
    return 0; // read while a line was half-written
  }
};
const sidecarPids = (dir: string) =>
  existsSync(join(dir, 'sidecar.log')) ? [...readFileSync(join(dir, 'sidecar.log'), 'utf8').matchAll(/sidecar pid (\d+)/g)].map((m) => Number(m[1])) : [];

async function finish(child: Child, timeoutMs = 120_000): Promise<{ code: number | null; out: string; err: string }> {
  const t = setTimeout(() => child.proc.kill('SIGKILL'), timeoutMs);
  const { code } = await child.exit;
  clearTimeout(t);
  return { code, out: child.out(), err: child.err() };
}
const bin = (args: string[], cwd: string) => finish(spawnCli(args, { cwd, env: ENV }));

interface Hit {
  /** The sidecar's pid (the newest "sidecar pid" line of <run>/sidecar.log). */
  pid: number;
  /** The last metric step recorded when the fault was injected. */
  step: number;
}

/**
 * Wait (polling every 2 ms) until `stage` of the run in `cwd` has logged step `target` and holds
 * `minCkpts` complete checkpoints, the newest at step `minCkptStep` or later, then call `inject`.
 * `pidsBefore` is how many sidecars the run had started before `child` (its own is the next
 * one). Throws when the child exits first.
 */
async function injectAt(
  child: Child,
  cwd: string,
  stage: Stage,
  target: number,
  inject: (hit: Hit) => void,
  opts: { pidsBefore?: number; minCkpts?: number; minCkptStep?: number } = {},
): Promise<Hit & { dir: string }> {
  const { pidsBefore = 0, minCkpts = 1, minCkptStep = 0 } = opts;
  const start = Date.now();
  for (;;) {
    if (child.proc.exitCode !== null || child.proc.signalCode !== null) {
      throw new Error(`the CLI exited before ${stage} reached step ${target}: ${child.err().slice(-2000)}`);
    }
    if (Date.now() - start > 90_000) throw new Error(`timed out waiting for ${stage} step ${target}`);
    const dir = runDirIn(cwd);
    if (dir) {
      const pids = sidecarPids(dir);
      const step = lastStep(dir, stage);
      if (pids.length > pidsBefore && step >= target) {
        const sdir = stageDir(dir, stage);
        const complete = existsSync(join(sdir, 'checkpoints')) && countComplete(sdir) >= minCkpts && (newestCompleteCheckpoint(sdir)?.step ?? 0) >= minCkptStep;
        if (complete) {
          const hit = { pid: pids[pids.length - 1]!, step };
          inject(hit);
          return { ...hit, dir };
        }
      }
    }
    await new Promise((r) => setTimeout(r, 2));
  }
}

function countComplete(sdir: string): number {
  let n = 0;
  const walk = (d: string, depth: number) => {
    for (const name of readdirSync(d)) {
      const p = join(d, name);
      if (/^checkpoint-\d+$/.test(name)) n += existsSync(join(p, CHECKPOINT_MARKER)) ? 1 : 0;
      else if (depth === 0 && !name.includes('.')) {
        try {
          walk(p, 1);
        } catch {
          // not a folder
        }
      }
    }
  };
  walk(join(sdir, 'checkpoints'), 0);
  return n;
}

// ---------------------------------------------------------------------------------------------
// comparisons

/** max |a - b| over every tensor of each pair of safetensors files (keys must match). */
function adapterDiffs(pairs: Record<string, [string, string]>): Record<string, number | string> {
  const script = [
    'import json, sys',
    'import numpy as np',
    'from safetensors.numpy import load_file',
    'args, out = sys.argv[1:], {}',
    'for name, a, b in zip(args[0::3], args[1::3], args[2::3]):',
    '    A, B = load_file(a), load_file(b)',
    '    if sorted(A) != sorted(B):',
    '        out[name] = "different tensors: %s vs %s" % (sorted(A), sorted(B))',
    '        continue',
    '    out[name] = max(float(np.max(np.abs(A[k].astype(np.float64) - B[k].astype(np.float64)))) if A[k].size else 0.0 for k in A)',
    'print(json.dumps(out))',
  ].join('\n');
  const args = Object.entries(pairs).flatMap(([name, [a, b]]) => [name, a, b]);
  return JSON.parse(execFileSync(DEFAULT_VENV_PYTHON, ['-c', script, ...args], { encoding: 'utf8', env: { ...process.env, PYTHONPATH: '' } })) as Record<string, number | string>;
}
const adapterFile = (dir: string, s: Stage, sub = 'adapter') => join(stageDir(dir, s), sub, 'adapter_model.safetensors');

interface MetricDiff {
  /** Reference lines with no counterpart (a line is its step plus its set of keys). */
  missing: number;
  /** Lines beyond the reference's count for the same step and keys. */
  duplicated: number;
  /** Value mismatches beyond TOL, "step key: got vs want". */
  mismatches: string[];
  /** Lines compared after `fromStep` (the resumed steps). */
  resumedLines: number;
}

function compareMetrics(got: MetricRecord[], want: MetricRecord[], fromStep: number): MetricDiff {
  const sig = (m: MetricRecord) => `${m.step}|${Object.keys(m.values).sort().join(',')}`;
  const group = (ms: MetricRecord[]) => {
    const g = new Map<string, MetricRecord[]>();
    for (const m of ms) g.set(sig(m), [...(g.get(sig(m)) ?? []), m]);
    return g;
  };
  const G = group(got);
  const W = group(want);
  let missing = 0;
  let duplicated = 0;
  let resumedLines = 0;
  const mismatches: string[] = [];
  for (const [k, ws] of W) missing += Math.max(0, ws.length - (G.get(k)?.length ?? 0));
  for (const [k, gs] of G) duplicated += Math.max(0, gs.length - (W.get(k)?.length ?? 0));
  for (const [k, ws] of W) {
    const gs = G.get(k) ?? [];
    ws.forEach((w, i) => {
      const g = gs[i];
      if (!g) return;
      if (w.step > fromStep) resumedLines++;
      for (const [key, v] of Object.entries(w.values)) {
        if (!reproducible(key)) continue;
        const x = g.values[key];
        const same = v === x || (typeof v === 'number' && typeof x === 'number' && (Math.abs(v - x) <= TOL || (Number.isNaN(v) && Number.isNaN(x))));
        if (!same) mismatches.push(`step ${w.step} ${key}: ${x} vs ${v}`);
      }
    });
  }
  // The file itself: steps never go backwards (a replayed step would).
  const steps = got.map((m) => m.step);
  if (steps.some((s, i) => i > 0 && s < steps[i - 1]!)) mismatches.push(`steps out of order: ${steps.join(',')}`);
  return { missing, duplicated, mismatches, resumedLines };
}

// ---------------------------------------------------------------------------------------------

describe('fault tolerance with the real sidecar (smoke preset)', () => {
  let refCwd: string;
  let ref: string;

  beforeAll(async () => {
    refCwd = tmp('posttrain-faults-ref-');
    const r = await bin(['run', '--preset', 'smoke', ...SETS], refCwd);
    expect(r.code, r.err).toBe(0);
    ref = runDirIn(refCwd)!;
    for (const s of STAGES) expect(metricsOf(ref, s).length, s).toBeGreaterThan(0);
    console.log(`[faults] seed ${SEED}; reference run ${ref}`);
  }, 180_000);

  /** Adapter and metric checks of one resumed stage against the reference; returns the row data. */
  function checkAgainstReference(dir: string, s: Stage, resumedFrom: number, extraAdapters: Record<string, [string, string]> = {}) {
    const diffs = adapterDiffs({ [s]: [adapterFile(dir, s), adapterFile(ref, s)], ...extraAdapters });
    const m = compareMetrics(metricsOf(dir, s), metricsOf(ref, s), resumedFrom);
    const adapterOk = Object.values(diffs).every((d) => typeof d === 'number' && d < TOL);
    return { diffs, m, ok: adapterOk && m.missing === 0 && m.duplicated === 0 && m.mismatches.length === 0 && m.resumedLines > 0 };
  }

  function assertChecked(s: Stage, c: ReturnType<typeof checkAgainstReference>) {
    for (const [name, d] of Object.entries(c.diffs)) {
      expect.soft(typeof d, `${name} adapter: ${d}`).toBe('number');
      expect.soft(d as number, `${name} adapter max |diff|`).toBeLessThan(TOL);
    }
    expect.soft(c.m.missing, `${s}: missing metric lines`).toBe(0);
    expect.soft(c.m.duplicated, `${s}: duplicated metric lines`).toBe(0);
    expect.soft(c.m.mismatches.slice(0, 10), `${s}: metric values vs reference`).toEqual([]);
    expect.soft(c.m.resumedLines, `${s}: resumed metric lines compared`).toBeGreaterThan(0);
  }

  it('sidecar SIGKILLed at a random step of each stage in turn (RLHF: in each phase): resume reproduces the uninterrupted run', async () => {
    const cwd = tmp('posttrain-faults-chain-');
    let dir = '';
    for (const s of STAGES) {
      const t0 = Date.now();
      const plans = KILLS.filter((k) => k.stage === s);
      const kills: { step: number; target: number; phase: string; code: number | null; steps: number; status: string; errorCode: string; pidGone: boolean; from: number }[] = [];
      let resumed = { code: null as number | null, out: '', err: '' };
      // Each kill is followed by a resume; for RLHF the first resume is itself killed (in the policy phase).
      for (const [j, plan] of plans.entries()) {
        const target = draw(plan.lo, plan.hi);
        const first = s === 'sft' && j === 0;
        // sft is killed inside `posttrain run`; later stages inside `posttrain stage <s>`, a second
        // kill of one stage inside its `--resume`.
        const args = first ? ['run', '--preset', 'smoke', ...SETS] : j === 0 ? ['stage', s] : ['stage', s, '--resume'];
        const child = spawnCli(args, { cwd, env: ENV });
        const pidsBefore = first ? 0 : sidecarPids(dir).length;
        const hit = await injectAt(child, cwd, s, target, ({ pid }) => process.kill(pid, 'SIGKILL'), { pidsBefore, minCkptStep: plan.ckpt });
        dir = hit.dir;
        const killed = await finish(child);
        const rec = readJson(join(dir, 'run.json')).stages[s];
        kills.push({
          step: hit.step,
          target,
          phase: plan.phase ?? s,
          code: killed.code,
          steps: lastStep(dir, s),
          status: rec.status,
          errorCode: rec.error?.code,
          pidGone: !isAlive(hit.pid),
          from: newestCompleteCheckpoint(stageDir(dir, s))?.step ?? 0,
        });
      }
      const ckpt = newestCompleteCheckpoint(stageDir(dir, s));
      resumed = await bin(['stage', s, '--resume'], cwd);
      const after = readJson(join(dir, 'run.json')).stages[s];
      const extra: Record<string, [string, string]> = s === 'rlhf' ? { 'rlhf reward model': [adapterFile(dir, s, 'reward_model'), adapterFile(ref, s, 'reward_model')] } : {};
      const c = checkAgainstReference(dir, s, Math.min(...kills.map((k) => k.from)), extra);
      const goodKill = (k: (typeof kills)[number]) => k.code === 1 && k.steps < TOTAL[s] && k.status === 'failed' && k.errorCode === 'sidecar_crashed' && k.pidGone && k.from > 0;
      const ok = resumed.code === 0 && after.status === 'ok' && c.ok;
      const dAdapter = c.diffs[s];
      const where = kills.map((k) => `${k.phase === s ? '' : `${k.phase} `}step ${k.step} (drawn ${k.target}), resumed from ${k.from}`).join('; ');
      recordReliability({
        fault: 'sidecar SIGKILL at a random step (real sidecar)',
        stage: s,
        injected: kills.length,
        survived: ok ? kills.filter(goodKill).length : 0,
        lost: c.m.missing + c.m.duplicated,
        outcome:
          `of ${TOTAL[s]} steps, killed at ${where} (seed ${SEED}); each attempt failed with sidecar_crashed; ` +
          `final adapter max |Δ| ${typeof dAdapter === 'number' ? dAdapter.toExponential(1) : dAdapter} vs uninterrupted, ` +
          `${c.m.resumedLines} resumed metric lines equal within ${TOL.toExponential()}`,
        test: TEST,
      });
      console.log(`[faults] ${s}: killed at ${where}; adapter diffs ${JSON.stringify(c.diffs)}; ${((Date.now() - t0) / 1000).toFixed(1)} s`);

      for (const k of kills) {
        expect(k.code, `${s}: the killed CLI's exit code`).toBe(1);
        expect(k.steps, `${s}: ${k.phase} finished before the kill landed`).toBeLessThan(TOTAL[s]);
        expect(k.status).toBe('failed');
        expect(k.errorCode).toBe('sidecar_crashed');
        expect(k.pidGone).toBe(true);
        expect(k.from, `${s}: a complete checkpoint`).toBeGreaterThan(0);
      }
      if (s === 'rlhf') {
        expect(kills[0]!.step).toBeLessThanOrEqual(20); // in the reward-model phase
        expect(kills[1]!.step).toBeGreaterThan(20); // in the policy phase
      }
      expect(resumed.code, resumed.err).toBe(0);
      expect(after).toMatchObject({ status: 'ok', resumed_from: relative(dir, ckpt!.path) }); // run.json paths are relative to the run
      assertChecked(s, c);
    }
    expect(readJson(join(dir, 'run.json')).status).toBe('ok');
  }, 240_000);

  it('controller SIGKILLed mid-stage: the sidecar exits by itself, the run shows interrupted, resume reproduces', async () => {
    const cwd = tmp('posttrain-faults-ctl-');
    const child = spawnCli(['run', '--preset', 'smoke', '--stages', 'sft', ...SETS], { cwd, env: ENV });
    const target = draw(SFT_KILL.lo, SFT_KILL.hi);
    const hit = await injectAt(child, cwd, 'sft', target, () => child.proc.kill('SIGKILL'));
    const { dir } = hit;
    await child.exit;
    const t0 = Date.now();
    let exitedInS = Number.NaN;
    try {
      await waitFor(() => !isAlive(hit.pid), 5_000, 'the orphaned sidecar to exit');
      exitedInS = (Date.now() - t0) / 1000;
    } catch {
      // recorded below
    }
    const runs = await bin(['runs'], cwd);
    const showsInterrupted = /interrupted\s+smoke\s+sft:interrupted/.test(runs.out);
    const ckpt = newestCompleteCheckpoint(stageDir(dir, 'sft'));
    const resumed = await bin(['stage', 'sft', '--resume'], cwd);
    const c = checkAgainstReference(dir, 'sft', ckpt?.step ?? 0);
    const survived = Number.isFinite(exitedInS) && showsInterrupted && resumed.code === 0 && c.ok;
    recordReliability({
      fault: 'controller SIGKILL mid-stage (real sidecar)',
      stage: 'sft',
      injected: 1,
      survived: survived ? 1 : 0,
      lost: c.m.missing + c.m.duplicated,
      outcome: `controller killed at step ${hit.step}; orphaned sidecar exited in ${exitedInS.toFixed(2)} s; run listed interrupted; resumed from step ${ckpt?.step}, adapter and metrics equal the uninterrupted run`,
      test: TEST,
    });
    expect(exitedInS, 'the orphaned sidecar exits within 5 s').toBeLessThan(5);
    expect(runs.out).toMatch(/interrupted\s+smoke\s+sft:interrupted/);
    expect(resumed.code, resumed.err).toBe(0);
    expect(readJson(join(dir, 'run.json')).stages.sft).toMatchObject({ status: 'ok', resumed_from: relative(dir, ckpt!.path) });
    assertChecked('sft', c);
  }, 120_000);

  it('SIGTERM to the CLI mid-stage: graceful cancel (exit 130) with a checkpoint at the last step; resume reproduces', async () => {
    const cwd = tmp('posttrain-faults-term-');
    const child = spawnCli(['run', '--preset', 'smoke', '--stages', 'sft', ...SETS], { cwd, env: ENV });
    const target = draw(SFT_KILL.lo, SFT_KILL.hi);
    const hit = await injectAt(child, cwd, 'sft', target, () => child.proc.kill('SIGTERM'));
    const { dir } = hit;
    const cancelled = await finish(child);
    const rec = readJson(join(dir, 'run.json')).stages.sft;
    const ckpt = newestCompleteCheckpoint(stageDir(dir, 'sft'));
    const last = lastStep(dir, 'sft');
    const sidecarGone = !isAlive(hit.pid);
    const resumed = await bin(['stage', 'sft', '--resume'], cwd);
    const c = checkAgainstReference(dir, 'sft', ckpt?.step ?? 0);
    const survived = cancelled.code === 130 && rec.status === 'cancelled' && ckpt?.step === last && last < TOTAL.sft && sidecarGone && resumed.code === 0 && c.ok;
    recordReliability({
      fault: 'SIGTERM to the CLI mid-stage (real sidecar)',
      stage: 'sft',
      injected: 1,
      survived: survived ? 1 : 0,
      lost: c.m.missing + c.m.duplicated,
      outcome: `SIGTERM at step ${hit.step}: exit ${cancelled.code}, stage ${rec.status}, complete checkpoint at step ${ckpt?.step} (last logged ${last}); resume equals the uninterrupted run`,
      test: TEST,
    });
    expect(cancelled.code, cancelled.err).toBe(130);
    expect(cancelled.err).toMatch(/SIGTERM: stopping at the next step boundary/);
    expect(rec.status).toBe('cancelled');
    expect(last).toBeLessThan(TOTAL.sft);
    expect(ckpt?.step, 'checkpoint at the last logged step').toBe(last);
    expect(sidecarGone).toBe(true);
    expect(existsSync(join(dir, '.lock'))).toBe(false);
    expect(resumed.code, resumed.err).toBe(0);
    expect(readJson(join(dir, 'run.json')).stages.sft).toMatchObject({ status: 'ok', resumed_from: relative(dir, ckpt!.path) });
    assertChecked('sft', c);
  }, 120_000);

  it('killed while writing a checkpoint (no completion marker): resume uses the previous complete one and reproduces', async () => {
    const cwd = tmp('posttrain-faults-mid-save-');
    const child = spawnCli(['run', '--preset', 'smoke', '--stages', 'sft', ...SETS], { cwd, env: ENV });
    const target = draw(11, SFT_KILL.hi); // after the second checkpoint (step 10)
    const hit = await injectAt(child, cwd, 'sft', target, ({ pid }) => process.kill(pid, 'SIGKILL'), { minCkpts: 2 });
    const { dir } = hit;
    const killed = await finish(child);
    const newest = newestCompleteCheckpoint(stageDir(dir, 'sft'))!;
    // What a crash mid-save leaves: the checkpoint folder without the marker written last.
    rmSync(join(newest.path, CHECKPOINT_MARKER));
    const previous = newestCompleteCheckpoint(stageDir(dir, 'sft'));
    const resumed = await bin(['stage', 'sft', '--resume'], cwd);
    const after = readJson(join(dir, 'run.json')).stages.sft;
    const c = checkAgainstReference(dir, 'sft', previous?.step ?? 0);
    const survived = killed.code === 1 && previous !== null && previous.step < newest.step && resumed.code === 0 && after.resumed_from === relative(dir, previous.path) && c.ok;
    recordReliability({
      fault: 'checkpoint cut short mid-save (marker missing after SIGKILL)',
      stage: 'sft',
      injected: 1,
      survived: survived ? 1 : 0,
      lost: c.m.missing + c.m.duplicated,
      outcome: `sidecar killed at step ${hit.step}, marker of checkpoint step ${newest.step} removed; resumed from step ${previous?.step}; adapter and metrics equal the uninterrupted run`,
      test: TEST,
    });
    expect(killed.code, killed.err).toBe(1);
    expect(previous, 'an older complete checkpoint').not.toBeNull();
    expect(previous!.step).toBeLessThan(newest.step);
    expect(resumed.code, resumed.err).toBe(0);
    expect(after).toMatchObject({ status: 'ok', resumed_from: relative(dir, previous!.path) });
    assertChecked('sft', c);
  }, 120_000);

  it('a damaged optimizer.pt in the newest complete checkpoint is named and skipped; resume reproduces from the one before', async () => {
    const cwd = tmp('posttrain-faults-damaged-');
    const child = spawnCli(['run', '--preset', 'smoke', '--stages', 'sft', ...SETS], { cwd, env: ENV });
    const hit = await injectAt(child, cwd, 'sft', draw(11, SFT_KILL.hi), ({ pid }) => process.kill(pid, 'SIGKILL'), { minCkpts: 2 });
    const { dir } = hit;
    const killed = await finish(child);
    const newest = newestCompleteCheckpoint(stageDir(dir, 'sft'))!;
    const optimizer = join(newest.path, 'optimizer.pt');
    const bytes = readFileSync(optimizer);
    bytes[bytes.length >> 1] ^= 0xff; // one flipped byte: the marker still says complete
    writeFileSync(optimizer, bytes);
    const previous = listCheckpoints(stageDir(dir, 'sft')).filter((k) => k.complete && k.step < newest.step).pop();
    const resumed = await bin(['stage', 'sft', '--resume'], cwd);
    const after = readJson(join(dir, 'run.json')).stages.sft;
    const c = checkAgainstReference(dir, 'sft', previous?.step ?? 0);
    const named = resumed.err.includes(`skipping checkpoint ${newest.path} (step ${newest.step}): optimizer.pt changed since it was written (damaged)`);
    const survived = killed.code === 1 && previous !== undefined && named && resumed.code === 0 && after.resumed_from === relative(dir, previous.path) && c.ok;
    recordReliability({
      fault: 'damaged optimizer.pt in the newest complete checkpoint',
      stage: 'sft',
      injected: 1,
      survived: survived ? 1 : 0,
      lost: c.m.missing + c.m.duplicated,
      outcome: `checkpoint step ${newest.step} named as damaged and skipped; resumed from step ${previous?.step}; adapter and metrics equal the uninterrupted run`,
      test: TEST,
    });
    expect(killed.code, killed.err).toBe(1);
    expect(named, resumed.err).toBe(true);
    expect(resumed.code, resumed.err).toBe(0);
    expect(after).toMatchObject({ status: 'ok', resumed_from: relative(dir, previous!.path) });
    assertChecked('sft', c);
  }, 120_000);
});
