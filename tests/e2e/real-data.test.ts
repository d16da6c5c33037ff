// The "real user data" check: GSM8K and Anthropic HH, as users bring them (column mapping,
// implicit-prompt pairs), through every stage on the smoke model for a bounded number of steps.
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { PACKAGE_ROOT } from '../../src/paths.js';
import { readJson, spawnCli, tmp } from '../helpers/cli.js';

const FIX = join(PACKAGE_ROOT, 'tests', 'fixtures', 'data');

describe('real datasets through the smoke model', () => {
  it('GSM8K (SFT, GRPO with exact_answer) and HH harmless (DPO, RLHF) train without errors', async () => {
    const cwd = tmp('posttrain-real-');
    const gsm8k = join(FIX, 'gsm8k-train-40.jsonl');
    const hh = join(FIX, 'hh-rlhf-harmless-test-40.jsonl');
    const set = [
      `data.sft.path=${gsm8k}`,
      'data.sft.columns={"prompt":"question","response":"answer"}',
      'data.sft.max_length=128',
      `data.dpo.path=${hh}`,
      'data.dpo.format=implicit',
      'data.dpo.max_length=128',
      'data.dpo.max_prompt_length=96',
      `data.grpo.path=${gsm8k}`,
      'data.grpo.columns={"prompt":"question"}',
      'data.grpo.max_prompt_length=96',
      `data.rlhf.preferences.path=${hh}`,
      'data.rlhf.preferences.format=implicit',
      'data.rlhf.preferences.max_length=128',
      `data.rlhf.prompts.path=${hh}`,
      'data.rlhf.prompts.format=implicit',
      'data.rlhf.prompts.max_prompt_length=96',
      'stages.sft.max_steps=6',
      'stages.dpo.max_steps=6',
      'stages.grpo.max_steps=4',
      'stages.grpo.save_steps=2',
      'stages.rlhf.reward_model.max_steps=6',
      'stages.rlhf.policy.max_steps=4',
      'stages.rlhf.policy.save_steps=2',
    ].flatMap((s) => ['--set', s]);
    const child = spawnCli(['run', '--preset', 'smoke', ...set], { cwd, env: { ...process.env, POSTTRAIN_SIDECAR_MODULE: '' } });
    const { code } = await child.exit;
    expect(child.err()).not.toMatch(/error:/);
    expect(code).toBe(0);
    const run = readJson(join(cwd, 'runs', readdirSync(join(cwd, 'runs'))[0]!, 'run.json'));
    expect(run.data.sft).toMatchObject({ rows: 40, format: 'prompt_response' });
    expect(run.data.dpo).toMatchObject({ format: 'implicit' });
    for (const s of ['sft', 'dpo', 'grpo', 'rlhf']) expect(run.stages[s].status, s).toBe('ok');
  }, 240_000);
});
