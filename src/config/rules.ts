// Cross-field rules: combinations that each pass the schema but cannot train, or would train
// wrongly without saying so. All of them run and all violations are reported together, before
// any process starts.
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { ConfigIssue } from '../errors.js';
import { BUILTIN_ACCELERATE_CONFIGS, GPU_ONLY_ACCELERATE_CONFIGS, isBuiltinAccelerateConfig } from './accelerate.js';
import { type Config, DATA_KINDS, STAGES, type StageName } from './schema.js';
import { didYouMean } from './suggest.js';
import { DATA_TARGET_NAMES, DATA_TARGETS, sourceOf } from '../data/targets.js';

type Rule = (c: Config) => ConfigIssue[];

const issue = (path: string, message: string): ConfigIssue => ({ path, message });

/** TRL groups `num_generations` completions per prompt inside one generation batch. */
function generationRules(prefix: string, g: Config['stages']['grpo'] | Config['stages']['rlhf']['policy'], c: Config): ConfigIssue[] {
  const out: ConfigIssue[] = [];
  const numProcesses = c.runtime.num_processes;
  const spg = g.steps_per_generation ?? g.grad_accum;
  const genBatch = g.batch_size * spg * numProcesses;
  if (genBatch % g.num_generations !== 0) {
    out.push(
      issue(
        `${prefix}.num_generations`,
        `the generation batch (batch_size ${g.batch_size} × steps_per_generation ${spg} × num_processes ${numProcesses} = ${genBatch}) ` +
          `must be divisible by num_generations ${g.num_generations}. Fix: make batch_size a multiple of ${g.num_generations}, or lower num_generations.`,
      ),
    );
  }
  // The generation buffer is not part of a Trainer checkpoint: a checkpoint taken in the middle of
  // a generation cycle cannot be resumed exactly.
  if (g.save_steps !== null && g.save_steps % spg !== 0) {
    out.push(issue(`${prefix}.save_steps`, `must be a multiple of steps_per_generation (${spg}) so a checkpoint never falls inside a generation cycle; got ${g.save_steps}.`));
  }
  // Whether vLLM is installed is the sidecar's to check; CPU is known to be impossible now.
  if (g.use_vllm && c.runtime.device === 'cpu') out.push(issue(`${prefix}.use_vllm`, 'vLLM generation needs CUDA; runtime.device is "cpu". Set use_vllm false.'));
  return out;
}

const rules: Rule[] = [
  // Pipeline order is what chaining relies on.
  (c) => {
    const seen = new Set<StageName>();
    const out: ConfigIssue[] = [];
    let last = -1;
    for (const s of c.runtime.stages) {
      if (seen.has(s)) out.push(issue('runtime.stages', `stage "${s}" is listed twice.`));
      seen.add(s);
      const idx = STAGES.indexOf(s);
      if (idx < last) out.push(issue('runtime.stages', `stages run in the order ${STAGES.join(' → ')}; got ${c.runtime.stages.join(', ')}.`));
      last = Math.max(last, idx);
    }
    return out;
  },

  (c) => {
    const out: ConfigIssue[] = [];
    const { mode } = c.model.adapter;
    if (mode === 'qlora' && !c.model.use_4bit) out.push(issue('model.use_4bit', 'adapter.mode "qlora" means a 4-bit base model: set model.use_4bit true, or use adapter.mode "lora".'));
    if (mode === 'lora' && c.model.use_4bit) out.push(issue('model.adapter.mode', 'model.use_4bit is true but adapter.mode is "lora": use "qlora" (or "auto"), or set use_4bit false.'));
    if (c.runtime.device === 'cpu' && (mode === 'qlora' || (mode === 'lora' && c.model.use_4bit))) {
      out.push(issue('model.adapter.mode', '4-bit QLoRA needs CUDA and bitsandbytes; runtime.device is "cpu". Use adapter.mode "lora" or "auto".'));
    }
    if (c.runtime.device === 'cpu' && c.model.dtype === 'float16') {
      out.push(issue('model.dtype', 'float16 training is not supported on CPU; use "float32" or "auto".'));
    }
    return out;
  },

  (c) => {
    const out: ConfigIssue[] = [];
    if (c.runtime.launcher === 'local' && c.runtime.num_processes > 1) {
      out.push(issue('runtime.num_processes', `launcher "local" runs one process; for ${c.runtime.num_processes} set runtime.launcher to "accelerate" or "torchrun".`));
    }
    const ac = c.runtime.accelerate_config;
    if (ac !== null && c.runtime.launcher !== 'accelerate') {
      out.push(issue('runtime.accelerate_config', 'is only used with runtime.launcher "accelerate".'));
    } else if (ac !== null && !isBuiltinAccelerateConfig(ac) && !existsSync(ac)) {
      out.push(issue('runtime.accelerate_config', `"${ac}" is neither a built-in (${BUILTIN_ACCELERATE_CONFIGS.join(', ')}) nor an existing file.`));
    } else if (ac !== null && GPU_ONLY_ACCELERATE_CONFIGS.includes(ac) && c.runtime.device === 'cpu') {
      out.push(issue('runtime.accelerate_config', `"${ac}" shards across GPUs; runtime.device is "cpu". Use "ddp" (or leave it unset) on CPU.`));
    }
    if (c.runtime.heartbeat_timeout_s <= c.runtime.heartbeat_interval_s * 2) {
      out.push(issue('runtime.heartbeat_timeout_s', `must be more than twice heartbeat_interval_s (${c.runtime.heartbeat_interval_s}) or a busy sidecar is declared hung.`));
    }
    return out;
  },

  (c) => {
    const d = c.stages.dpo;
    if (d.label_smoothing > 0 && d.loss_type !== 'sigmoid' && d.loss_type !== 'robust') {
      return [issue('stages.dpo.label_smoothing', `only applies to loss_type "sigmoid" or "robust"; loss_type is "${d.loss_type}". Set it to 0 or change the loss.`)];
    }
    return [];
  },

  (c) => generationRules('stages.grpo', c.stages.grpo, c),
  (c) => generationRules('stages.rlhf.policy', c.stages.rlhf.policy, c),

  (c) =>
    c.stages.rlhf.policy.beta > 0
      ? []
      : [issue('stages.rlhf.policy.beta', 'RLHF optimises against a learned reward model; without a KL term (beta > 0) the policy drifts into reward hacking. Use e.g. 0.05.')],

  // A rule named in stop_on that is switched off would never stop anything: say so.
  (c) =>
    c.monitor.stop_on
      .filter((r) => r !== 'all' && !c.monitor[r].enabled)
      .map((r) => issue('monitor.stop_on', `names "${r}", but monitor.${r}.enabled is false, so it can never stop a stage. Enable the rule or drop it from stop_on.`)),

  // Every selected stage needs its data, and token limits must leave room for a completion.
  (c) => {
    const out: ConfigIssue[] = [];
    const need = (path: string, p: string | null, stage: StageName) => {
      if (p === null) out.push(issue(path, `is required because stage "${stage}" is selected (runtime.stages). Point it at a JSONL file, or drop the stage.`));
    };
    const selected = new Set(c.runtime.stages);
    // Every data target of every stage, from the catalogue (data/targets.ts).
    for (const target of DATA_TARGET_NAMES) {
      const p = `data.${target}`;
      const s = sourceOf(c, target);
      const { kind, stage } = DATA_TARGETS[target];
      if (selected.has(stage)) need(`${p}.path`, s.path, stage);
      const fields = DATA_KINDS[kind].fields;
      for (const target of Object.keys(s.columns)) {
        if (fields !== null && !(fields as readonly string[]).includes(target)) {
          out.push(issue(`${p}.columns.${target}`, `"${target}" is not a field of ${kind} data (fields: ${fields.join(', ')}).${didYouMean(target, fields)}`));
        }
      }
      if (s.max_length !== null && s.max_prompt_length !== null && s.max_prompt_length >= s.max_length) {
        out.push(issue(`${p}.max_prompt_length`, `(${s.max_prompt_length}) must be smaller than max_length (${s.max_length}) to leave room for the completion.`));
      }
    }
    // The reward model needs held-out pairs to report its accuracy.
    if (selected.has('rlhf') && c.data.rlhf.preferences.eval_fraction === 0) {
      out.push(issue('data.rlhf.preferences.eval_fraction', 'must be > 0: the reward model reports its accuracy on held-out pairs (e.g. 0.1).'));
    }
    return out;
  },
];

/** Files any one of which lets AutoTokenizer build a tokenizer from a local folder. */
export const TOKENIZER_FILES = [
  'tokenizer.json',
  'tokenizer_config.json',
  'tokenizer.model',
  'vocab.json',
  'vocab.txt',
  'spiece.model',
  'sentencepiece.bpe.model',
] as const;

/**
 * A local model folder (model.id spelled as a path; absolute after resolution) must exist, be a
 * model folder (config.json) and carry a tokenizer. Hub ids are the sidecar's to check.
 * Runs for `posttrain config` too: a config that cannot train is not a valid config.
 */
export function modelFolderIssues(id: string): ConfigIssue[] {
  if (!id.startsWith('/')) return [];
  const fix = 'Fix: point model.id at a folder saved with save_pretrained (config.json, weights and tokenizer files), or use a hub id like org/name.';
  let isDir: boolean;
  try {
    isDir = statSync(id).isDirectory();
  } catch {
    return [issue('model.id', `${id} does not exist. ${fix}`)];
  }
  if (!isDir) return [issue('model.id', `${id} is a file, not a model folder. ${fix}`)];
  const out: ConfigIssue[] = [];
  if (!existsSync(join(id, 'config.json'))) out.push(issue('model.id', `${id} has no config.json — is it a model folder? ${fix}`));
  let names: string[] = [];
  try {
    names = readdirSync(id);
  } catch {
    /* unreadable: the sidecar reports it */
  }
  const hasTokenizer = TOKENIZER_FILES.some((f) => names.includes(f)) || names.some((f) => f.endsWith('.tiktoken'));
  if (!hasTokenizer) {
    out.push(
      issue(
        'model.id',
        `${id} has no tokenizer (none of ${TOKENIZER_FILES.join(', ')}). ` +
          `Fix: save the tokenizer beside the model (tokenizer.save_pretrained("${id}")), or copy its tokenizer files from the model it came from.`,
      ),
    );
  }
  return out;
}

rules.push((c) => modelFolderIssues(c.model.id));

/**
 * A NUL byte in any string of the config (a paste from a binary, `\u0000` in YAML or JSON): no
 * path can hold one, and Node refuses such a path with a TypeError deep inside a run. Reported
 * alone, at its dot path: the other rules would only add confusing "does not exist" lines for it.
 */
export function nulIssues(value: unknown, path = ''): ConfigIssue[] {
  if (typeof value === 'string') {
    return value.includes('\0') ? [issue(path || '(root)', 'contains a NUL byte (\\0); no file path or name can hold one. Fix: remove it.')] : [];
  }
  if (value === null || typeof value !== 'object') return [];
  return Object.entries(value).flatMap(([k, v]) => nulIssues(v, path ? `${path}.${k}` : k));
}

export function checkRules(config: Config): ConfigIssue[] {
  const nul = nulIssues(config);
  if (nul.length > 0) return nul;
  return rules.flatMap((r) => r(config));
}
