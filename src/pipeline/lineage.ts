// Lineage: what each stage of a run stands on, and whether that still holds.
//
// Invariant: a stage trains from its parent's adapter (the nearest earlier stage the run has:
// selected, or run before), never silently from the base model. A stage records the content
// hash of the adapter it started from and of its data snapshot; its own adapter's hash is
// recorded when it finishes. A stage is STALE when its recorded input no longer matches its
// parent's current output (the parent was re-run), when its parent is stale, missing or failed,
// or when its data snapshot changed since. A stage whose parent is not ok, is stale, or whose
// adapter on disk no longer has the recorded hash (corrupted, replaced) is refused with the
// parent's state and the command that fixes it.
//
// Paths inside run.json are relative to the run folder (relocatable runs); `inRun` reads both
// those and the absolute paths older runs recorded.
//
// Known limit: the adapter hash reads the adapter's weights once per use (a LoRA adapter is a few
// MB; a full fine-tune's weights would make this seconds, not milliseconds).
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { isAbsolute, join, relative } from 'node:path';
import type { RunRecord, StageRecord } from '../artifacts/index.js';
import { STAGES, type StageName } from '../config/schema.js';
import { targetsForStage } from '../data/targets.js';
import { EXIT, PosttrainError } from '../errors.js';
import { resumeRunCommand, stageCommand } from './commands.js';

/** The files whose bytes are an adapter: its weights and its config (not README or our metadata). */
const ADAPTER_FILES = ['adapter_config.json', 'adapter_model.safetensors'];

/** A path as run.json keeps it (relative to the run folder when it is inside it). */
export function toRun(runDir: string, p: string): string {
  const rel = relative(runDir, p);
  return rel.startsWith('..') || isAbsolute(rel) ? p : rel;
}

/** A path run.json recorded, made absolute: relative ones are inside the run folder. */
export function inRun(runDir: string, p: string): string;
export function inRun(runDir: string, p: string | null | undefined): string | null;
export function inRun(runDir: string, p: string | null | undefined): string | null {
  if (p === null || p === undefined) return null;
  return isAbsolute(p) ? p : join(runDir, p);
}

/** sha256 over the adapter's weight and config files; null when the folder lacks them. */
export function adapterDigest(dir: string): string | null {
  const h = createHash('sha256');
  for (const f of ADAPTER_FILES) {
    const p = join(dir, f);
    if (!existsSync(p)) return null;
    h.update(`${f}\0`);
    h.update(createHash('sha256').update(readFileSync(p)).digest('hex'));
  }
  return h.digest('hex');
}

/** The stage a stage trains from: the nearest earlier stage the run selected or ran; null = base model. */
export function parentOf(record: RunRecord, stage: StageName): StageName | null {
  for (let i = STAGES.indexOf(stage) - 1; i >= 0; i--) {
    const s = STAGES[i]!;
    const rec = record.stages[s];
    if (record.stages_selected.includes(s) || (rec && rec.status !== 'pending')) return s;
  }
  return null;
}

export interface Staleness {
  stale: boolean;
  reason: string | null;
}

/** Whether each finished stage still stands on what it was trained from. */
export function staleness(record: RunRecord): Partial<Record<StageName, Staleness>> {
  const out: Partial<Record<StageName, Staleness>> = {};
  for (const stage of STAGES) {
    const st = record.stages[stage];
    if (!st || st.status !== 'ok') continue;
    out[stage] = { stale: false, reason: null };
    const why = staleReason(record, stage, st, out);
    if (why) out[stage] = { stale: true, reason: why };
  }
  return out;
}

function staleReason(record: RunRecord, stage: StageName, st: StageRecord, known: Partial<Record<StageName, Staleness>>): string | null {
  const inputs = st.inputs;
  if (!inputs) return null; // recorded before lineage: nothing to compare
  for (const t of targetsForStage(stage)) {
    const now = record.data[t]?.sha256;
    if (inputs.data_sha256[t] !== undefined && now !== undefined && inputs.data_sha256[t] !== now) return `data.${t} changed since it trained`;
  }
  const parent = parentOf(record, stage);
  if (parent === null) return inputs.parent === null ? null : `it trained from ${inputs.parent}, which this run no longer has`;
  const p = record.stages[parent];
  if (!p || p.status !== 'ok') return `its parent ${parent} is ${p?.status ?? 'not run'}`;
  if (known[parent]?.stale) return `its parent ${parent} is stale`;
  if (inputs.parent !== parent) return `it trained from ${inputs.parent ?? 'the base model'}, not from ${parent}`;
  if (p.output_sha256 && inputs.adapter_sha256 !== p.output_sha256) return `${parent} was re-run after it (it trained on an earlier ${parent} adapter)`;
  return null;
}

/** A stage cannot start: its parent is missing, failed, stale or corrupted. Exit 2, with the fix. */
export class LineageError extends PosttrainError {
  constructor(message: string, hint: string) {
    super(message, { exitCode: EXIT.usage, hint });
  }
}

export interface ParentInput {
  parent: StageName | null;
  /** Absolute adapter folder to start from; null = the base model (the stage has no parent). */
  adapter: string | null;
  adapter_sha256: string | null;
}

/** What `stage` starts from, checked: throws LineageError rather than fall back to the base model. */
export function resolveParent(record: RunRecord, runDir: string, stage: StageName): ParentInput {
  const parent = parentOf(record, stage);
  if (parent === null) return { parent: null, adapter: null, adapter_sha256: null };
  const p = record.stages[parent];
  const fix = (why: string) => `Run ${parent} first (\`${stageCommand(parent, runDir)}\`), then ${stage}; ${why}`;
  if (!p || p.status !== 'ok') {
    throw new LineageError(
      `Stage ${stage} trains from ${parent}'s adapter, but ${parent} is ${p?.status ?? 'not run'} in run ${record.id}.`,
      fix('or select only later stages with a run of their own (`--stages`).'),
    );
  }
  const stale = staleness(record)[parent];
  if (stale?.stale) throw new LineageError(`Stage ${stage} trains from ${parent}, which is stale: ${stale.reason}.`, `\`${resumeRunCommand(runDir)}\` re-runs every stale stage in order.`);
  const adapter = inRun(runDir, p.output_adapter);
  const digest = adapter ? adapterDigest(adapter) : null;
  if (adapter === null || digest === null) {
    throw new LineageError(`Stage ${stage} trains from ${parent}'s adapter, but ${adapter ?? `${parent}'s adapter`} is missing from run ${record.id}.`, fix('it writes the adapter again.'));
  }
  if (p.output_sha256 && digest !== p.output_sha256) {
    throw new LineageError(
      `Stage ${stage} trains from ${parent}'s adapter, but ${adapter} is not what ${parent} wrote (its content changed: corrupted or replaced).`,
      fix('it writes the adapter again.'),
    );
  }
  return { parent, adapter, adapter_sha256: digest };
}

/** sha256 of a config as JSON with sorted keys: the same settings always hash the same. */
export function configDigest(config: unknown): string {
  const canonical = (v: unknown): unknown =>
    Array.isArray(v) ? v.map(canonical) : v && typeof v === 'object' ? Object.fromEntries(Object.keys(v).sort().map((k) => [k, canonical((v as Record<string, unknown>)[k])])) : v;
  return createHash('sha256').update(JSON.stringify(canonical(config))).digest('hex');
}

/** The inputs a stage records when it starts: what it stands on (adapter, data) and what it ran with (config). */
export function stageInputs(record: RunRecord, stage: StageName, input: ParentInput, config: unknown): NonNullable<StageRecord['inputs']> {
  return {
    parent: input.parent,
    adapter_sha256: input.adapter_sha256,
    data_sha256: Object.fromEntries(targetsForStage(stage).flatMap((t) => (record.data[t] ? [[t, record.data[t]!.sha256]] : []))),
    config_sha256: configDigest(config),
  };
}
