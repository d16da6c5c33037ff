// The controller end to end against the fake sidecar: a real Python process speaking the real
// protocol over real ZeroMQ sockets, playing scripted runs.
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { readMetrics } from '../../src/artifacts/index.js';
import { cli, fakeEnv, readJson, tmp } from '../helpers/cli.js';
import { recordReliability } from '../helpers/reliability.js';

const QUICK = { stages: { '*': { steps: 6, step_time_s: 0.005, save_every: 2 } } };

function onlyRun(cwd: string): string {
  const runs = readdirSync(join(cwd, 'runs')).filter((d) => !d.startsWith('.'));
  expect(runs).toHaveLength(1);
  return join(cwd, 'runs', runs[0]!);
}

const steps = (runDir: string, stage: string) => readMetrics(join(runDir, 'stages', stage, 'metrics.jsonl')).map((m) => m.step);

describe('a full run against the fake sidecar', () => {
  it('runs all four stages through one sidecar, chains adapters and writes every artifact', async () => {
    const cwd = tmp();
    const r = await cli(['run', '--preset', 'smoke'], { cwd, env: fakeEnv(QUICK) });
    expect(r.err).not.toMatch(/error:/);
    expect(r.code).toBe(0);
    const dir = onlyRun(cwd);
    expect(r.out.trim()).toBe(dir);

    const run = readJson(join(dir, 'run.json'));
    expect(run.status).toBe('ok');
    expect(run.preset).toBe('smoke');
    expect(run.fake_sidecar).toBe(true);
    expect(run.versions).toMatchObject({ posttrain: expect.any(String), protocol: '1.1', python: expect.any(String) });
    expect(Object.keys(run.data).sort()).toEqual(['dpo', 'grpo', 'rlhf.preferences', 'rlhf.prompts', 'sft']);
    expect(run.data.sft).toMatchObject({ rows: 96, format: 'prompt_response', skipped: 0 });
    expect(run.data.sft.sha256).toMatch(/^[0-9a-f]{64}$/);

    // Lineage: each stage starts from the previous stage's adapter.
    const prev: Record<string, string | null> = { sft: null, dpo: 'sft', grpo: 'dpo', rlhf: 'grpo' };
    for (const stage of ['sft', 'dpo', 'grpo', 'rlhf']) {
      const st = run.stages[stage];
      const sd = join(dir, 'stages', stage);
      // Paths in run.json are relative to the run folder (a moved run stays whole).
      expect(st).toMatchObject({ status: 'ok', steps: 6, output_adapter: join('stages', stage, 'adapter') });
      expect(st.input_adapter).toBe(prev[stage] ? join('stages', prev[stage]!, 'adapter') : null);
      expect(steps(dir, stage)).toEqual([1, 2, 3, 4, 5, 6]);
      const summary = readJson(join(sd, 'summary.json'));
      expect(summary).toMatchObject({ stage, status: 'ok', input_adapter: st.input_adapter, output_adapter: st.output_adapter });
      // The sidecar saw the same lineage the controller recorded.
      expect(readJson(join(sd, 'adapter', 'adapter_config.json')).posttrain.init_adapter).toBe(st.input_adapter && join(dir, st.input_adapter));
      expect(readFileSync(join(sd, 'sidecar.log'), 'utf8')).toMatch(/fake sidecar: stage/);
    }
    // Canonical data: the sidecar reads mapped rows from the run folder.
    const first = JSON.parse(readFileSync(join(dir, 'data', 'sft.jsonl'), 'utf8').split('\n')[0]!);
    expect(Object.keys(first)).toEqual(['prompt', 'completion']);
    // One sidecar for the whole run.
    expect(readFileSync(join(dir, 'sidecar.log'), 'utf8').match(/sidecar pid \d+/g)).toHaveLength(1);
    // The lock is gone.
    expect(existsSync(join(dir, '.lock'))).toBe(false);
  });

  it('--stages runs a subset, in order', async () => {
    const cwd = tmp();
    const r = await cli(['run', '--preset', 'smoke', '--stages', 'sft,dpo'], { cwd, env: fakeEnv(QUICK) });
    expect(r.code).toBe(0);
    const run = readJson(join(onlyRun(cwd), 'run.json'));
    expect(Object.keys(run.stages)).toEqual(['sft', 'dpo']);
    expect(Object.keys(run.data).sort()).toEqual(['dpo', 'sft']);
  });

  it('an unknown --stages name is a usage error with a suggestion', async () => {
    const r = await cli(['run', '--preset', 'smoke', '--stages', 'sft,dop'], { cwd: tmp(), env: fakeEnv(QUICK) });
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/unknown stage "dop". Did you mean "dpo"/);
  });

  it('bad data stops the run before anything starts and leaves no run folder', async () => {
    const cwd = tmp();
    writeFileSync(join(cwd, 'bad.jsonl'), '{"prompt": "a", "response": "b"}\n{"prompt": 3, "response": "b"}\nnot json\n');
    const r = await cli(['run', '--preset', 'smoke', '--stages', 'sft', '--set', 'data.sft.path=bad.jsonl'], { cwd, env: fakeEnv(QUICK) });
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/bad\.jsonl:2: prompt: expected a string, got number/);
    expect(r.err).toMatch(/bad\.jsonl:3: .*JSON/);
    expect(r.err).not.toMatch(/starting the sidecar/);
    expect(readdirSync(join(cwd, 'runs'))).toEqual([]);
  });

  it('on_bad_rows: skip leaves bad rows out and counts them', async () => {
    const cwd = tmp();
    writeFileSync(join(cwd, 'some-bad.jsonl'), '{"prompt": "a", "response": "b"}\n{"prompt": "", "response": "b"}\n{"prompt": "c", "response": "d"}\n');
    const r = await cli(['run', '--preset', 'smoke', '--stages', 'sft', '--set', 'data.sft.path=some-bad.jsonl', '--set', 'data.sft.on_bad_rows=skip'], { cwd, env: fakeEnv(QUICK) });
    expect(r.code).toBe(0);
    expect(r.err).toMatch(/left out 1 bad row\(s\) of 3/);
    const dir = onlyRun(cwd);
    expect(readJson(join(dir, 'run.json')).data.sft).toMatchObject({ rows: 2, skipped: 1 });
    expect(readFileSync(join(dir, 'data', 'sft.jsonl'), 'utf8').trim().split('\n')).toHaveLength(2);
  });
});

describe('failures are typed, recorded and recoverable', () => {
  it('a crash at step k fails the stage with the stderr tail, keeps metrics so far, and resume finishes it', async () => {
    const cwd = tmp();
    const crash = { stages: { '*': QUICK.stages['*'], dpo: { ...QUICK.stages['*'], crash_at_step: 5 } } };
    const r = await cli(['run', '--preset', 'smoke'], { cwd, env: fakeEnv(crash) });
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/The training sidecar exited with code 3 during stage dpo/);
    expect(r.err).toMatch(/fake: crashing at step 5/); // the stderr tail
    expect(r.err).toMatch(/posttrain run --resume --run \S+/);
    const dir = onlyRun(cwd);
    let run = readJson(join(dir, 'run.json'));
    expect(run.status).toBe('failed');
    expect(run.stages.sft.status).toBe('ok');
    expect(run.stages.dpo).toMatchObject({ status: 'failed', error: { code: 'sidecar_crashed' } });
    expect(run.stages.grpo.status).toBe('pending');
    expect(steps(dir, 'dpo')).toEqual([1, 2, 3, 4]);

    // Resume from the newest complete checkpoint (step 4): no duplicated, no missing steps.
    const again = await cli(['stage', 'dpo', '--resume'], { cwd, env: fakeEnv(QUICK) });
    expect(again.code).toBe(0);
    run = readJson(join(dir, 'run.json'));
    expect(run.stages.dpo).toMatchObject({ status: 'ok', resumed_from: join('stages', 'dpo', 'checkpoints', 'checkpoint-4') });
    expect(steps(dir, 'dpo')).toEqual([1, 2, 3, 4, 5, 6]);
    // The resumed values equal the uninterrupted run's (the fake is deterministic in the step).
    const values = readMetrics(join(dir, 'stages', 'dpo', 'metrics.jsonl')).map((m) => m.values['train/loss']);
    expect(values).toEqual(readMetrics(join(dir, 'stages', 'sft', 'metrics.jsonl')).map((m) => m.values['train/loss']));
    // grpo and rlhf are still to do: the run is not ok yet, and the next stage chains from dpo.
    expect(run.status).toBe('incomplete'); // nothing interrupted any more, but not every stage has run
    const next = await cli(['stage', 'grpo'], { cwd, env: fakeEnv(QUICK) });
    expect(next.code).toBe(0);
    expect(readJson(join(dir, 'run.json')).stages.grpo.input_adapter).toBe(join('stages', 'dpo', 'adapter'));
    recordReliability({ fault: 'sidecar exits mid-stage (fake, exit 3)', stage: 'dpo', injected: 1, survived: 1, lost: 0, outcome: 'stage failed with stderr tail; resume from checkpoint-4 gave steps 1..6 once each', test: 'fake-run: crash at step k' });
  });

  it('an incomplete newest checkpoint is skipped by resume', async () => {
    const cwd = tmp();
    const crash = { stages: { '*': { ...QUICK.stages['*'], crash_at_step: 5 } } };
    await cli(['run', '--preset', 'smoke', '--stages', 'sft'], { cwd, env: fakeEnv(crash) });
    const dir = onlyRun(cwd);
    // A checkpoint-5 folder without its completion marker, as a kill mid-save leaves it.
    const half = join(dir, 'stages', 'sft', 'checkpoints', 'checkpoint-5');
    (await import('node:fs')).mkdirSync(half, { recursive: true });
    writeFileSync(join(half, 'trainer_state.json'), '{"global_step": 5');
    const r = await cli(['stage', 'sft', '--resume'], { cwd, env: fakeEnv(QUICK) });
    expect(r.code).toBe(0);
    expect(readJson(join(dir, 'run.json')).stages.sft.resumed_from).toMatch(/checkpoint-4$/);
    expect(steps(dir, 'sft')).toEqual([1, 2, 3, 4, 5, 6]);
    recordReliability({ fault: 'newest checkpoint half-written (no completion marker)', stage: 'sft', injected: 1, survived: 1, lost: 0, outcome: 'resume skipped it and used the previous complete checkpoint', test: 'fake-run: incomplete newest checkpoint' });
  });

  it('a hung sidecar is detected by the heartbeat timeout', async () => {
    const cwd = tmp();
    const hang = { stages: { '*': { ...QUICK.stages['*'], hang_at_step: 3 } } };
    const t0 = Date.now();
    const r = await cli(['run', '--preset', 'smoke', '--stages', 'sft', '--set', 'runtime.heartbeat_interval_s=0.2', '--set', 'runtime.heartbeat_timeout_s=1.5'], {
      cwd,
      env: fakeEnv(hang),
    });
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/stopped answering \(no heartbeat for \d+\.\d s\)/);
    expect(Date.now() - t0).toBeLessThan(15_000);
    const run = readJson(join(onlyRun(cwd), 'run.json'));
    expect(run.stages.sft).toMatchObject({ status: 'failed', error: { code: 'sidecar_hung' } });
    expect(steps(onlyRun(cwd), 'sft')).toEqual([1, 2]);
    recordReliability({ fault: 'sidecar hangs (no heartbeats)', stage: 'sft', injected: 1, survived: 1, lost: 0, outcome: 'detected by heartbeat timeout, sidecar killed, stage failed with sidecar_hung', test: 'fake-run: hang' });
  });

  it('a refusal in-band fails the stage with its code and message', async () => {
    const cwd = tmp();
    const refuse = { stages: { '*': QUICK.stages['*'], sft: { error: { code: 'out_of_memory', message: 'CUDA out of memory (fake)', retryable: true } } } };
    const r = await cli(['run', '--preset', 'smoke'], { cwd, env: fakeEnv(refuse) });
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/Stage sft failed: \[out_of_memory\] CUDA out of memory \(fake\)/);
    expect(r.err).toMatch(/hint: This may be transient/);
    expect(readJson(join(onlyRun(cwd), 'run.json')).stages.sft).toMatchObject({ status: 'failed', error: { code: 'out_of_memory' } });
  });

  it('a slow start within start_timeout_s is fine; beyond it is a clear error', async () => {
    const slow = { ...QUICK, start_delay_s: 1.2 };
    const ok = await cli(['run', '--preset', 'smoke', '--stages', 'sft'], { cwd: tmp(), env: fakeEnv(slow) });
    expect(ok.code).toBe(0);
    const cwd = tmp();
    const late = await cli(['run', '--preset', 'smoke', '--stages', 'sft', '--set', 'runtime.start_timeout_s=0.5'], { cwd, env: fakeEnv(slow) });
    expect(late.code).toBe(1);
    expect(late.err).toMatch(/did not say hello within 0.5 s/);
    expect(late.err).toMatch(/raise runtime.start_timeout_s/);
  });

  it('a sidecar that dies before hello shows its stderr', async () => {
    const r = await cli(['run', '--preset', 'smoke', '--stages', 'sft'], { cwd: tmp(), env: fakeEnv({ exit_before_hello: { code: 4, stderr: 'ImportError: no module named torch (fake)' } }) });
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/exited with code 4 before saying hello/);
    expect(r.err).toMatch(/ImportError: no module named torch \(fake\)/);
  });

  it('a protocol major mismatch is refused', async () => {
    const r = await cli(['run', '--preset', 'smoke', '--stages', 'sft'], { cwd: tmp(), env: fakeEnv({ ...QUICK, protocol: '2.0' }) });
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/The sidecar speaks protocol 2.0; this controller speaks 1.1/);
  });

  it('a missing Python is a clear error', async () => {
    const r = await cli(['run', '--preset', 'smoke', '--stages', 'sft', '--set', 'runtime.python=/nonexistent/python3'], { cwd: tmp(), env: fakeEnv(QUICK) });
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/sidecar's Python \(\/nonexistent\/python3\) does not exist/);
  });
});

describe('stage and resume rules', () => {
  it('nothing to resume, unknown run and unsafe config changes are usage errors', async () => {
    const cwd = tmp();
    expect((await cli(['stage', 'sft', '--resume'], { cwd, env: fakeEnv(QUICK) })).err).toMatch(/no runs/i);
    await cli(['run', '--preset', 'smoke', '--stages', 'sft'], { cwd, env: fakeEnv({ stages: { '*': { ...QUICK.stages['*'], save_every: 100 } } }) });
    const dir = onlyRun(cwd);
    // dpo never ran: nothing to resume.
    const none = await cli(['stage', 'dpo', '--resume'], { cwd, env: fakeEnv(QUICK) });
    expect(none.code).toBe(2);
    expect(none.err).toMatch(/Nothing to resume for stage dpo/);
    // A changed learning rate makes the sft checkpoint meaningless; a longer run does not.
    const unsafe = await cli(['stage', 'sft', '--resume', '--preset', 'smoke', '--set', 'stages.sft.learning_rate=0.1'], { cwd, env: fakeEnv(QUICK) });
    expect(unsafe.code).toBe(2);
    expect(unsafe.err).toMatch(/Cannot resume stage sft[\s\S]*stages\.sft\.learning_rate: 0\.005 → 0\.1/);
    const safe = await cli(['stage', 'sft', '--resume', '--preset', 'smoke', '--set', 'stages.sft.max_steps=60'], { cwd, env: fakeEnv(QUICK) });
    expect(safe.code).toBe(0);
    expect(readJson(join(dir, 'run.json')).stages.sft.config.stages.sft.max_steps).toBe(60);
    const unknown = await cli(['stage', 'sft', '--run', 'nope'], { cwd, env: fakeEnv(QUICK) });
    expect(unknown.code).toBe(2);
  });

  it('stage with only --set / --stop-on layers them over the run\'s own config', async () => {
    const cwd = tmp();
    await cli(['run', '--preset', 'smoke', '--stages', 'sft'], { cwd, env: fakeEnv(QUICK) });
    const dir = onlyRun(cwd);
    const r = await cli(['stage', 'sft', '--set', 'stages.sft.max_steps=12', '--stop-on', 'kl_runaway,nan_loss'], { cwd, env: fakeEnv(QUICK) });
    expect(r.code, r.err).toBe(0);
    const run = readJson(join(dir, 'run.json'));
    expect(run.preset).toBe('smoke');
    // Recorded on the stage; the run's own config is not overwritten by one stage's change.
    const own = run.stages.sft.config;
    expect(own.stages.sft.max_steps).toBe(12);
    expect(own.monitor.stop_on).toEqual(['kl_runaway', 'nan_loss']);
    expect(run.config.stages.sft.max_steps).toBe(30);
    expect(run.config.monitor.stop_on).toEqual([]);
    // Everything else is still the run's: the smoke model and data, not schema defaults.
    expect(own.model.id).toMatch(/smoke-model$/);
    expect(run.stages.sft.overrides).toContain('monitor.stop_on=["kl_runaway","nan_loss"]');
    expect(run.overrides).not.toContain('monitor.stop_on=["kl_runaway","nan_loss"]');
    const bad = await cli(['stage', 'sft', '--stop-on', 'kl_runway'], { cwd, env: fakeEnv(QUICK) });
    expect(bad.code).toBe(2);
    expect(bad.err).toMatch(/--stop-on: unknown health rule "kl_runway"\. Did you mean "kl_runaway"\?/);
  });

  it('re-running a stage keeps the earlier attempt', async () => {
    const cwd = tmp();
    await cli(['run', '--preset', 'smoke', '--stages', 'sft'], { cwd, env: fakeEnv(QUICK) });
    const dir = onlyRun(cwd);
    const r = await cli(['stage', 'sft'], { cwd, env: fakeEnv(QUICK) });
    expect(r.code).toBe(0);
    expect(readdirSync(join(dir, 'stages', '.attempts'))).toHaveLength(1);
  });

  it('runs and show summarise runs', async () => {
    const cwd = tmp();
    await cli(['run', '--preset', 'smoke', '--stages', 'sft,dpo'], { cwd, env: fakeEnv(QUICK) });
    const runs = await cli(['runs'], { cwd });
    expect(runs.code).toBe(0);
    expect(runs.out).toMatch(/^\d{8}-\d{6}-[0-9a-f]{4}\s+ok\s+smoke\s+sft:ok dpo:ok\n$/);
    const show = await cli(['show'], { cwd });
    expect(show.code).toBe(0);
    expect(show.out).toMatch(/config\s+preset smoke/);
    expect(show.out).toMatch(/dpo\s+ok\s+steps 6\s+train\/loss=/);
    expect(show.out).toMatch(/from .*stages\/sft\/adapter/);
    const json = JSON.parse((await cli(['show', '--json'], { cwd })).out);
    expect(json.stages.dpo.status).toBe('ok');
  });
});
