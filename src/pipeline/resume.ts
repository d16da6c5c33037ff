// Is it safe to resume a stage's checkpoint under a changed config? Changes that alter what the
// checkpoint means (model, adapter shape, data, optimiser/batch geometry, seed) are refused;
// changes to how long to train, how often to log/save, and supervision are allowed.
import { newestCompleteCheckpoint } from '../artifacts/checkpoints.js';
import type { Config, StageName } from '../config/schema.js';
import { UsageError } from '../errors.js';
import { targetsForStage } from '../data/targets.js';

const SAFE_STAGE_KEYS = new Set(['max_steps', 'epochs', 'logging_steps', 'save_steps', 'save_total_limit']);

function flatten(v: unknown, prefix = '', out = new Map<string, string>()): Map<string, string> {
  if (v !== null && typeof v === 'object' && !Array.isArray(v)) {
    for (const [k, x] of Object.entries(v)) flatten(x, prefix ? `${prefix}.${k}` : k, out);
  } else out.set(prefix, JSON.stringify(v));
  return out;
}

function relevant(path: string, stage: StageName): boolean {
  if (path.startsWith('model.')) return true;
  // runtime.num_processes is judged against the checkpoint itself (checkResumeWorldSize), which
  // knows how many ranks actually wrote it.
  if (['runtime.seed', 'runtime.device', 'runtime.launcher'].includes(path)) return true;
  if (targetsForStage(stage).some((t) => path.startsWith(`data.${t}.`))) return true;
  if (path.startsWith(`stages.${stage}.`)) {
    const key = path.split('.').pop()!;
    return !SAFE_STAGE_KEYS.has(key);
  }
  return false;
}

export function unsafeResumeChanges(before: Config, after: Config, stage: StageName): { path: string; before: string; after: string }[] {
  const a = flatten(before);
  const b = flatten(after);
  const paths = new Set([...a.keys(), ...b.keys()]);
  return [...paths]
    .filter((p) => relevant(p, stage) && a.get(p) !== b.get(p))
    .sort()
    .map((p) => ({ path: p, before: a.get(p) ?? '(unset)', after: b.get(p) ?? '(unset)' }));
}

export function checkResumeSafety(before: Config, after: Config, stage: StageName): void {
  const changes = unsafeResumeChanges(before, after, stage);
  if (changes.length === 0) return;
  throw new UsageError(
    `Cannot resume stage ${stage}: the config changed in ways the checkpoint does not survive:\n${changes.map((c) => `  - ${c.path}: ${c.before} → ${c.after}`).join('\n')}`,
    `Resume with the run's own config (drop those flags), or start the stage over without --resume. Safe to change on resume: ${[...SAFE_STAGE_KEYS].join(', ')}, heartbeat and timeout settings.`,
  );
}

/**
 * A checkpoint resumes only under the world size that wrote it. With LoRA under DDP the weights
 * themselves would load under any number of ranks, but each rank's data-sampler position and RNG
 * state (rng_state_<rank>.pth) cannot be replayed under another world size, and FSDP/DeepSpeed
 * shards need resharding that posttrain does not do: the resumed run would silently differ from
 * an uninterrupted one. So it is refused (there is no override flag; start the stage over).
 */
export function checkResumeWorldSize(stageDir: string, config: Config, stage: StageName): void {
  const ckpt = newestCompleteCheckpoint(stageDir);
  if (!ckpt) return; // executeStage says there is nothing to resume
  const written = ckpt.worldSize;
  const now = config.runtime.num_processes;
  if (written === now) return;
  throw new UsageError(
    `Cannot resume stage ${stage}: its checkpoint (step ${ckpt.step}) was written by ${written} process${written === 1 ? '' : 'es'}, but runtime.num_processes is ${now}.`,
    `Resume with --set runtime.num_processes=${written}, or start the stage over without --resume (a checkpoint's per-rank data order and RNG state cannot move to another number of processes).`,
  );
}
