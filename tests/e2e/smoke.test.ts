// The real thing: `posttrain run --preset smoke` through the real bin, the real sidecar and real
// training of the offline tiny model, then checks on artifacts, lineage and the metric stream.
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { readMetrics } from '../../src/artifacts/index.js';
import { DEFAULT_VENV_PYTHON, PACKAGE_ROOT } from '../../src/paths.js';
import { readJson, spawnCli, tmp } from '../helpers/cli.js';

const STAGES = ['sft', 'dpo', 'grpo', 'rlhf'] as const;
const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
const series = (dir: string, stage: string, key: string) =>
  readMetrics(join(dir, 'stages', stage, 'metrics.jsonl'))
    .filter((m) => typeof m.values[key] === 'number')
    .map((m) => m.values[key] as number);

describe('posttrain run --preset smoke (real sidecar, real training)', () => {
  let cwd: string;
  let dir: string;
  let code: number | null;
  let err: string;
  let wallS: number;

  beforeAll(async () => {
    cwd = tmp('posttrain-e2e-');
    const t0 = Date.now();
    const child = spawnCli(['run', '--preset', 'smoke'], { cwd, env: { ...process.env, POSTTRAIN_SIDECAR_MODULE: '' } });
    ({ code } = await child.exit);
    wallS = (Date.now() - t0) / 1000;
    err = child.err();
    const runs = readdirSync(join(cwd, 'runs')).filter((d) => !d.startsWith('.'));
    dir = join(cwd, 'runs', runs[0]!);
  }, 240_000);

  it('finishes all four stages with exit 0, one sidecar', () => {
    expect(err).not.toMatch(/error:/);
    expect(code).toBe(0);
    const run = readJson(join(dir, 'run.json'));
    expect(run.status).toBe('ok');
    expect(run.fake_sidecar).toBeUndefined();
    for (const s of STAGES) expect(run.stages[s].status, s).toBe('ok');
    expect(readFileSync(join(dir, 'sidecar.log'), 'utf8').match(/sidecar pid \d+/g)).toHaveLength(1);
    expect(run.versions).toMatchObject({ torch: expect.any(String), transformers: expect.any(String), trl: expect.any(String), peft: expect.any(String) });
    console.log(`smoke pipeline wall time: ${wallS.toFixed(1)} s`);
  });

  it('chains adapters: each stage starts from the previous one and records it', () => {
    const run = readJson(join(dir, 'run.json'));
    let prev: string | null = null;
    for (const s of STAGES) {
      const adapter = join(dir, 'stages', s, 'adapter');
      // run.json: relative to the run folder (relocatable); the adapter's own posttrain.json: absolute.
      expect(run.stages[s].input_adapter, s).toBe(prev && relative(dir, prev));
      expect(run.stages[s].output_adapter, s).toBe(join('stages', s, 'adapter'));
      expect(run.stages[s].output_sha256, s).toMatch(/^[0-9a-f]{64}$/);
      expect(readJson(join(adapter, 'posttrain.json')).parent_adapter, s).toBe(prev);
      for (const f of ['adapter_config.json', 'adapter_model.safetensors']) expect(existsSync(join(adapter, f)), `${s}/${f}`).toBe(true);
      expect(existsSync(join(dir, 'stages', s, 'samples.jsonl')), s).toBe(true);
      expect(readJson(join(dir, 'stages', s, 'summary.json')).status).toBe('ok');
      prev = adapter;
    }
    expect(existsSync(join(dir, 'stages', 'rlhf', 'reward_model', 'adapter_config.json'))).toBe(true);
  });

  it('streams each stage signal into metrics.jsonl', () => {
    const loss = series(dir, 'sft', 'train/loss');
    expect(mean(loss.slice(-5))).toBeLessThan(mean(loss.slice(0, 5)));
    const margins = series(dir, 'dpo', 'rewards/margins');
    expect(mean(margins.slice(-5))).toBeGreaterThan(mean(margins.slice(0, 3)));
    expect(series(dir, 'grpo', 'train/reward').length).toBeGreaterThan(5);
    expect(series(dir, 'rlhf', 'rm/eval/accuracy').length).toBeGreaterThan(0);
    expect(series(dir, 'rlhf', 'train/kl').length).toBeGreaterThan(0);
    for (const s of STAGES) {
      const steps = readMetrics(join(dir, 'stages', s, 'metrics.jsonl')).map((m) => m.step);
      expect(steps, s).toEqual([...steps].sort((a, b) => a - b));
    }
  });

  it('every adapter loads with plain peft outside the project', () => {
    const script = [
      'import sys',
      'from transformers import AutoModelForCausalLM',
      'from peft import PeftModel',
      'base, adapters = sys.argv[1], sys.argv[2:]',
      'for a in adapters:',
      '    m = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), a)',
      '    assert list(m.peft_config) == ["default"], m.peft_config',
      'print("loaded", len(adapters))',
    ].join('\n');
    const out = execFileSync(DEFAULT_VENV_PYTHON, ['-c', script, join(PACKAGE_ROOT, 'data', 'smoke-model'), ...STAGES.map((s) => join(dir, 'stages', s, 'adapter'))], {
      cwd: tmp(),
      encoding: 'utf8',
      env: { ...process.env, PYTHONPATH: '' },
    });
    expect(out).toMatch(/loaded 4/);
  });
});
