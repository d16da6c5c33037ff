// The stage catalogue in two languages: the controller's (src/stages/catalogue.ts) and the
// sidecar's (sidecar/posttrain_sidecar/catalogue.py) must name the same stages, in the same order,
// with the same data targets and row kinds. And the lists that used to spell stages out now read
// the catalogue: checked here where a test can see it.
import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { ConfigSchema, DATA_KINDS, HEALTH_RULES } from '../../src/config/schema.js';
import { DATA_TARGETS } from '../../src/data/targets.js';
import { STAGE_CATALOGUE, STAGES } from '../../src/stages/catalogue.js';
import { DEFAULT_VENV_PYTHON } from '../../src/paths.js';

const python = () => JSON.parse(execFileSync(DEFAULT_VENV_PYTHON, ['-m', 'posttrain_sidecar.catalogue'], { encoding: 'utf8' })) as { stages: string[]; data: Record<string, Record<string, string>> };

describe('stage catalogue', () => {
  it('TypeScript and Python agree on the stages, their order, and each stage\'s data targets and row kinds', () => {
    const py = python();
    expect(py.stages).toEqual([...STAGES]);
    expect(py.data).toEqual(Object.fromEntries(STAGES.map((s) => [s, { ...STAGE_CATALOGUE[s].data }])));
  });

  it('every stage has a config section, known row kinds and health rules, and key metrics', () => {
    const stages = ConfigSchema.parse({ model: { id: 'x' } }).stages;
    expect(Object.keys(stages)).toEqual([...STAGES]);
    for (const s of STAGES) {
      const e = STAGE_CATALOGUE[s];
      for (const kind of Object.values(e.data)) expect(Object.keys(DATA_KINDS)).toContain(kind);
      for (const rule of e.health) expect(HEALTH_RULES).toContain(rule);
      expect(e.live.length).toBeGreaterThan(0);
      expect(e.trainer.startsWith(`stages.${s}`)).toBe(true);
    }
    // Every health rule watches at least one stage (a rule no stage lists would never fire).
    for (const rule of HEALTH_RULES) expect(STAGES.some((s) => (STAGE_CATALOGUE[s].health as readonly string[]).includes(rule)), rule).toBe(true);
  });

  it('the default run is the classic chain; other methods are chosen with --stages', () => {
    expect(ConfigSchema.parse({ model: { id: 'x' } }).runtime.stages).toEqual(['sft', 'dpo', 'grpo', 'rlhf']);
    expect(STAGES.filter((s) => !STAGE_CATALOGUE[s].byDefault)).toEqual(['orpo', 'kto', 'simpo']);
  });

  it('data targets are derived from it, in pipeline order', () => {
    expect(Object.entries(DATA_TARGETS)).toEqual([
      ['sft', { kind: 'sft', stage: 'sft' }],
      ['orpo', { kind: 'preference', stage: 'orpo' }],
      ['dpo', { kind: 'preference', stage: 'dpo' }],
      ['kto', { kind: 'preference', stage: 'kto' }],
      ['simpo', { kind: 'preference', stage: 'simpo' }],
      ['grpo', { kind: 'prompt', stage: 'grpo' }],
      ['rlhf.preferences', { kind: 'preference', stage: 'rlhf' }],
      ['rlhf.prompts', { kind: 'prompt', stage: 'rlhf' }],
    ]);
  });
});
