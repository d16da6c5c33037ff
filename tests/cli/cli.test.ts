// CLI conventions: help with examples everywhere, exit codes, one clear message and no stack
// trace for user mistakes, JSON output where asked.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { renderJsonSchema } from '../../src/config/jsonschema.js';
import { PACKAGE_ROOT } from '../../src/paths.js';
import { cli, spawnCli, tmp } from '../helpers/cli.js';

const FIX = join(PACKAGE_ROOT, 'tests', 'fixtures', 'data');
const COMMANDS = ['run', 'stage', 'runs', 'show', 'report', 'doctor', 'config', 'presets', 'validate', 'schema'];

describe('help and usage errors', () => {
  it('every command has --help (exit 0); the commands that act show examples', async () => {
    const top = await cli(['--help']);
    expect(top.code).toBe(0);
    for (const c of COMMANDS) expect(top.out).toContain(c);
    for (const c of COMMANDS) {
      const r = await cli([c, '--help']);
      expect(r.code, c).toBe(0);
      expect(r.out, c).toMatch(/Usage: posttrain/);
      if (['run', 'stage', 'config', 'validate'].includes(c)) expect(r.out, c).toMatch(/Examples:/);
    }
  });

  it('unknown commands and options exit 2 with a suggestion', async () => {
    const r = await cli(['rn']);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/unknown command 'rn'/);
    expect(r.err).toMatch(/Did you mean run\?/);
    const o = await cli(['config', '--preest', 'smoke']);
    expect(o.code).toBe(2);
    expect(o.err).toMatch(/Did you mean --preset\?/);
  });

  it('--version prints the version', async () => {
    const r = await cli(['--version']);
    expect(r.code).toBe(0);
    expect(r.out.trim()).toMatch(/^\d+\.\d+\.\d+$/);
  });

  it('config errors exit 2 with every problem and no stack trace; --debug adds it', async () => {
    const r = await cli(['config', '--preset', 'smoke', '--set', 'stages.sft.learning_rat=1', '--set', 'stages.grpo.num_generations=3']);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/Invalid config:\n {2}- stages\.sft\.learning_rat: unknown key "learning_rat". Did you mean "learning_rate"\?/);
    expect(r.err).not.toMatch(/at .*\.ts:\d+/);
    const d = await cli(['config', '--preset', 'smoke', '--set', 'stages.sft.learning_rat=1', '--debug']);
    expect(d.err).toMatch(/ConfigError/);
    expect(d.err).toMatch(/at /);
  });

  it('the cross-field problems surface together', async () => {
    const r = await cli(['config', '--preset', 'smoke', '--set', 'stages.grpo.num_generations=3', '--set', 'stages.rlhf.policy.beta=0']);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/Invalid config \(2 problems\)/);
    expect(r.err).toMatch(/stages\.grpo\.num_generations: the generation batch .* \[from --set\]/);
  });
});

describe('config, presets, schema', () => {
  it('config prints the resolved config as JSON', async () => {
    const r = await cli(['config', '--preset', 'smoke', '--set', 'stages.sft.max_steps=5']);
    expect(r.code).toBe(0);
    const c = JSON.parse(r.out);
    expect(c.stages.sft.max_steps).toBe(5);
    expect(c.stages.dpo.loss_type).toBe('sigmoid'); // defaults filled in
  });

  it('presets lists one line each, or JSON', async () => {
    const r = await cli(['presets']);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/^cpu-real\s+\S.*\ngpu\s+\S.*\nsmoke\s+\S.*\n$/);
    expect(JSON.parse((await cli(['presets', '--json'])).out).map((p: { name: string }) => p.name)).toEqual(['cpu-real', 'gpu', 'smoke']);
  });

  it('schema prints or writes the JSON Schema', async () => {
    expect((await cli(['schema'])).out).toBe(renderJsonSchema());
    const dir = tmp();
    expect((await cli(['schema', '-o', 's.json'], { cwd: dir })).code).toBe(0);
    expect(JSON.parse((await import('node:fs')).readFileSync(join(dir, 's.json'), 'utf8')).title).toBe('posttrain config');
  });
});

describe('validate', () => {
  it('accepts real GSM8K with a column mapping (exit 0) and prints a summary', async () => {
    const r = await cli(['validate', 'sft', join(FIX, 'gsm8k-train-40.jsonl'), '--map', 'prompt=question', '--map', 'response=answer']);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/40 rows: 40 ok, 0 bad/);
  });

  it('accepts self-instruct seeds through dot paths and joins', async () => {
    const r = await cli(['validate', 'sft', join(FIX, 'self-instruct-seed-40.jsonl'), '--map', 'prompt=instruction+instances.0.input', '--map', 'response=instances.0.output']);
    expect(r.code).toBe(0);
  });

  it('accepts HH pairs in the implicit-prompt format, and GSM8K as GRPO prompts that carry answers', async () => {
    expect((await cli(['validate', 'dpo', join(FIX, 'hh-rlhf-harmless-test-40.jsonl'), '--format', 'implicit'])).code).toBe(0);
    expect((await cli(['validate', 'grpo', join(FIX, 'gsm8k-train-40.jsonl'), '--map', 'prompt=question'])).code).toBe(0);
    expect((await cli(['validate', 'rlhf.prompts', join(FIX, 'hh-rlhf-harmless-test-40.jsonl'), '--format', 'implicit'])).code).toBe(0);
  });

  it('reports every bad row with file:line and exits 2; --json gives the report', async () => {
    const dir = tmp();
    const f = join(dir, 'pairs.jsonl');
    writeFileSync(f, ['{"prompt":"p","chosen":"a","rejected":"b"}', '{"prompt":"p","chosen":"same","rejected":"same"}', '{"prompt":"p","chosen":"a"}', '{oops'].join('\n'));
    const r = await cli(['validate', 'dpo', f]);
    expect(r.code).toBe(2);
    expect(r.out).toContain(`${f}:2: chosen and rejected are identical`);
    expect(r.out).toMatch(new RegExp(`${f.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}:3: rejected: `));
    expect(r.out).toMatch(/:4: .*(JSON|mid-line)/);
    expect(r.out).toMatch(/4 rows: 1 ok, 3 bad/);
    expect(r.err).toMatch(/3 of 4 rows in .* are bad/);
    const j = JSON.parse((await cli(['validate', 'dpo', f, '--json'])).out);
    expect(j).toMatchObject({ rows: 4, ok: 1, bad: 3 });
    expect(j.problems.map((p: { line: number }) => p.line)).toEqual([2, 3, 4]);
  });

  it('GRPO prompts must carry the columns the reward functions read', async () => {
    const dir = tmp();
    const f = join(dir, 'p.jsonl');
    writeFileSync(f, '{"prompt":"2+2?"}\n');
    const r = await cli(['validate', 'grpo', f]); // default reward: exact_answer → needs answer
    expect(r.code).toBe(2);
    expect(r.out).toMatch(/:1: answer: /);
    expect((await cli(['validate', 'grpo', f, '--set', 'stages.grpo.reward_funcs=[{"name":"format"}]', '--preset', 'smoke'])).code).toBe(0);
  });

  it('uses the data path of a preset when no file is given', async () => {
    const r = await cli(['validate', 'rlhf.preferences', '--preset', 'smoke']);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/128 rows: 128 ok/);
  });

  it('user mistakes are usage errors, not crashes', async () => {
    expect((await cli(['validate', 'spt', 'x.jsonl'])).err).toMatch(/Did you mean "sft"/);
    const missing = await cli(['validate', 'sft', '/nonexistent/file.jsonl']);
    expect(missing.code).toBe(2);
    expect(missing.err).toMatch(/\/nonexistent\/file\.jsonl/);
    const badMap = await cli(['validate', 'sft', join(FIX, 'gsm8k-train-40.jsonl'), '--map', 'promt=question']);
    expect(badMap.code).toBe(2);
    expect(badMap.err).toMatch(/Did you mean "prompt"/);
    expect((await cli(['validate', 'sft', join(FIX, 'gsm8k-train-40.jsonl'), '--limit', 'x'])).code).toBe(2);
  });
});

describe('the real bin', () => {
  it('maps errors to exit codes in a real process', async () => {
    const cwd = tmp();
    const help = spawnCli(['--help'], { cwd });
    expect((await help.exit).code).toBe(0);
    const bad = spawnCli(['config', '--preset', 'nope'], { cwd });
    expect((await bad.exit).code).toBe(2);
    expect(bad.err()).toMatch(/Unknown preset "nope"/);
  });
});
