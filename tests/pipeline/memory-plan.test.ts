// "Will this fit?": `posttrain plan` and the run's preflight estimate each stage's peak memory
// from the model config with the sidecar's estimator (real Python, no weights loaded), and refuse
// a stage that exceeds the free memory with the settings that would make it fit.
import { copyFileSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { PACKAGE_ROOT } from '../../src/paths.js';
import { cli, readJson, tmp } from '../helpers/cli.js';

const SMOKE_MODEL = join(PACKAGE_ROOT, 'data', 'smoke-model');

function realEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  delete env.POSTTRAIN_SIDECAR_MODULE;
  delete env.POSTTRAIN_FAKE_SCRIPT;
  return env;
}

/** A model folder with a Llama-70B config and the smoke tokenizer, and no weights: the estimate
 * reads config.json only, so this costs nothing, and 70B in float32 (~280 GB) fits no test machine. */
function hugeModel(): string {
  const dir = join(tmp('posttrain-huge-'), 'llama-70b');
  mkdirSync(dir);
  for (const f of readdirSync(SMOKE_MODEL)) if (f.startsWith('tokenizer') || f.endsWith('.jinja') || f === 'special_tokens_map.json') copyFileSync(join(SMOKE_MODEL, f), join(dir, f));
  writeFileSync(join(dir, 'config.json'), JSON.stringify({
    architectures: ['LlamaForCausalLM'], model_type: 'llama', hidden_size: 8192, intermediate_size: 28672, num_hidden_layers: 80,
    num_attention_heads: 64, num_key_value_heads: 8, vocab_size: 128256, tie_word_embeddings: false, max_position_embeddings: 8192,
  }));
  return dir;
}

describe('posttrain plan', () => {
  it('prints every selected stage of the smoke preset with its parts, all fitting', async () => {
    const r = await cli(['plan', '--preset', 'smoke'], { env: realEnv() });
    expect(r.code, r.err).toBe(0);
    expect(r.out).toContain('cpu, lora, float32 weights, gradient checkpointing off');
    expect(r.out).toMatch(/estimated peak RAM \(resident set\); [\d.]+ GiB available/);
    for (const row of ['sft', 'dpo', 'grpo', 'rlhf (reward_model)']) expect(r.out).toMatch(new RegExp(`^${row.replace(/[()]/g, '\\$&')}\\s+0\\.\\d\\d .* yes$`, 'm'));
    const json = await cli(['plan', '--preset', 'smoke', '--json', '--stages', 'sft,grpo'], { env: realEnv() });
    expect(json.code, json.err).toBe(0);
    const plan = JSON.parse(json.out);
    expect(plan.plan).toEqual({ device: 'cpu', mode: 'lora', dtype_bytes: 4, checkpointing: false });
    const est = plan.problems.filter((p: { code: string }) => p.code === 'memory_estimate');
    expect(est.map((p: { stage: string }) => p.stage)).toEqual(['sft', 'grpo']);
    for (const p of est) {
      expect(p.severity).toBe('info');
      expect(p.data.total_gib).toBeGreaterThan(0.4);
      expect(Object.keys(p.data.parts_gib)).toContain('runtime');
    }
  }, 60_000);

  it('a stage that cannot fit: plan says NO, names the knobs, exits 2; warn lets it through', async () => {
    const model = hugeModel();
    const r = await cli(['plan', '--preset', 'smoke', '--set', `model.id=${model}`, '--stages', 'sft'], { env: realEnv() });
    expect(r.code).toBe(2);
    expect(r.out).toMatch(/^sft\s+\d{3,}\.\d\d .* NO$/m);
    expect(r.out).toContain('fix: Lower one of: stages.sft.batch_size 8');
    expect(r.out).toContain('model.gradient_checkpointing true');
    expect(r.err).toContain('1 stage(s) would not fit: sft');
    const warn = await cli(['plan', '--preset', 'smoke', '--set', `model.id=${model}`, '--stages', 'sft', '--set', 'runtime.memory_check=warn'], { env: realEnv() });
    expect(warn.code).toBe(0);
    expect(warn.out).toContain('warning: [sft] estimated peak RAM (peak resident set)');
  }, 60_000);
});

describe('the run preflight refuses a stage that cannot fit (real sidecar)', () => {
  it('exit 2 before any stage starts, the estimate and the knobs in the message and run.json', async () => {
    const cwd = tmp();
    const r = await cli(['run', '--preset', 'smoke', '--set', `model.id=${hugeModel()}`, '--stages', 'sft'], { cwd, env: realEnv() });
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/\[sft\] memory_exceeds: estimated peak RAM \(peak resident set\) \d+\.\d GiB exceeds/);
    expect(r.err).toContain('fix: Lower one of: stages.sft.batch_size');
    const runs = readdirSync(join(cwd, 'runs')).filter((d) => !d.startsWith('.'));
    const run = readJson(join(cwd, 'runs', runs[0]!, 'run.json'));
    expect(run.stages.sft.status).toBe('pending');
    const estimate = run.preflight.problems.find((p: { code: string }) => p.code === 'memory_estimate');
    expect(estimate.data.stage).toBe('sft');
    expect(estimate.data.parts_gib.weights).toBeGreaterThan(200);
  }, 90_000);
});
