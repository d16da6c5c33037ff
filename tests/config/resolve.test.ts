import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { resolveConfig } from '../../src/config/resolve.js';
import { listPresets } from '../../src/config/presets.js';
import { ConfigError, UsageError } from '../../src/errors.js';
import { PACKAGE_ROOT } from '../../src/paths.js';

const tmp = () => mkdtempSync(join(tmpdir(), 'posttrain-config-'));

function issuesOf(fn: () => unknown) {
  try {
    fn();
  } catch (e) {
    if (e instanceof ConfigError) return e.issues;
    throw e;
  }
  throw new Error('expected a ConfigError');
}

describe('presets', () => {
  it('lists smoke and gpu with a description each', () => {
    const presets = listPresets();
    expect(presets.map((p) => p.name)).toEqual(expect.arrayContaining(['smoke', 'gpu']));
    for (const p of presets) expect(p.description.length).toBeGreaterThan(10);
  });

  it('every preset resolves cleanly', () => {
    // A preset with `setup:` (cpu-real) needs a model folder made by that command: see presets-real.test.ts.
    for (const { name } of listPresets().filter((p) => p.setup === undefined)) expect(() => resolveConfig({ preset: name })).not.toThrow();
  });

  it('smoke is CPU + LoRA with data paths inside the install', () => {
    const { config } = resolveConfig({ preset: 'smoke' });
    expect(config.runtime.device).toBe('cpu');
    expect(config.model.adapter.mode).toBe('lora');
    expect(config.model.id).toBe(join(PACKAGE_ROOT, 'data', 'smoke-model'));
    expect(config.data.sft.path).toBe(join(PACKAGE_ROOT, 'data', 'smoke', 'sft.jsonl'));
    expect(config.runtime.stages).toEqual(['sft', 'dpo', 'grpo', 'rlhf']);
  });

  it('gpu is QLoRA 4-bit bf16 on a hub model', () => {
    const { config } = resolveConfig({ preset: 'gpu' });
    expect(config.model).toMatchObject({ use_4bit: true, dtype: 'bfloat16', adapter: { mode: 'qlora' } });
    expect(config.model.id).toMatch(/^[\w-]+\/[\w.-]+$/);
  });

  it('an unknown preset suggests the closest one', () => {
    expect(() => resolveConfig({ preset: 'smok' })).toThrow(UsageError);
    expect(() => resolveConfig({ preset: 'smok' })).toThrow(/Did you mean "smoke"/);
  });
});

describe('layering: preset ← file ← --set', () => {
  it('file overrides preset, --set overrides file, untouched values keep the preset', () => {
    const dir = tmp();
    const file = join(dir, 'c.yaml');
    writeFileSync(file, 'stages:\n  sft:\n    learning_rate: 0.001\n    batch_size: 2\n');
    const { config } = resolveConfig({ preset: 'smoke', configFile: file, set: ['stages.sft.batch_size=16'] });
    expect(config.stages.sft.learning_rate).toBe(0.001); // file
    expect(config.stages.sft.batch_size).toBe(16); // --set
    expect(config.stages.sft.max_steps).toBe(30); // preset
    expect(config.stages.dpo.beta).toBe(0.1); // preset
  });

  it('JSON config files work too', () => {
    const dir = tmp();
    const file = join(dir, 'c.json');
    writeFileSync(file, JSON.stringify({ stages: { dpo: { beta: 0.3 } } }));
    expect(resolveConfig({ preset: 'smoke', configFile: file }).config.stages.dpo.beta).toBe(0.3);
  });

  it('--set values parse as JSON where they parse, strings otherwise', () => {
    const { config } = resolveConfig({
      preset: 'smoke',
      set: ['runtime.seed=7', 'model.adapter.target_modules=["q_proj","v_proj"]', 'model.revision=main', 'runtime.threads=null', 'model.trust_remote_code=true'],
    });
    expect(config.runtime.seed).toBe(7);
    expect(config.model.adapter.target_modules).toEqual(['q_proj', 'v_proj']);
    expect(config.model.revision).toBe('main');
    expect(config.runtime.threads).toBeNull();
    expect(config.model.trust_remote_code).toBe(true);
  });

  it('--set can edit one element of an array', () => {
    const { config } = resolveConfig({ preset: 'smoke', set: ['stages.grpo.reward_funcs.1.weight=2.5'] });
    expect(config.stages.grpo.reward_funcs.map((f) => [f.name, f.weight])).toEqual([
      ['format', 1],
      ['exact_answer', 2.5],
    ]);
  });

  it('relative paths resolve against the layer that set them', () => {
    const dir = tmp();
    const file = join(dir, 'c.yaml');
    writeFileSync(file, 'data:\n  sft:\n    path: mine/sft.jsonl\n');
    const cwd = tmp();
    const { config } = resolveConfig({ preset: 'smoke', configFile: file, set: ['data.dpo.path=x/dpo.jsonl'], cwd });
    expect(config.data.sft.path).toBe(join(dir, 'mine', 'sft.jsonl'));
    expect(config.data.dpo.path).toBe(join(cwd, 'x', 'dpo.jsonl'));
    expect(config.data.grpo.path).toBe(join(PACKAGE_ROOT, 'data', 'smoke', 'grpo.jsonl'));
    expect(config.runtime.runs_dir).toBe(join(cwd, 'runs'));
  });

  it('hub ids stay ids, local model paths become absolute', () => {
    const cwd = tmp();
    expect(resolveConfig({ preset: 'smoke', set: ['model.id=Qwen/Qwen2.5-0.5B'], cwd }).config.model.id).toBe('Qwen/Qwen2.5-0.5B');
    // A local model folder must exist with config.json and a tokenizer (rules.ts modelFolderIssues).
    mkdirSync(join(cwd, 'm'));
    writeFileSync(join(cwd, 'm', 'config.json'), '{}');
    writeFileSync(join(cwd, 'm', 'tokenizer.json'), '{}');
    expect(resolveConfig({ preset: 'smoke', set: ['model.id=./m'], cwd }).config.model.id).toBe(join(cwd, 'm'));
  });

  it('without a preset, model.id is required', () => {
    const issues = issuesOf(() => resolveConfig({ set: ['runtime.seed=1'] }));
    expect(issues[0]?.path).toBe('model');
  });
});

describe('errors name the dot path, the value, the expectation and the source', () => {
  it('misspelt keys get a suggestion, at every depth', () => {
    const dir = tmp();
    const file = join(dir, 'typo.yaml');
    writeFileSync(file, 'stages:\n  sft:\n    learning_rat: 0.1\n  grpo:\n    num_generation: 4\nrutime:\n  seed: 1\n');
    const issues = issuesOf(() => resolveConfig({ preset: 'smoke', configFile: file }));
    const byPath = Object.fromEntries(issues.map((i) => [i.path, i]));
    expect(byPath['stages.sft.learning_rat']?.message).toMatch(/unknown key "learning_rat". Did you mean "learning_rate"\?/);
    expect(byPath['stages.grpo.num_generation']?.message).toMatch(/Did you mean "num_generations"/);
    expect(byPath['rutime']?.message).toMatch(/Did you mean "runtime"/);
    expect(byPath['rutime']?.source).toBe(file);
    expect(issues).toHaveLength(3); // all at once
  });

  it('type errors give path, value and expected type, all problems at once', () => {
    const issues = issuesOf(() =>
      resolveConfig({
        preset: 'smoke',
        set: ['stages.sft.learning_rate=fast', 'runtime.device=gpu', 'stages.dpo.batch_size=0', 'model.adapter.r=1.5', 'stages.sft.lr_scheduler=cosin'],
      }),
    );
    const byPath = Object.fromEntries(issues.map((i) => [i.path, i.message]));
    expect(byPath['stages.sft.learning_rate']).toBe('expected number, got string "fast"');
    expect(byPath['runtime.device']).toMatch(/expected one of "auto", "cpu", "cuda", got string "gpu"/);
    expect(byPath['stages.dpo.batch_size']).toBe('must be >= 1, got number 0');
    expect(byPath['model.adapter.r']).toMatch(/integer/);
    expect(byPath['stages.sft.lr_scheduler']).toMatch(/Did you mean "cosine"/);
    expect(issues.every((i) => i.source === '--set')).toBe(true);
  });

  it('reward function names must be built-ins or module:function', () => {
    const issues = issuesOf(() => resolveConfig({ preset: 'smoke', set: ['stages.grpo.reward_funcs=[{"name":"my_reward"}]'] }));
    expect(issues[0]?.path).toBe('stages.grpo.reward_funcs.0.name');
    expect(issues[0]?.message).toMatch(/module:function/);
    expect(() => resolveConfig({ preset: 'smoke', set: ['stages.grpo.reward_funcs=[{"name":"my.rewards:score"}]'] })).not.toThrow();
  });

  it('YAML syntax errors name file:line:col', () => {
    const dir = tmp();
    const file = join(dir, 'bad.yaml');
    writeFileSync(file, 'stages:\n  sft:\n    batch_size: [1, 2\n');
    const issues = issuesOf(() => resolveConfig({ preset: 'smoke', configFile: file }));
    expect(issues[0]?.message).toMatch(new RegExp(`YAML syntax error at ${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:\\d+:\\d+`));
  });

  it('a config that is not a mapping, and a missing file, are clear errors', () => {
    const dir = tmp();
    const file = join(dir, 'list.yaml');
    writeFileSync(file, '- a\n- b\n');
    expect(issuesOf(() => resolveConfig({ configFile: file }))[0]?.message).toMatch(/expected a mapping/);
    expect(() => resolveConfig({ configFile: join(dir, 'nope.yaml') })).toThrow(/does not exist/);
    expect(() => resolveConfig({ configFile: dir })).toThrow(/is not a file/);
  });

  it('malformed --set flags are rejected with an example', () => {
    expect(issuesOf(() => resolveConfig({ preset: 'smoke', set: ['stages.sft.learning_rate'] }))[0]?.message).toMatch(/key.path=value/);
    expect(issuesOf(() => resolveConfig({ preset: 'smoke', set: ['stages..x=1'] }))[0]?.message).toMatch(/key.path=value/);
  });
});

describe('cross-field rules', () => {
  const rule = (set: string[], preset = 'smoke') => issuesOf(() => resolveConfig({ preset, set }));

  it('GRPO generation batch must divide by num_generations', () => {
    const issues = rule(['stages.grpo.batch_size=6', 'stages.grpo.num_generations=4']);
    expect(issues.map((i) => i.path)).toEqual(['stages.grpo.num_generations']);
    expect(issues[0]?.message).toMatch(/6 × steps_per_generation 1 × num_processes 1 = 6.*divisible by num_generations 4/);
    // the same rule guards the RLHF policy phase
    expect(rule(['stages.rlhf.policy.num_generations=3'])[0]?.path).toBe('stages.rlhf.policy.num_generations');
    // steps_per_generation enlarges the generation batch
    expect(() => resolveConfig({ preset: 'smoke', set: ['stages.grpo.batch_size=4', 'stages.grpo.steps_per_generation=2', 'stages.grpo.save_steps=10'] })).not.toThrow();
  });

  it('num_generations must be at least 2 (advantages need a group)', () => {
    expect(rule(['stages.grpo.num_generations=1'])[0]?.path).toBe('stages.grpo.num_generations');
  });

  it('GRPO checkpoints must fall on generation boundaries', () => {
    const issues = rule(['stages.grpo.steps_per_generation=4', 'stages.grpo.save_steps=10']);
    expect(issues.map((i) => i.path)).toEqual(['stages.grpo.save_steps']);
  });

  it('RLHF needs a KL term', () => {
    expect(rule(['stages.rlhf.policy.beta=0'])[0]?.path).toBe('stages.rlhf.policy.beta');
  });

  it('adapter mode, 4-bit and device must agree', () => {
    expect(rule(['model.adapter.mode=qlora'])[0]?.path).toBe('model.use_4bit');
    expect(rule(['model.use_4bit=true']).map((i) => i.path)).toEqual(['model.adapter.mode', 'model.adapter.mode']);
    expect(rule(['model.adapter.mode=qlora', 'model.use_4bit=true'])[0]?.message).toMatch(/needs CUDA/);
    expect(rule(['model.dtype=float16'])[0]?.path).toBe('model.dtype');
  });

  it('launcher and process count must agree', () => {
    expect(rule(['runtime.num_processes=2'])[0]?.path).toBe('runtime.num_processes');
    expect(rule(['runtime.accelerate_config=ddp'])[0]?.path).toBe('runtime.accelerate_config');
    expect(() => resolveConfig({ preset: 'smoke', set: ['runtime.launcher=accelerate', 'runtime.num_processes=2', 'runtime.accelerate_config=ddp'] })).not.toThrow();
  });

  it('heartbeat timeout must leave room for several beats', () => {
    expect(rule(['runtime.heartbeat_timeout_s=1.5'])[0]?.path).toBe('runtime.heartbeat_timeout_s');
  });

  it('DPO label smoothing only with sigmoid/robust', () => {
    expect(rule(['stages.dpo.loss_type=ipo', 'stages.dpo.label_smoothing=0.1'])[0]?.path).toBe('stages.dpo.label_smoothing');
    expect(() => resolveConfig({ preset: 'smoke', set: ['stages.dpo.loss_type=robust', 'stages.dpo.label_smoothing=0.1'] })).not.toThrow();
  });

  it('stages must be known, unique and in pipeline order', () => {
    expect(rule(['runtime.stages=["dpo","sft"]'])[0]?.message).toMatch(/order sft → orpo → dpo → kto → simpo → grpo → rlhf/);
    expect(rule(['runtime.stages=["sft","sft"]'])[0]?.message).toMatch(/twice/);
    expect(rule(['runtime.stages=["sft","ppo"]'])[0]?.path).toBe('runtime.stages.1');
  });

  it('selected stages need their data; unselected ones do not', () => {
    const issues = rule(['data.dpo.path=null', 'data.rlhf.prompts.path=null']);
    expect(issues.map((i) => i.path).sort()).toEqual(['data.dpo.path', 'data.rlhf.prompts.path']);
    expect(() => resolveConfig({ preset: 'smoke', set: ['data.dpo.path=null', 'runtime.stages=["sft"]'] })).not.toThrow();
  });

  it('prompt length must leave room for the completion', () => {
    expect(rule(['data.dpo.max_prompt_length=64'])[0]?.path).toBe('data.dpo.max_prompt_length');
  });

  it('the reward model needs held-out pairs', () => {
    expect(rule(['data.rlhf.preferences.eval_fraction=0'])[0]?.path).toBe('data.rlhf.preferences.eval_fraction');
  });

  it('column mapping targets must be fields of the data kind', () => {
    const issues = rule(['data.sft.columns={"promt":"question"}']);
    expect(issues[0]?.path).toBe('data.sft.columns.promt');
    expect(issues[0]?.message).toMatch(/Did you mean "prompt"/);
    // prompt files may carry any column
    expect(() => resolveConfig({ preset: 'smoke', set: ['data.grpo.columns={"answer":"solution"}'] })).not.toThrow();
  });

  it('all rule violations are reported together', () => {
    const issues = rule(['stages.rlhf.policy.beta=0', 'runtime.num_processes=2', 'stages.grpo.num_generations=3']);
    expect(issues.map((i) => i.path).sort()).toEqual(['runtime.num_processes', 'stages.grpo.num_generations', 'stages.rlhf.policy.beta']);
  });
});
