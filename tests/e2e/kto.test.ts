// A method beyond the classic four, through the catalogue end to end: `posttrain run --preset smoke
// --stages sft,kto` trains KTO on the SFT adapter (real sidecar, smoke model), and run.json, `show`,
// the report and `validate` know the stage.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { cli, tmp } from '../helpers/cli.js';

describe('kto, chosen with --stages', () => {
  it('chains after sft, learns (desirable rewards above undesirable), and shows up in show and the report', async () => {
    const cwd = tmp();
    const r = await cli(['run', '--preset', 'smoke', '--stages', 'sft,kto', '--set', 'stages.sft.max_steps=10', '--set', 'stages.kto.max_steps=20'], { cwd });
    expect(r.code, r.err).toBe(0);
    const dir = r.out.trim();
    const run = JSON.parse(readFileSync(join(dir, 'run.json'), 'utf8'));
    expect(run.stages_selected).toEqual(['sft', 'kto']);
    expect(run.stages.kto).toMatchObject({ status: 'ok', input_adapter: 'stages/sft/adapter' });
    const metrics = readFileSync(join(dir, 'stages', 'kto', 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { step: number; values: Record<string, number> });
    const margins = metrics.filter((m) => 'rewards/margins' in m.values).map((m) => m.values['rewards/margins']!);
    expect(margins[0]).toBeCloseTo(0, 6);
    expect(margins.slice(-5).reduce((a, b) => a + b, 0) / 5).toBeGreaterThan(0.1);
    const shown = await cli(['show', '--runs-dir', join(cwd, 'runs')], { cwd });
    expect(shown.out).toMatch(/kto\s+ok/);
    expect(shown.out).toContain('rewards/margins');
    const report = await cli(['report', '--runs-dir', join(cwd, 'runs')], { cwd });
    expect(report.code, report.err).toBe(0);
    expect(readFileSync(join(dir, 'report.html'), 'utf8')).toContain('id="stage-kto"');
    const v = await cli(['validate', 'kto', join(process.cwd(), 'data', 'smoke', 'dpo.jsonl')], { cwd });
    expect(v.code, v.err).toBe(0);
    expect(existsSync(join(dir, 'stages', 'kto', 'adapter', 'adapter_model.safetensors'))).toBe(true);
  }, 120_000);

  it('orpo may be the first stage (no reference model) and grpo chains on it: --stages orpo,grpo', async () => {
    const cwd = tmp();
    const r = await cli(['run', '--preset', 'smoke', '--stages', 'orpo,grpo', '--set', 'stages.orpo.max_steps=10', '--set', 'stages.grpo.max_steps=4'], { cwd });
    expect(r.code, r.err).toBe(0);
    const run = JSON.parse(readFileSync(join(r.out.trim(), 'run.json'), 'utf8'));
    expect(run.stages.orpo).toMatchObject({ status: 'ok', input_adapter: null });
    expect(run.stages.grpo).toMatchObject({ status: 'ok', input_adapter: 'stages/orpo/adapter' });
  }, 120_000);
});
