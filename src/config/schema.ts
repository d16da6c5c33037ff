// The one definition of the config's shape. Everything else (presets, files, --set, the JSON
// Schema for editors, the sidecar's stage.request) is checked against these schemas.
//
// Defaults are chosen for LoRA training of a small causal LM on one device; where TRL's own
// defaults are tuned for full fine-tuning (learning rates ~1e-6) or are unsafe for small runs
// (GRPO: beta 0, 8 generations of 512 tokens) we pick the LoRA-appropriate value and say why.
import { z } from 'zod';
import { DEFAULT_STAGES, STAGES, type StageName } from '../stages/catalogue.js';

// The stage names live in the catalogue (src/stages/catalogue.ts); re-exported for the many readers.
export { STAGES, type StageName };

// ---------------------------------------------------------------------------------------------
// runtime

export const RuntimeSchema = z.strictObject({
  device: z.enum(['auto', 'cpu', 'cuda']).default('auto').describe('auto picks cuda when available.'),
  seed: z.int().min(0).default(42),
  threads: z.int().min(1).nullable().default(null).describe('torch CPU threads; null = torch default.'),
  runs_dir: z.string().min(1).default('runs').describe('Folder that holds one sub-folder per run.'),
  stages: z
    .array(z.enum(STAGES))
    .min(1)
    .default([...DEFAULT_STAGES])
    .describe(`Stages to run, in pipeline order (${STAGES.join(' → ')}); default ${DEFAULT_STAGES.join(', ')}.`),
  launcher: z
    .enum(['local', 'accelerate', 'torchrun'])
    .default('local')
    .describe('local: one sidecar process. accelerate / torchrun: num_processes ranks under that launcher; rank 0 talks to the controller.'),
  num_processes: z.int().min(1).default(1).describe('Ranks (one per GPU; the world size across all machines). batch_size is per rank.'),
  accelerate_config: z
    .string()
    .min(1)
    .nullable()
    .default(null)
    .describe('Built-in name (ddp, fsdp, deepspeed-zero2, deepspeed-zero3) or a path to an accelerate config file.'),
  python: z.string().min(1).nullable().default(null).describe('Python interpreter for the sidecar; null = the project virtualenv.'),
  report_to: z.array(z.enum(['tensorboard', 'wandb', 'trackio'])).default([]),
  heartbeat_interval_s: z.number().positive().default(2),
  heartbeat_timeout_s: z.number().positive().default(60),
  start_timeout_s: z.number().positive().default(180).describe('How long the sidecar may take to say hello (cold torch import).'),
  stall_timeout_s: z
    .number()
    .positive()
    .nullable()
    .default(1800)
    .describe("The sidecar's main thread may stay this long in one place (one training step, one reward-function call, one setup phase) before the run is stopped with that place named. Heartbeats come from another thread, so they cannot see this. null = never."),
  memory_check: z
    .enum(['error', 'warn', 'off'])
    .default('error')
    .describe("Before any weights load, each stage's peak memory is estimated from the model config and printed. error: a stage whose estimate exceeds the device's free memory stops the run with the settings that would make it fit; warn: print that and go on; off: no estimate."),
});

// ---------------------------------------------------------------------------------------------
// model

export const AdapterSchema = z.strictObject({
  mode: z
    .enum(['auto', 'lora', 'qlora'])
    .default('auto')
    .describe('auto: QLoRA when CUDA + bitsandbytes are present and use_4bit is set, plain LoRA otherwise.'),
  r: z.int().min(1).default(16),
  alpha: z.number().positive().default(32),
  dropout: z.number().min(0).lt(1).default(0.05),
  target_modules: z.union([z.literal('all-linear'), z.array(z.string().min(1)).min(1)]).default('all-linear'),
  use_dora: z.boolean().default(false).describe("DoRA (peft's use_dora): LoRA learns a direction and a magnitude per output row; often closer to full fine-tuning at the same rank, ~10-20% slower per step."),
  use_rslora: z.boolean().default(false).describe('rsLoRA: scale the update by alpha / sqrt(r) instead of alpha / r, so a high rank does not shrink it.'),
});

export const ModelSchema = z.strictObject({
  id: z.string().min(1).describe('Hub id (org/name) or a local folder (a path starting with ./, ../, / or ~).'),
  revision: z.string().min(1).nullable().default(null),
  dtype: z.enum(['auto', 'float32', 'bfloat16', 'float16']).default('auto'),
  trust_remote_code: z.boolean().default(false).describe('Runs code shipped with the model. Off unless you trust the source.'),
  use_4bit: z.boolean().default(false).describe('Load the base model in 4-bit nf4 (QLoRA). Needs CUDA and bitsandbytes.'),
  gradient_checkpointing: z
    .union([z.literal('auto'), z.boolean()])
    .default('auto')
    .describe('Recompute activations in the backward pass instead of keeping them: much less memory, ~30% more compute. auto: on with CUDA, off on CPU.'),
  adapter: AdapterSchema.prefault({}),
});

// ---------------------------------------------------------------------------------------------
// data: one shape for every source; the allowed formats and fields differ per kind.

export const DATA_KINDS = {
  sft: { formats: ['auto', 'prompt_response', 'prompt_completion', 'messages'], fields: ['prompt', 'response', 'completion', 'messages'] },
  preference: { formats: ['auto', 'explicit', 'implicit'], fields: ['prompt', 'chosen', 'rejected'] },
  // Prompt files may carry any extra column a reward function reads (e.g. `answer`).
  // `implicit` takes the prompt from a preference file's {chosen, rejected} shared prefix, so RLHF
  // can optimise the policy on the same prompts its reward model was trained on.
  prompt: { formats: ['auto', 'prompt', 'implicit'], fields: null },
} as const;
export type DataKind = keyof typeof DATA_KINDS;

/** `maxLength`: the default token limit; null where the trainer reads whole rows (reward model, prompts). */
const dataSource = (kind: DataKind, maxLength: number | null = null) =>
  z.strictObject({
    path: z.string().min(1).nullable().default(null).describe('JSONL file.'),
    format: z.enum(DATA_KINDS[kind].formats).default('auto'),
    columns: z
      .record(z.string().min(1), z.string().min(1))
      .default({})
      .describe('field → source column. A source may be a dot path (instances.0.output) or several joined with + (instruction+instances.0.input).'),
    limit: z.int().min(1).nullable().default(null).describe('Use at most this many rows.'),
    eval_fraction: z.number().min(0).max(0.5).default(0).describe('Fraction of rows held out for evaluation.'),
    max_length: z.int().min(8).nullable().default(maxLength).describe('Max tokens per example (prompt + completion); longer ones are truncated. null: no limit.'),
    max_prompt_length: z.int().min(1).nullable().default(null).describe('Max prompt tokens; longer prompts are truncated from the left.'),
    max_chars: z.int().min(1).nullable().default(null).describe('Rows whose text exceeds this many characters are reported as over-long.'),
    on_bad_rows: z
      .enum(['error', 'skip'])
      .default('error')
      .describe('error: any bad row stops the run before it starts; skip: bad rows are reported, left out, and counted in run.json.'),
  });

export const SftDataSchema = dataSource('sft', 1024);
export const PreferenceDataSchema = dataSource('preference');
/** Preference pairs a trainer tokenizes whole (DPO, ORPO, SimPO, KTO): 1024 tokens unless set. */
const PairDataSchema = dataSource('preference', 1024);
export const PromptDataSchema = dataSource('prompt');
export type DataSourceConfig = z.infer<typeof SftDataSchema> | z.infer<typeof PreferenceDataSchema> | z.infer<typeof PromptDataSchema>;

export const DataSchema = z.strictObject({
  sft: SftDataSchema.prefault({}),
  dpo: PairDataSchema.prefault({}),
  orpo: PairDataSchema.prefault({}).describe('Preference pairs for ORPO.'),
  simpo: PairDataSchema.prefault({}).describe('Preference pairs for SimPO.'),
  kto: PairDataSchema.prefault({}).describe('Preference pairs; TRL\'s KTOTrainer unpairs them (chosen: desirable, rejected: undesirable).'),
  grpo: PromptDataSchema.prefault({}),
  rlhf: z
    .strictObject({
      preferences: PreferenceDataSchema.prefault({ eval_fraction: 0.1 }).describe('Pairs for the reward model.'),
      prompts: PromptDataSchema.prefault({}).describe('Prompts the policy is optimised on.'),
    })
    .prefault({}),
});

// ---------------------------------------------------------------------------------------------
// stages

/** Optimiser/loop settings every trainer shares. `lr` differs per stage, so it has no default here. */
const trainFields = (learningRate: number, batchSize: number) => ({
  epochs: z.number().positive().default(1),
  max_steps: z.int().min(1).nullable().default(null).describe('When set, overrides epochs.'),
  learning_rate: z.number().positive().default(learningRate),
  batch_size: z.int().min(1).default(batchSize).describe('Per-device batch size.'),
  grad_accum: z.int().min(1).default(1),
  warmup_ratio: z.number().min(0).lt(1).default(0.03),
  lr_scheduler: z.enum(['linear', 'cosine', 'constant', 'constant_with_warmup']).default('cosine'),
  weight_decay: z.number().min(0).default(0),
  max_grad_norm: z.number().positive().default(1),
  logging_steps: z.int().min(1).default(1),
  save_steps: z.int().min(1).nullable().default(null).describe('Checkpoint every N steps; null = only at the end.'),
  save_total_limit: z.int().min(1).default(2),
  eval_steps: z
    .int()
    .min(1)
    .nullable()
    .default(null)
    .describe('Evaluate on the held-out rows (data.<target>.eval_fraction) every N steps. null: at each checkpoint (save_steps), or every 50 steps when save_steps is null.'),
  trainer_args: z
    .record(z.string(), z.unknown())
    .default({})
    .describe("Any other field of this trainer's TRL config (SFTConfig, DPOConfig, GRPOConfig, RewardConfig, RLOOConfig), passed through as is, e.g. {neftune_noise_alpha: 5} or GRPO {importance_sampling_level: sequence}. Checked against the dataclass before training (unknown field, wrong type); fields posttrain sets from other keys are refused with that key."),
});

export const RewardFuncSchema = z.strictObject({
  name: z
    .string()
    .regex(
      /^(exact_answer|format|length|[A-Za-z_][\w.]*:[A-Za-z_]\w*)$/,
      'expected a built-in (exact_answer, format, length) or an import path module:function',
    ),
  weight: z.number().default(1),
  args: z.record(z.string(), z.unknown()).default({}),
});
export type RewardFunc = z.infer<typeof RewardFuncSchema>;

/** Online generation settings shared by GRPO and the RLHF policy phase. */
const generationFields = (beta: number) => ({
  num_generations: z.int().min(2).default(8).describe('Completions per prompt; advantages need at least 2.'),
  max_completion_length: z.int().min(1).default(256),
  temperature: z.number().positive().default(1),
  top_p: z.number().gt(0).max(1).default(1),
  beta: z.number().min(0).default(beta).describe('KL coefficient towards the reference model.'),
  epsilon: z.number().positive().default(0.2).describe('PPO-style clipping range.'),
  steps_per_generation: z.int().min(1).nullable().default(null).describe('null = grad_accum (TRL default).'),
  num_iterations: z.int().min(1).default(1),
  scale_rewards: z.enum(['group', 'batch', 'none']).default('group'),
  use_vllm: z.boolean().default(false).describe('Generate with vLLM (colocate mode) on CUDA machines that have vllm installed; an error on CPU.'),
});

export const SftStageSchema = z.strictObject({
  ...trainFields(2e-4, 4),
  completion_only_loss: z.boolean().default(true).describe('Loss on the response tokens only.'),
  packing: z.boolean().default(false),
});

export const DPO_LOSSES = ['sigmoid', 'ipo', 'hinge', 'robust', 'bco_pair', 'sppo_hard', 'nca_pair', 'apo_zero', 'apo_down'] as const;
export const DpoStageSchema = z.strictObject({
  ...trainFields(5e-6, 4),
  beta: z.number().positive().default(0.1),
  loss_type: z.enum(DPO_LOSSES).default('sigmoid'),
  label_smoothing: z.number().min(0).max(0.5).default(0).describe('cDPO / robust DPO; only for sigmoid and robust losses.'),
});

export const KtoStageSchema = z.strictObject({
  ...trainFields(5e-6, 4),
  beta: z.number().positive().default(0.1).describe('KL coefficient towards the reference (the previous stage\'s model).'),
  desirable_weight: z.number().positive().default(1).describe('Weight of the desirable (chosen) completions\' loss.'),
  undesirable_weight: z.number().positive().default(1).describe('Weight of the undesirable (rejected) completions\' loss; raise it when there are fewer of them.'),
});

export const OrpoStageSchema = z.strictObject({
  ...trainFields(5e-5, 4),
  beta: z.number().positive().default(0.1).describe("ORPO's lambda: weight of the odds-ratio term next to the SFT loss on the chosen completion."),
});

export const SimpoStageSchema = z.strictObject({
  ...trainFields(5e-6, 4),
  beta: z.number().positive().default(2).describe('Scale of the length-normalised reward (SimPO paper: 2.0-2.5).'),
  simpo_gamma: z.number().min(0).default(0.5).describe('Target reward margin between chosen and rejected, as a ratio of beta (TRL: gamma / beta).'),
  cpo_alpha: z.number().min(0).default(0).describe('Weight of an added NLL term on the chosen completion (0: pure SimPO; > 0: CPO-SimPO).'),
});

export const GrpoStageSchema = z.strictObject({
  ...trainFields(1e-5, 8),
  ...generationFields(0.04),
  loss_type: z.enum(['grpo', 'dr_grpo', 'dapo', 'bnpo']).default('dapo'),
  reward_funcs: z.array(RewardFuncSchema).min(1).default([{ name: 'exact_answer', weight: 1, args: {} }]),
  reward_timeout_s: z
    .number()
    .positive()
    .nullable()
    .default(60)
    .describe('Longest one call of one reward function may take (seconds); past it the stage stops naming the function. null = no limit.'),
});

export const RlhfStageSchema = z.strictObject({
  reward_model: z
    .strictObject({
      ...trainFields(1e-4, 8),
      center_rewards_coefficient: z.number().min(0).nullable().default(null),
    })
    .prefault({}),
  policy: z
    .strictObject({
      ...trainFields(1e-5, 8),
      ...generationFields(0.05),
      algorithm: z.enum(['grpo', 'rloo']).default('grpo'),
    })
    .prefault({}),
});

export const StagesSchema = z.strictObject({
  sft: SftStageSchema.prefault({}),
  orpo: OrpoStageSchema.prefault({}),
  dpo: DpoStageSchema.prefault({}),
  kto: KtoStageSchema.prefault({}),
  simpo: SimpoStageSchema.prefault({}),
  grpo: GrpoStageSchema.prefault({}),
  rlhf: RlhfStageSchema.prefault({}),
});

// ---------------------------------------------------------------------------------------------
// monitor: health rules over the metric stream (src/pipeline/health.ts). Each rule prints one
// alert per stage with what to change; a fatal one stops the stage with a checkpoint (exit 1).

export const HEALTH_RULES = ['nan_loss', 'reward_nonfinite', 'reward_std_zero', 'completions_clipped', 'kl_runaway', 'dpo_accuracy_stuck'] as const;
export type HealthRule = (typeof HEALTH_RULES)[number];

/** What every rule has; `fatal` is the rule's own default, `monitor.stop_on` adds to it. */
const ruleFields = (fatal: boolean) => ({
  enabled: z.boolean().default(true).describe('Check this rule at all.'),
  fatal: z.boolean().default(fatal).describe('Stop the stage (checkpoint saved, exit 1) when this rule fires, instead of only warning. monitor.stop_on can make a rule fatal too.'),
});
/** "For N logged steps in a row": steps count metric events carrying the key, one per step. */
const streak = (n: number, what: string) =>
  z.int().min(1).default(n).describe(`Logged steps in a row ${what} before the rule fires (with logging_steps > 1 each logged step covers several training steps).`);

export const MonitorSchema = z.strictObject({
  nan_loss: z
    .strictObject(ruleFields(true))
    .prefault({})
    .describe('Any *loss metric (train/loss, eval/loss, rm/train/loss, …) is NaN or ±inf. Fatal by default: the weights are usually ruined from that step on.'),
  reward_nonfinite: z
    .strictObject(ruleFields(true))
    .prefault({})
    .describe('GRPO: a reward function returned NaN or ±inf (rewards/<function>/nonfinite above 0). Such rewards are dropped (TRL reads them as None); fatal by default, since a function that only returns them trains nothing while every step "succeeds".'),
  reward_std_zero: z
    .strictObject({
      ...ruleFields(false),
      fraction: z
        .number()
        .gt(0)
        .max(1)
        .default(0.999)
        .describe('Fires when train/frac_reward_zero_std (groups whose completions all got the same reward) is at least this, or train/reward_std is 0.'),
      steps: streak(10, 'with no reward variance within any group'),
    })
    .prefault({})
    .describe('GRPO / RLHF policy: every group of completions scores the same, so every advantage is 0 and the policy learns nothing.'),
  completions_clipped: z
    .strictObject({
      ...ruleFields(false),
      ratio: z.number().gt(0).max(1).default(1).describe('Fires when completions/clipped_ratio (share of completions cut at max_completion_length) is at least this.'),
      steps: streak(5, 'at or above ratio'),
    })
    .prefault({})
    .describe('GRPO / RLHF policy: completions keep hitting max_completion_length, so rewards judge cut-off text.'),
  kl_runaway: z
    .strictObject({
      ...ruleFields(false),
      // TRL's train/kl is the mean per-token KL to the reference. Healthy runs with beta
      // 0.01–0.1 stay well under 1 nat/token; the smoke preset (lr 3e-3 on a random-init model)
      // peaks at 4.6. 10 nats/token means the policy picks tokens the reference finds ~e^10 times
      // less likely: drift or reward hacking, not learning.
      max: z.number().positive().default(10).describe('Fires when train/kl (mean per-token KL to the reference, nats) exceeds this on any logged step.'),
      growth: z
        .number()
        .gt(1)
        .default(4)
        .describe('Also fires when the mean train/kl of the last `steps` logged steps is at least this many times the mean of the `steps` before.'),
      growth_min: z
        .number()
        .min(0)
        .default(1)
        .describe('The growth test only applies once that recent mean is at least this (KL starts at 0, where any ratio is huge).'),
      steps: z.int().min(1).default(10).describe('Window, in logged steps, of the growth test.'),
    })
    .prefault({})
    .describe('GRPO / RLHF policy: the policy drifts away from the reference model.'),
  dpo_accuracy_stuck: z
    .strictObject({
      ...ruleFields(false),
      tolerance: z.number().min(0).lt(0.5).default(0.05).describe('Fires when the mean rewards/accuracies over `steps` logged steps is within this of 0.5 (chance).'),
      steps: z.int().min(1).default(20).describe('Window, in logged steps, that the mean accuracy is taken over.'),
      warmup_steps: z
        .int()
        .min(0)
        .default(20)
        .describe('Training steps ignored first: accuracy starts near chance (step 1 is 0, every reward is 0) until the policy moves.'),
    })
    .prefault({})
    .describe('DPO: the policy does not separate chosen from rejected better than chance.'),
  stop_on: z
    .array(z.enum([...HEALTH_RULES, 'all']))
    .default([])
    .describe('Rules that stop the stage when they fire, besides those with fatal: true ("all": every enabled rule). The CLI flag --stop-on sets this.'),
});
export type MonitorConfig = z.infer<typeof MonitorSchema>;

// ---------------------------------------------------------------------------------------------

export const ConfigSchema = z.strictObject({
  $schema: z.string().optional().describe('Path or URL of the JSON Schema, for editors. Ignored.'),
  runtime: RuntimeSchema.prefault({}),
  model: ModelSchema,
  data: DataSchema.prefault({}),
  stages: StagesSchema.prefault({}),
  monitor: MonitorSchema.prefault({}).describe('Health alerts over each stage\'s metric stream: printed once per rule and stage with what to change, written to stages/<stage>/alerts.jsonl; fatal ones stop the stage.'),
});

export type Config = z.infer<typeof ConfigSchema>;
export type ConfigInput = z.input<typeof ConfigSchema>;
export type TrainSettings = z.infer<typeof SftStageSchema>;
export type GenerationSettings = z.infer<typeof GrpoStageSchema>;
