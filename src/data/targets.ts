// Which data sources a stage reads, what kind of rows each holds, and which extra columns its
// reward functions need. Shared by `posttrain validate` and the pre-run check.
import type { Config, DataKind, DataSourceConfig, RewardFunc, StageName } from '../config/schema.js';
import { type DataTarget, STAGE_CATALOGUE, STAGES } from '../stages/catalogue.js';

export type { DataTarget };

/** Every data target of every stage (the catalogue's `data`), in pipeline order. */
export const DATA_TARGETS = Object.fromEntries(
  STAGES.flatMap((stage) => Object.entries(STAGE_CATALOGUE[stage].data).map(([target, kind]) => [target, { kind, stage }])),
) as Readonly<Record<DataTarget, { kind: DataKind; stage: StageName }>>;

export const DATA_TARGET_NAMES = Object.keys(DATA_TARGETS) as DataTarget[];

export const isDataTarget = (s: string): s is DataTarget => Object.hasOwn(DATA_TARGETS, s);

export function targetsForStage(stage: StageName): DataTarget[] {
  return DATA_TARGET_NAMES.filter((t) => DATA_TARGETS[t].stage === stage);
}

/** `data.<target>` of the config (a dotted target is a path: `rlhf.prompts` → data.rlhf.prompts). */
export function sourceOf(config: Config, target: DataTarget): DataSourceConfig {
  let cur: unknown = config.data;
  for (const k of target.split('.')) cur = (cur as Record<string, unknown>)[k];
  return cur as DataSourceConfig;
}

/** Columns a built-in reward function reads from each prompt row. */
export function rewardColumns(funcs: readonly RewardFunc[]): string[] {
  const cols = new Set<string>();
  for (const f of funcs) {
    if (f.name === 'exact_answer') cols.add(typeof f.args.field === 'string' ? f.args.field : 'answer');
  }
  return [...cols];
}

export function requiredFieldsFor(config: Config, target: DataTarget): string[] {
  return target === 'grpo' ? rewardColumns(config.stages.grpo.reward_funcs) : [];
}
