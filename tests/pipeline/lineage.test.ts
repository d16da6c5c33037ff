// Lineage: each stage records what it stood on; a stage whose parent changed is stale (shown by
// runs, show, --json), a stage never starts from the base model when its parent is missing,
// failed, stale or corrupted, `run --resume` re-runs what is stale, a moved run folder still
// works, and a changed data path takes a new snapshot. Fake sidecar (the controller's logic);
// every case is a row of docs/RELIABILITY.md, written from what was observed.
import { cpSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { cli, fakeEnv, readJson, tmp } from '../helpers/cli.js';
import { recordReliability } from '../helpers/reliability.js';

const QUICK = { stages: { '*': { steps: 4, step_time_s: 0, save_every: 2 } } };
const STEPS = ['sft', 'dpo', 'grpo', 'rlhf'].map((s) => `stages.${s === 'rlhf' ? 'rlhf.policy' : s}.max_steps=4`);

async function fullRun(cwd: string): Promise<string> {
  const r = await cli(['run', '--preset', 'smoke', ...STEPS.flatMap((s) => ['--set', s])], { cwd, env: fakeEnv(QUICK) });
  expect(r.code, r.err).toBe(0);
  return r.out.trim();
}

function row(fault: string, ok: boolean, outcome: string, stage = 'dpo') {
  recordReliability({ fault, stage, injected: 1, survived: ok ? 1 : 0, lost: 0, outcome, test: 'tests/pipeline/lineage.test.ts' });
}

describe('stale stages', () => {
  it('re-running sft makes dpo, grpo and rlhf stale; a stale parent is refused; run --resume re-runs them', async () => {
    const cwd = tmp();
    const dir = await fullRun(cwd);
    const again = await cli(['stage', 'sft', '--set', 'stages.sft.learning_rate=0.01'], { cwd, env: fakeEnv(QUICK) });
    expect(again.code, again.err).toBe(0);
    expect(again.err).toContain('now stale: dpo (sft was re-run after it (it trained on an earlier sft adapter)); grpo (its parent dpo is stale); rlhf (its parent grpo is stale).');
    expect(again.err).toMatch(/`posttrain run --resume --run \S+[^`]*` re-runs them in order/);
    const report = await cli(['report'], { cwd });
    expect(readFileSync(report.out.trim(), 'utf8')).toContain('stale: sft was re-run after it (it trained on an earlier sft adapter)');

    const listed = (await cli(['runs'], { cwd })).out;
    const shown = (await cli(['show'], { cwd })).out;
    const json = JSON.parse((await cli(['runs', '--json'], { cwd })).out).runs[0].lineage;
    const refused = await cli(['stage', 'grpo'], { cwd, env: fakeEnv(QUICK) });
    const grpoBefore = readJson(join(dir, 'run.json')).stages.grpo;
    row('sft re-run with another learning rate, then the stages after it', listed.includes('dpo:ok(stale)') && refused.code === 2,
      `runs: ${listed.trim().split(/\s+/).slice(3).join(' ')}; stage grpo: exit ${refused.code}`, 'dpo');
    expect(listed).toMatch(/sft:ok dpo:ok\(stale\) grpo:ok\(stale\) rlhf:ok\(stale\)/);
    expect(shown).toMatch(/dpo\s+ok STALE/);
    expect(shown).toContain('stale: sft was re-run after it (it trained on an earlier sft adapter)');
    expect(json.dpo).toEqual({ stale: true, reason: 'sft was re-run after it (it trained on an earlier sft adapter)' });
    expect(json.grpo).toEqual({ stale: true, reason: 'its parent dpo is stale' });
    expect(json.sft).toEqual({ stale: false, reason: null });
    expect(refused.err).toContain('Stage grpo trains from dpo, which is stale');
    expect(refused.err).toMatch(/`posttrain run --resume --run \S+/);
    expect(readJson(join(dir, 'run.json')).stages.grpo).toEqual(grpoBefore);

    const resumed = await cli(['run', '--resume'], { cwd, env: fakeEnv(QUICK) });
    expect(resumed.code, resumed.err).toBe(0);
    const run = readJson(join(dir, 'run.json'));
    expect(run.status).toBe('ok');
    expect((await cli(['runs'], { cwd })).out).toMatch(/ok .* sft:ok dpo:ok grpo:ok rlhf:ok\s*$/m);
    // sft was not trained again; the others were, each from its parent's current adapter.
    expect(run.stages.sft.output_sha256).toBe(readJson(join(dir, 'run.json')).stages.sft.output_sha256);
    expect(run.stages.dpo.inputs.adapter_sha256).toBe(run.stages.sft.output_sha256);
    expect(run.stages.grpo.inputs.adapter_sha256).toBe(run.stages.dpo.output_sha256);
    // What each ran with: sft its own --set learning rate, the others the run's config.
    expect(run.stages.sft.inputs.config_sha256).not.toBe(run.stages.dpo.inputs.config_sha256);
    expect(run.stages.dpo.inputs.config_sha256).toBe(run.stages.grpo.inputs.config_sha256);
    const nothing = await cli(['run', '--resume'], { cwd, env: fakeEnv(QUICK) });
    expect(nothing.code).toBe(0);
    expect(nothing.err).toContain('every selected stage is ok and none is stale; nothing to resume');
  });
});

describe('a stage never silently starts from the base model', () => {
  it('parent adapter deleted, parent failed, parent corrupted: refused with the parent state and the fix', async () => {
    const cwd = tmp();
    const dir = await fullRun(cwd);
    const before = readFileSync(join(dir, 'run.json'), 'utf8');

    const weights = join(dir, 'stages', 'sft', 'adapter', 'adapter_model.safetensors');
    const good = readFileSync(weights);
    writeFileSync(weights, Buffer.concat([good.subarray(0, good.length - 2), Buffer.from('!!')]));
    const corrupted = await cli(['stage', 'dpo'], { cwd, env: fakeEnv(QUICK) });
    row('parent adapter corrupted (bytes changed)', corrupted.code === 2 && readFileSync(join(dir, 'run.json'), 'utf8') === before, `exit ${corrupted.code}`);
    expect(corrupted.code).toBe(2);
    expect(corrupted.err).toMatch(/Stage dpo trains from sft's adapter, but \S+ is not what sft wrote/);
    expect(corrupted.err).toMatch(/Run sft first \(`posttrain stage sft --run \S+( --runs-dir \S+)?`\)/);
    expect(readFileSync(join(dir, 'run.json'), 'utf8')).toBe(before);

    rmSync(join(dir, 'stages', 'sft', 'adapter'), { recursive: true });
    const missing = await cli(['stage', 'dpo'], { cwd, env: fakeEnv(QUICK) });
    row('parent adapter deleted', missing.code === 2 && readFileSync(join(dir, 'run.json'), 'utf8') === before, `exit ${missing.code}`);
    expect(missing.code).toBe(2);
    expect(missing.err).toContain("Stage dpo trains from sft's adapter, but");
    expect(missing.err).toContain('is missing from run');

    const cwd2 = tmp();
    const crash = { stages: { '*': QUICK.stages['*'], sft: { ...QUICK.stages['*'], crash_at_step: 3 } } };
    expect((await cli(['run', '--preset', 'smoke', '--stages', 'sft,dpo'], { cwd: cwd2, env: fakeEnv(crash) })).code).toBe(1);
    const failed = await cli(['stage', 'dpo'], { cwd: cwd2, env: fakeEnv(QUICK) });
    row('parent stage failed', failed.code === 2, `exit ${failed.code}`);
    expect(failed.code).toBe(2);
    expect(failed.err).toMatch(/Stage dpo trains from sft's adapter, but sft is failed in run/);
  });

  it('a stage the run has no parent for trains from the base model, as asked', async () => {
    const cwd = tmp();
    const r = await cli(['run', '--preset', 'smoke', '--stages', 'dpo'], { cwd, env: fakeEnv(QUICK) });
    expect(r.code, r.err).toBe(0);
    expect(readJson(join(r.out.trim(), 'run.json')).stages.dpo).toMatchObject({ status: 'ok', input_adapter: null, inputs: { parent: null } });
  });
});

describe('relocation and data snapshots', () => {
  it('a moved runs folder keeps working: stage dpo finds sft in the new place', async () => {
    const cwd = tmp();
    const dir = await fullRun(cwd);
    const id = dir.split('/').pop()!;
    cpSync(join(cwd, 'runs'), join(cwd, 'moved'), { recursive: true });
    rmSync(join(cwd, 'runs'), { recursive: true });
    const r = await cli(['stage', 'dpo', '--runs-dir', 'moved', '--set', 'stages.dpo.beta=0.2'], { cwd, env: fakeEnv(QUICK) });
    const st = readJson(join(cwd, 'moved', id, 'run.json')).stages.dpo;
    row('run folder moved, then a stage re-run', r.code === 0 && st.input_adapter === join('stages', 'sft', 'adapter'), `exit ${r.code}, input ${st.input_adapter}`);
    expect(r.code, r.err).toBe(0);
    expect(st).toMatchObject({ status: 'ok', input_adapter: join('stages', 'sft', 'adapter') });
    const fakeMeta = readJson(join(cwd, 'moved', id, 'stages', 'dpo', 'adapter', 'adapter_config.json')).posttrain;
    expect(fakeMeta.init_adapter).toBe(join(cwd, 'moved', id, 'stages', 'sft', 'adapter'));
  });

  it('stage sft with a new data path trains on a new snapshot, and run.json says so', async () => {
    const cwd = tmp();
    const first = await cli(['run', '--preset', 'smoke', '--stages', 'sft'], { cwd, env: fakeEnv(QUICK) });
    const dir = first.out.trim();
    const old = readJson(join(dir, 'run.json')).data.sft;
    writeFileSync(join(cwd, 'new.jsonl'), '{"prompt": "2+2=", "response": "4"}\n{"prompt": "3+3=", "response": "6"}\n');
    const r = await cli(['stage', 'sft', '--set', 'data.sft.path=new.jsonl'], { cwd, env: fakeEnv(QUICK) });
    const now = readJson(join(dir, 'run.json')).data.sft;
    const rows = readFileSync(join(dir, 'data', 'sft.jsonl'), 'utf8').trim().split('\n');
    row('stage sft --set data.sft.path=<another file>', r.code === 0 && now.source === join(cwd, 'new.jsonl') && rows.length === 2, `exit ${r.code}, ${rows.length} rows in the snapshot`, 'sft');
    expect(r.code, r.err).toBe(0);
    expect(now).toMatchObject({ source: join(cwd, 'new.jsonl'), rows: 2 });
    expect(now.sha256).not.toBe(old.sha256);
    expect(rows).toHaveLength(2);
    expect(readJson(join(dir, 'run.json')).stages.sft.inputs.data_sha256.sft).toBe(now.sha256);
  });
});
