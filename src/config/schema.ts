// The one definition of the config's shape. Everything else (presets, files, --set, the JSON
// Schema for editors, the sidecar's stage.request) is checked against these schemas.
//
// Defaults are chosen for LoRA training of a small causal LM on one device; where TRL's own
// defaults are tuned for full fine-tuning (learning rates ~1e-6) or are unsafe for small runs
// (GRPO: beta 0, 8 generations of 512 tokens) we pick the LoRA-appropriate value and say why.
import { z } from 'zod';

export const STAGES = ['sft', 'dpo', 'grpo', 'rlhf'] as const;
export type StageName = (typeof STAGES)[number];

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
    .default([...STAGES])
    .describe('Stages to run, in pipeline order (sft → dpo → grpo → rlhf).'),
  launcher: z.enum(['local', 'accelerate', 'torchrun']).default('local'),
  num_processes: z.int().min(1).default(1),
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
});

export const ModelSchema = z.strictObject({
  id: z.string().min(1).describe('Hub id (org/name) or a local folder (a path starting with ./, ../, / or ~).'),
  revision: z.string().min(1).nullable().default(null),
  dtype: z.enum(['auto', 'float32', 'bfloat16', 'float16']).default('auto'),
  trust_remote_code: z.boolean().default(false).describe('Runs code shipped with the model. Off unless you trust the source.'),
  use_4bit: z.boolean().default(false).describe('Load the base model in 4-bit nf4 (QLoRA). Needs CUDA and bitsandbytes.'),
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

const dataSource = (kind: DataKind) =>
  z.strictObject({
    path: z.string().min(1).nullable().default(null).describe('JSONL file.'),
    format: z.enum(DATA_KINDS[kind].formats).default('auto'),
    columns: z
      .record(z.string().min(1), z.string().min(1))
      .default({})
      .describe('field → source column. A source may be a dot path (instances.0.output) or several joined with + (instruction+instances.0.input).'),
    limit: z.int().min(1).nullable().default(null).describe('Use at most this many rows.'),
    eval_fraction: z.number().min(0).max(0.5).default(0).describe('Fraction of rows held out for evaluation.'),
    max_length: z.int().min(8).nullable().default(null).describe('Max tokens per example (prompt + completion); longer ones are truncated.'),
    max_prompt_length: z.int().min(1).nullable().default(null).describe('Max prompt tokens; longer prompts are truncated from the left.'),
    max_chars: z.int().min(1).nullable().default(null).describe('Rows whose text exceeds this many characters are reported as over-long.'),
    on_bad_rows: z
      .enum(['error', 'skip'])
      .default('error')
      .describe('error: any bad row stops the run before it starts; skip: bad rows are reported, left out, and counted in run.json.'),
  });

export const SftDataSchema = dataSource('sft');
export const PreferenceDataSchema = dataSource('preference');
export const PromptDataSchema = dataSource('prompt');
export type DataSourceConfig = z.infer<typeof SftDataSchema> | z.infer<typeof PreferenceDataSchema> | z.infer<typeof PromptDataSchema>;

export const DataSchema = z.strictObject({
  sft: SftDataSchema.prefault({}),
  dpo: PreferenceDataSchema.prefault({}),
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
  use_vllm: z.boolean().default(false),
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

export const GrpoStageSchema = z.strictObject({
  ...trainFields(1e-5, 8),
  ...generationFields(0.04),
  loss_type: z.enum(['grpo', 'dr_grpo', 'dapo', 'bnpo']).default('dapo'),
  reward_funcs: z.array(RewardFuncSchema).min(1).default([{ name: 'exact_answer', weight: 1, args: {} }]),
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
  dpo: DpoStageSchema.prefault({}),
  grpo: GrpoStageSchema.prefault({}),
  rlhf: RlhfStageSchema.prefault({}),
});

// ---------------------------------------------------------------------------------------------

export const ConfigSchema = z.strictObject({
  $schema: z.string().optional().describe('Path or URL of the JSON Schema, for editors. Ignored.'),
  runtime: RuntimeSchema.prefault({}),
  model: ModelSchema,
  data: DataSchema.prefault({}),
  stages: StagesSchema.prefault({}),
});

export type Config = z.infer<typeof ConfigSchema>;
export type ConfigInput = z.input<typeof ConfigSchema>;
export type TrainSettings = z.infer<typeof SftStageSchema>;
export type GenerationSettings = z.infer<typeof GrpoStageSchema>;
