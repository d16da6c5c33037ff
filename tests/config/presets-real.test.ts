// The cpu-real preset: SmolLM2-135M-Instruct from `make real-model` (a git-ignored folder). Without
// that folder the preset must fail at config time with a hint naming the command; with it, it
// resolves to a CPU + LoRA + float32 config on the shipped GSM8K / HH slices.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { listPresets } from '../../src/config/presets.js';
import { resolveConfig } from '../../src/config/resolve.js';
import { ConfigError } from '../../src/errors.js';
import { PACKAGE_ROOT } from '../../src/paths.js';

const MODEL = join(PACKAGE_ROOT, 'models', 'smollm2-135m-instruct');
const haveModel = existsSync(join(MODEL, 'config.json'));

describe('cpu-real preset', () => {
  it('is listed with its setup command', () => {
    const p = listPresets().find((x) => x.name === 'cpu-real');
    expect(p?.setup).toBe('make real-model');
    expect(p?.description).toMatch(/SmolLM2/);
  });

  it('resolves apart from the model folder: CPU, LoRA, float32, GSM8K and HH slices', () => {
    // model.id pointed at the smoke model so the check holds with or without `make real-model`.
    const { config } = resolveConfig({ preset: 'cpu-real', set: [`model.id=${join(PACKAGE_ROOT, 'data', 'smoke-model')}`] });
    expect(config.runtime.device).toBe('cpu');
    expect(config.model).toMatchObject({ dtype: 'float32', use_4bit: false, adapter: { mode: 'lora' } });
    expect(config.data.sft.path).toBe(join(PACKAGE_ROOT, 'data', 'real', 'gsm8k-train-1k.jsonl'));
    expect(config.data.sft.columns).toEqual({ prompt: 'question', response: 'answer' });
    expect(config.data.grpo.columns).toEqual({ prompt: 'question' });
    expect(config.stages.grpo.reward_funcs.map((r) => r.name)).toEqual(['exact_answer', 'format']);
    expect(config.data.dpo.path).toBe(join(PACKAGE_ROOT, 'data', 'real', 'hh-harmless-1k.jsonl'));
    // Bounded: every stage stops by max_steps.
    for (const s of [config.stages.sft, config.stages.dpo, config.stages.grpo, config.stages.rlhf.reward_model, config.stages.rlhf.policy]) {
      expect(s.max_steps).toBeGreaterThan(0);
      expect(s.max_steps).toBeLessThanOrEqual(40);
    }
  });

  it.skipIf(haveModel)('without the model folder, fails at config time and names `make real-model`', () => {
    try {
      resolveConfig({ preset: 'cpu-real' });
      expect.unreachable('expected a ConfigError');
    } catch (e) {
      expect(e).toBeInstanceOf(ConfigError);
      const err = e as ConfigError;
      expect(err.issues.map((i) => i.path)).toEqual(['model.id']);
      expect(err.hint).toMatch(/make real-model/);
    }
  });

  it('a missing model folder set by --set gets no preset hint', () => {
    try {
      resolveConfig({ preset: 'cpu-real', set: ['model.id=./no-such-model-folder'] });
      expect.unreachable('expected a ConfigError');
    } catch (e) {
      expect(e).toBeInstanceOf(ConfigError);
      expect((e as ConfigError).hint ?? '').not.toMatch(/make real-model/);
    }
  });

  it.runIf(haveModel)('with the model folder (make real-model), resolves as shipped', () => {
    const { config } = resolveConfig({ preset: 'cpu-real' });
    expect(config.model.id).toBe(MODEL);
    expect(existsSync(join(MODEL, 'provenance.json'))).toBe(true);
    expect(existsSync(join(MODEL, 'LICENSE'))).toBe(true);
  });
});
