// The stage catalogue, TypeScript side: the one place a stage is named, with what the controller
// needs to know about it. Everything that used to spell the stages out (the config's stage list,
// run order, data targets, health rules, the live view's, `show`'s and the report's key metrics)
// reads this table. Its Python twin is sidecar/posttrain_sidecar/catalogue.py (which trainer runs
// a stage); tests/config/catalogue.test.ts fails when the two disagree on names, order or data.
//
// Each stage's config schema stays in config/schema.ts (zod builds the whole config there) keyed
// by these names, so a stage missing there is a type error.
import type { DataKind, HealthRule } from '../config/schema.js';

/** Pipeline order: a stage trains on the adapter of the nearest earlier stage the run selected. */
export const STAGES = ['sft', 'orpo', 'dpo', 'kto', 'simpo', 'grpo', 'rlhf'] as const;
export type StageName = (typeof STAGES)[number];

/** RLHF trains a reward model, then a policy against it. */
export type Phase = 'reward_model' | 'policy';

export interface StageEntry {
  /** Runs when runtime.stages is not set (the classic chain); others are chosen with --stages. */
  byDefault: boolean;
  /** Data targets the stage reads (`data.<target>` in the config, `posttrain validate <target>`) → row kind. */
  data: Readonly<Record<string, DataKind>>;
  /** Config prefix of the trainer a hint names (for RLHF: its policy phase). */
  trainer: string;
  /** The health rules (pipeline/health.ts) that watch this stage's metrics. */
  health: readonly HealthRule[];
  /** Metric keys worth a glance in the live view and `show`, in the order shown. */
  live: readonly string[];
  /** The signals the report charts first (README's "signal to watch"). */
  report: readonly string[];
  /** Phases in order, with the live view's keys for each (null: one phase). */
  phases: Readonly<Partial<Record<Phase, { live: readonly string[] }>>> | null;
}

const POLICY_RULES = ['nan_loss', 'reward_std_zero', 'completions_clipped', 'kl_runaway'] as const satisfies readonly HealthRule[];

export const STAGE_CATALOGUE = {
  sft: {
    byDefault: true,
    data: { sft: 'sft' },
    trainer: 'stages.sft',
    health: ['nan_loss'],
    live: ['train/loss'],
    report: ['train/loss'],
    phases: null,
  },
  orpo: {
    // ORPO (TRL experimental ORPOTrainer): SFT and an odds-ratio preference term in one stage, no
    // reference model, so it may be a run's first stage.
    byDefault: false,
    data: { orpo: 'preference' },
    trainer: 'stages.orpo',
    health: ['nan_loss'],
    live: ['train/loss', 'rewards/margins', 'rewards/accuracies'],
    report: ['train/loss', 'train/nll_loss', 'rewards/margins', 'rewards/accuracies'],
    phases: null,
  },
  dpo: {
    byDefault: true,
    data: { dpo: 'preference' },
    trainer: 'stages.dpo',
    health: ['nan_loss', 'dpo_accuracy_stuck'],
    live: ['train/loss', 'rewards/margins', 'rewards/accuracies'],
    report: ['train/loss', 'rewards/margins', 'rewards/accuracies'],
    phases: null,
  },
  kto: {
    // KTO (TRL's KTOTrainer): desirable / undesirable completions; preference pairs are unpaired
    // by TRL (chosen → desirable, rejected → undesirable). Reference: the previous stage's model.
    byDefault: false,
    data: { kto: 'preference' },
    trainer: 'stages.kto',
    health: ['nan_loss'],
    live: ['train/loss', 'rewards/margins', 'train/kl'],
    report: ['train/loss', 'rewards/chosen', 'rewards/margins', 'train/kl'],
    phases: null,
  },
  simpo: {
    // SimPO (TRL experimental CPOTrainer, loss_type simpo): reference-free, length-normalised
    // log-likelihood margins with a target margin gamma.
    byDefault: false,
    data: { simpo: 'preference' },
    trainer: 'stages.simpo',
    health: ['nan_loss'],
    live: ['train/loss', 'rewards/margins', 'rewards/accuracies'],
    report: ['train/loss', 'rewards/margins', 'rewards/accuracies'],
    phases: null,
  },
  grpo: {
    byDefault: true,
    data: { grpo: 'prompt' },
    trainer: 'stages.grpo',
    health: [...POLICY_RULES, 'reward_nonfinite'],
    live: ['train/reward', 'train/kl'],
    report: ['train/reward', 'train/kl', 'completions/clipped_ratio'],
    phases: null,
  },
  rlhf: {
    byDefault: true,
    data: { 'rlhf.preferences': 'preference', 'rlhf.prompts': 'prompt' },
    trainer: 'stages.rlhf.policy',
    health: POLICY_RULES,
    live: ['rm/train/loss', 'rm/eval/accuracy', 'train/reward', 'train/kl'],
    report: ['rm/train/loss', 'rm/eval/accuracy', 'train/reward', 'train/kl'],
    phases: {
      reward_model: { live: ['rm/train/loss', 'rm/eval/accuracy'] },
      policy: { live: ['train/reward', 'train/kl'] },
    },
  },
} as const satisfies Record<StageName, StageEntry>;

export const stageEntry = (stage: StageName): StageEntry => STAGE_CATALOGUE[stage];

/** What runs when runtime.stages is not set. */
export const DEFAULT_STAGES: readonly StageName[] = STAGES.filter((s) => STAGE_CATALOGUE[s].byDefault);

/** Where a stage sits in the pipeline (0-based). */
export const stageOrder = (stage: StageName): number => STAGES.indexOf(stage);

/** Whether a health rule watches this stage. */
export const ruleApplies = (stage: StageName, rule: HealthRule): boolean => (STAGE_CATALOGUE[stage].health as readonly HealthRule[]).includes(rule);

/** The phase a stage starts in (null: a one-phase stage). */
export const firstPhase = (stage: StageName): Phase | null => {
  const phases = STAGE_CATALOGUE[stage].phases;
  return phases ? (Object.keys(phases)[0] as Phase) : null;
};

/** Data target → (row kind, stage), for every stage, in pipeline order. */
export type DataTarget = { [S in StageName]: keyof (typeof STAGE_CATALOGUE)[S]['data'] }[StageName];
