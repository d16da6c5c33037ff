// stages.<s>.trainer_args through the real CLI and sidecar: a field TRL has reaches its config (read
// back from the built SFTConfig and logged); mistakes are refused at preflight, all at once, before
// any weights load, each with its dot path.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { cli, tmp } from '../helpers/cli.js';

describe('trainer_args', () => {
  it('a real TRL field reaches the trainer (SFT then DPO, 4 steps each on the smoke model)', async () => {
    const cwd = tmp();
    const r = await cli(['run', '--preset', 'smoke', '--stages', 'sft,dpo', '--set', 'stages.sft.max_steps=4', '--set', 'stages.dpo.max_steps=4', '--set', 'stages.sft.trainer_args={"neftune_noise_alpha": 5}', '--set', 'stages.dpo.trainer_args={"dataset_num_proc": 1}'], { cwd });
    expect(r.code, r.err).toBe(0);
    const dir = r.out.trim();
    expect(readFileSync(join(dir, 'stages', 'sft', 'sidecar.log'), 'utf8')).toContain('stages.sft.trainer_args passed to SFTConfig: neftune_noise_alpha=5');
    expect(readFileSync(join(dir, 'stages', 'dpo', 'sidecar.log'), 'utf8')).toContain('stages.dpo.trainer_args passed to DPOConfig: dataset_num_proc=1');
    expect(JSON.parse(readFileSync(join(dir, 'run.json'), 'utf8')).config.stages.sft.trainer_args).toEqual({ neftune_noise_alpha: 5 });
  }, 60_000);

  it('unknown, owned and mistyped fields are config errors at preflight (exit 2), every one named', async () => {
    const args = { neftune_alpha: 1, output_dir: 'x', learning_rate: 0.1, neftune_noise_alpha: 'five' };
    const r = await cli(['run', '--preset', 'smoke', '--stages', 'sft,grpo', '--set', `stages.sft.trainer_args=${JSON.stringify(args)}`, '--set', 'stages.grpo.trainer_args={"importance_sampling_lvl": "sequence"}'], { cwd: tmp() });
    expect(r.code, r.err).toBe(2);
    expect(r.err).toContain("stages.sft.trainer_args.neftune_alpha: SFTConfig has no field 'neftune_alpha'; did you mean 'neftune_noise_alpha'?");
    expect(r.err).toContain('stages.sft.trainer_args.output_dir: posttrain sets output_dir itself');
    expect(r.err).toContain('stages.sft.trainer_args.learning_rate: posttrain sets learning_rate itself (stages.sft.learning_rate); set stages.sft.learning_rate instead');
    expect(r.err).toContain("stages.sft.trainer_args.neftune_noise_alpha: SFTConfig.neftune_noise_alpha expects a number or null, got 'five'");
    expect(r.err).toContain("stages.grpo.trainer_args.importance_sampling_lvl: GRPOConfig has no field 'importance_sampling_lvl'; did you mean 'importance_sampling_level'?");
    expect(r.err).toMatch(/no stage was started/);
  }, 60_000);
});
