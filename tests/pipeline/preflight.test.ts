// Preflight: config rules for local model folders (controller) and the sidecar's `preflight`
// check (model config, tokenizer, reward functions, device) before any stage starts.
import { copyFileSync, existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Sidecar } from '../../src/bridge/sidecar.js';
import { PACKAGE_ROOT } from '../../src/paths.js';
import { sidecarSpec } from '../../src/pipeline/sidecar-spec.js';
import { resolveConfig } from '../../src/config/resolve.js';
import { cli, fakeEnv, readJson, tmp } from '../helpers/cli.js';

const SMOKE_MODEL = join(PACKAGE_ROOT, 'data', 'smoke-model');
const QUICK = { stages: { '*': { steps: 3, step_time_s: 0, save_every: 0 } } };

/** The environment without the fake-sidecar hook: runs use the real sidecar. */
function realEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  delete env.POSTTRAIN_SIDECAR_MODULE;
  delete env.POSTTRAIN_FAKE_SCRIPT;
  return env;
}

function onlyRun(cwd: string): string {
  const runs = readdirSync(join(cwd, 'runs')).filter((d) => !d.startsWith('.'));
  expect(runs).toHaveLength(1);
  return join(cwd, 'runs', runs[0]!);
}

/** Nothing trained: every stage pending, no stage folder with metrics. */
function expectNothingStarted(dir: string) {
  const run = readJson(join(dir, 'run.json'));
  expect(run.status).toBe('failed');
  for (const st of Object.values(run.stages) as { status: string }[]) expect(st.status).toBe('pending');
  const stagesDir = join(dir, 'stages');
  const started = existsSync(stagesDir) ? readdirSync(stagesDir).filter((s) => existsSync(join(stagesDir, s, 'metrics.jsonl'))) : [];
  expect(started).toEqual([]);
  return run;
}

/** A copy of the smoke model folder, minus the named files. */
function modelCopy(without: string[]): string {
  const dir = join(tmp('posttrain-model-'), 'model');
  mkdirSync(dir);
  for (const f of readdirSync(SMOKE_MODEL)) if (!without.includes(f)) copyFileSync(join(SMOKE_MODEL, f), join(dir, f));
  return dir;
}

describe('config rules for a local model folder', () => {
  it('a missing model path is a config error (exit 2) and no run folder is made', async () => {
    const cwd = tmp();
    const r = await cli(['run', '--preset', 'smoke', '--set', 'model.id=./no-such-model'], { cwd, env: fakeEnv(QUICK) });
    expect(r.code).toBe(2);
    expect(r.err).toContain(`model.id: ${join(cwd, 'no-such-model')} does not exist`);
    expect(r.err).toMatch(/Fix: point model.id at a folder/);
    expect(existsSync(join(cwd, 'runs'))).toBe(false);
  });

  it('a model folder without a tokenizer is a clear config error from the controller', async () => {
    const model = modelCopy(['tokenizer.json', 'tokenizer_config.json', 'chat_template.jinja']);
    const cwd = tmp();
    const r = await cli(['run', '--preset', 'smoke', '--set', `model.id=${model}`], { cwd, env: fakeEnv(QUICK) });
    expect(r.code).toBe(2);
    expect(r.err).toContain(`model.id: ${model} has no tokenizer`);
    expect(r.err).toMatch(/tokenizer\.save_pretrained/);
    expect(existsSync(join(cwd, 'runs'))).toBe(false);
    // `posttrain config` runs the same rules.
    const c = await cli(['config', '--preset', 'smoke', '--set', `model.id=${model}`], { cwd });
    expect(c.code).toBe(2);
    expect(c.err).toMatch(/has no tokenizer/);
  });

  it('a folder without config.json, and a file, are not model folders; all problems at once', () => {
    const cwd = tmp();
    mkdirSync(join(cwd, 'empty'));
    writeFileSync(join(cwd, 'file.bin'), 'x');
    const issues = (spec: string) => {
      try {
        resolveConfig({ preset: 'smoke', set: [`model.id=${spec}`], cwd });
      } catch (e) {
        return (e as { issues: { path: string; message: string }[] }).issues;
      }
      return [];
    };
    const empty = issues('./empty');
    expect(empty.map((i) => i.path)).toEqual(['model.id', 'model.id']);
    expect(empty[0]!.message).toMatch(/has no config.json — is it a model folder\?/);
    expect(empty[1]!.message).toMatch(/has no tokenizer/);
    expect(issues('./file.bin')[0]!.message).toMatch(/is a file, not a model folder/);
    // Hub ids are not checked here (the sidecar looks in its cache).
    expect(issues('Qwen/Qwen2.5-0.5B')).toEqual([]);
  });
});

describe('the sidecar preflight (real sidecar)', () => {
  it('a reward function that does not import stops the run before any stage (exit 2)', async () => {
    const cwd = tmp();
    const r = await cli(['run', '--preset', 'smoke', '--set', 'stages.grpo.reward_funcs=[{"name":"nope_module:fn"}]'], { cwd, env: realEnv() });
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/preflight check found 1 problem; no stage was started/);
    expect(r.err).toMatch(/\[grpo\] reward_import_failed: stages\.grpo\.reward_funcs\.0: .*nope_module/);
    expect(r.err).toMatch(/fix: /);
    expect(r.err).not.toMatch(/sft: step/);
    const run = expectNothingStarted(onlyRun(cwd));
    expect(run.error).toMatchObject({ code: 'preflight_failed' });
    expect(run.preflight).toMatchObject({ ok: false, stages: ['sft', 'dpo', 'grpo', 'rlhf'] });
    expect(run.preflight.problems[0]).toMatchObject({ stage: 'grpo', code: 'reward_import_failed', severity: 'error' });
  });

  it('a broken tokenizer the config rule cannot see is caught by the sidecar', async () => {
    const model = modelCopy([]);
    writeFileSync(join(model, 'tokenizer.json'), 'not json');
    const cwd = tmp();
    const r = await cli(['run', '--preset', 'smoke', '--stages', 'sft', '--set', `model.id=${model}`], { cwd, env: realEnv() });
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/\[all stages\] tokenizer_failed: cannot load a tokenizer for /);
    expectNothingStarted(onlyRun(cwd));
  });

  it('Sidecar.preflight answers ok for the smoke preset and lists problems otherwise', async () => {
    const cwd = tmp();
    const { config } = resolveConfig({ preset: 'smoke', cwd });
    const s = await Sidecar.start(sidecarSpec(config, realEnv(), cwd));
    try {
      // Nothing wrong: only the memory estimate of each stage, as notes.
      const ok = await s.preflight(config, ['sft', 'grpo']);
      expect(ok.ok).toBe(true);
      expect(ok.problems.map((p) => `${p.stage}:${p.code}:${p.severity}`)).toEqual(['sft:memory_estimate:info', 'grpo:memory_estimate:info']);
      const bad = structuredClone(config) as any;
      bad.stages.grpo.reward_funcs = [{ name: 'length', args: {} }, { name: 'nope_mod:f' }];
      bad.runtime.device = 'cuda';
      const res = await s.preflight(bad, ['grpo', 'ppo']);
      expect(res.ok).toBe(false);
      const codes = res.problems.map((p) => `${p.stage}:${p.code}`);
      expect(codes).toEqual(expect.arrayContaining(['ppo:unknown_stage', 'grpo:bad_reward_args', 'grpo:reward_import_failed']));
      // The sidecar still serves after a failed preflight.
      expect(await s.ping()).toBeGreaterThan(0);
    } finally {
      await s.shutdown();
    }
  });
});

describe('the sidecar preflight (fake sidecar)', () => {
  const problem = { stage: 'dpo', code: 'scripted', message: 'scripted problem', fix: 'do the thing' };

  it('scripted problems fail the run with exit 2, every problem listed, nothing started', async () => {
    const cwd = tmp();
    const script = { ...QUICK, preflight_problems: [problem, { stage: null, code: 'other', message: 'second one' }] };
    const r = await cli(['run', '--preset', 'smoke'], { cwd, env: fakeEnv(script) });
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/found 2 problems/);
    expect(r.err).toMatch(/\[dpo\] scripted: scripted problem\n\s+fix: do the thing/);
    expect(r.err).toMatch(/\[all stages\] other: second one/);
    expectNothingStarted(onlyRun(cwd));
  });

  it('warnings do not stop the run; they are printed and kept in run.json', async () => {
    const cwd = tmp();
    const script = { ...QUICK, preflight_problems: [{ ...problem, severity: 'warning', message: 'just so you know' }] };
    const r = await cli(['run', '--preset', 'smoke', '--stages', 'sft'], { cwd, env: fakeEnv(script) });
    expect(r.code).toBe(0);
    expect(r.err).toMatch(/warning: \[dpo\] just so you know/);
    const run = readJson(join(onlyRun(cwd), 'run.json'));
    expect(run.status).toBe('ok');
    expect(run.preflight).toMatchObject({ ok: true, stages: ['sft'] });
    expect(run.error).toBeUndefined();
  });

  it('`posttrain stage` runs the preflight too: the stage is not marked running', async () => {
    const cwd = tmp();
    expect((await cli(['run', '--preset', 'smoke', '--stages', 'sft'], { cwd, env: fakeEnv(QUICK) })).code).toBe(0);
    const dir = onlyRun(cwd);
    const r = await cli(['stage', 'dpo', '--run', 'latest'], { cwd, env: fakeEnv({ ...QUICK, preflight_problems: [problem] }) });
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/\[dpo\] scripted: scripted problem/);
    const run = readJson(join(dir, 'run.json'));
    expect(run.status).toBe('failed');
    expect(run.stages.sft.status).toBe('ok');
    expect(run.stages.dpo?.status ?? 'pending').toBe('pending');
    expect(existsSync(join(dir, 'stages', 'dpo', 'metrics.jsonl'))).toBe(false);
    expect(run.preflight).toMatchObject({ ok: false, stages: ['dpo'] });
    // Once fixed, the same command trains the stage.
    const ok = await cli(['stage', 'dpo', '--run', 'latest'], { cwd, env: fakeEnv(QUICK) });
    expect(ok.code).toBe(0);
    const after = readJson(join(dir, 'run.json'));
    expect(after.stages.dpo.status).toBe('ok');
    expect(after.error).toBeUndefined();
  });
});
