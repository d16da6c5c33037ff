// "Will this fit?" before anything loads: each selected stage's peak memory, estimated by the
// sidecar's own estimator (sidecar/posttrain_sidecar/memory.py, the one definition) from the
// model's config, against the device's free memory. `posttrain plan` prints it; a run gets the
// same lines from the sidecar's preflight (and refuses a stage that does not fit, per
// runtime.memory_check). Runs `python -m posttrain_sidecar.memory` once: no protocol, no weights,
// a few seconds for the transformers import.
import { execa } from 'execa';
import { z } from 'zod';
import { PreflightProblemBody, type PreflightProblem } from '../bridge/protocol.js';
import type { Config, StageName } from '../config/schema.js';
import { EXIT, PosttrainError } from '../errors.js';
import { sidecarSpec } from './sidecar-spec.js';

const EstimateData = z.object({
  stage: z.string(),
  phase: z.string().nullish(),
  total_gib: z.number(),
  parts_gib: z.record(z.string(), z.number()),
  assumptions: z.array(z.string()).default([]),
  available_gib: z.number(),
});
export type EstimateData = z.infer<typeof EstimateData>;

const PlanOutput = z.object({
  plan: z.object({ device: z.string(), mode: z.string(), dtype_bytes: z.number(), checkpointing: z.boolean() }),
  problems: z.array(PreflightProblemBody),
});
export type MemoryPlan = z.infer<typeof PlanOutput>;

/** The estimate of a memory_estimate problem, or null for any other problem. */
export function estimateOf(p: PreflightProblem): EstimateData | null {
  if (p.code !== 'memory_estimate') return null;
  const parsed = EstimateData.safeParse(p.data);
  return parsed.success ? parsed.data : null;
}

export async function memoryPlan(config: Config, stages: readonly StageName[], o: { cwd: string; env: NodeJS.ProcessEnv; timeoutMs?: number }): Promise<MemoryPlan> {
  const spec = sidecarSpec(config, o.env, o.cwd);
  const r = await execa(spec.python, ['-m', 'posttrain_sidecar.memory'], {
    cwd: o.cwd,
    env: { ...o.env, ...spec.env },
    extendEnv: false,
    input: JSON.stringify({ config, stages }),
    timeout: o.timeoutMs ?? 120_000,
    reject: false,
  });
  const line = String(r.stdout ?? '').trim().split('\n').pop() ?? '';
  try {
    return PlanOutput.parse(JSON.parse(line));
  } catch {
    const tail = String(r.stderr ?? '').trim().split('\n').slice(-3).join(' | ') || `exit code ${r.exitCode ?? '?'}`;
    throw new PosttrainError(`The sidecar's Python (${spec.python}) could not estimate memory: ${r.timedOut ? 'timed out' : tail}`, {
      exitCode: EXIT.runFailed,
      hint: '`posttrain doctor` checks the sidecar environment.',
    });
  }
}

const gib = (v: number | undefined) => (v === undefined ? '' : v.toFixed(2));
const PART_ORDER = ['weights', 'adapter', 'activations', 'logits', 'generation', 'reward_model', 'runtime'];

/** A table: one row per stage, the parts in GiB, and what to change where a stage does not fit. */
export function formatPlan(config: Config, mp: MemoryPlan): string {
  const { plan } = mp;
  const estimates = mp.problems.map(estimateOf).filter((e): e is EstimateData => e !== null);
  const what = plan.device === 'cuda' ? 'peak GPU memory' : 'peak RAM (resident set)';
  const head = `${config.model.id}: ${plan.device}, ${plan.mode}, ${plan.dtype_bytes === 4 ? 'float32' : '16-bit'} weights, gradient checkpointing ${plan.checkpointing ? 'on' : 'off'}`;
  if (estimates.length === 0) {
    return `${head}\nNo estimate: the model's config.json could not be read locally (a hub model not in the cache, or an architecture the estimator does not know).\n`;
  }
  const parts = PART_ORDER.filter((k) => estimates.some((e) => (e.parts_gib[k] ?? 0) > 0));
  const rows = [['stage', 'total GiB', ...parts, 'fits'], ...estimates.map((e) => [
    e.phase ? `${e.stage} (${e.phase})` : e.stage,
    gib(e.total_gib),
    ...parts.map((k) => gib(e.parts_gib[k])),
    e.total_gib <= e.available_gib ? 'yes' : 'NO',
  ])];
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  const table = rows.map((r) => r.map((c, i) => c.padEnd(widths[i] ?? 0)).join('  ').trimEnd());
  const available = estimates[0]!.available_gib;
  const lines = [head, `estimated ${what}; ${available.toFixed(1)} GiB available`, ...table];
  for (const a of new Set(estimates.flatMap((e) => e.assumptions))) lines.push(`assumed: ${a}`);
  for (const p of mp.problems.filter((q) => q.code === 'memory_exceeds')) lines.push(`${p.severity}: [${p.stage}] ${p.message}\n  fix: ${p.fix}`);
  return `${lines.join('\n')}\n`;
}
