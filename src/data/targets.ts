// Which data sources a stage reads, what kind of rows each holds, and which extra columns its
// reward functions need. Shared by `posttrain validate` and the pre-run check.
import type { Config, DataKind, DataSourceConfig, RewardFunc, StageName } from '../config/schema.js';

export const DATA_TARGETS = {
  sft: { kind: 'sft', stage: 'sft' },
  dpo: { kind: 'preference', stage: 'dpo' },
  grpo: { kind: 'prompt', stage: 'grpo' },
  'rlhf.preferences': { kind: 'preference', stage: 'rlhf' },
  'rlhf.prompts': { kind: 'prompt', stage: 'rlhf' },
} as const satisfies Record<string, { kind: DataKind; stage: StageName }>;

export type DataTarget = keyof typeof DATA_TARGETS;
export const DATA_TARGET_NAMES = Object.keys(DATA_TARGETS) as DataTarget[];

export const isDataTarget = (s: string): s is DataTarget => Object.hasOwn(DATA_TARGETS, s);

export function targetsForStage(stage: StageName): DataTarget[] {
  return DATA_TARGET_NAMES.filter((t) => DATA_TARGETS[t].stage === stage);
}

export function sourceOf(config: Config, target: DataTarget): DataSourceConfig {
  switch (target) {
    case 'sft':
      return config.data.sft;
    case 'dpo':
      return config.data.dpo;
    case 'grpo':
      return config.data.grpo;
    case 'rlhf.preferences':
      return config.data.rlhf.preferences;
    case 'rlhf.prompts':
      return config.data.rlhf.prompts;
  }
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
