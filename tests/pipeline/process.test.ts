// The real `posttrain` bin as a child process: signals, a killed controller, two processes on
// one run folder, and a Node process that exits on its own (no ZeroMQ handle leaks).
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { newestCompleteCheckpoint, readMetrics } from '../../src/artifacts/index.js';
import { cli, fakeEnv, isAlive, readJson, spawnCli, tmp, waitFor } from '../helpers/cli.js';
import { recordReliability } from '../helpers/reliability.js';

const SLOW = { stages: { '*': { steps: 400, step_time_s: 0.02, save_every: 50 } } };

const runDirIn = (cwd: string) => {
  const runs = existsSync(join(cwd, 'runs')) ? readdirSync(join(cwd, 'runs')).filter((d) => !d.startsWith('.')) : [];
  return runs.length === 1 ? join(cwd, 'runs', runs[0]!) : undefined;
};
const metricsCount = (dir: string, stage: string) => {
  const p = join(dir, 'stages', stage, 'metrics.jsonl');
  return existsSync(p) ? readMetrics(p).length : 0;
};
const sidecarPid = (dir: string) => {
  const m = existsSync(join(dir, 'sidecar.log')) ? /sidecar pid (\d+)/.exec(readFileSync(join(dir, 'sidecar.log'), 'utf8')) : null;
  return m ? Number(m[1]) : undefined;
};

describe('signals and dead processes', () => {
  it('Ctrl-C cancels at a step boundary with a checkpoint, exits 130, and resume finishes the stage', async () => {
    const cwd = tmp();
    const child = spawnCli(['run', '--preset', 'smoke', '--stages', 'sft,dpo'], { cwd, env: fakeEnv(SLOW) });
    const dir = await waitFor(() => runDirIn(cwd), 20_000, 'run folder');
    await waitFor(() => metricsCount(dir, 'sft') >= 10, 20_000, 'some sft metrics');
    child.proc.kill('SIGINT');
    const { code } = await child.exit;
    expect(code).toBe(130);
    expect(child.err()).toMatch(/stopping at the next step boundary/);
    expect(child.err()).toMatch(/Stage sft was cancelled; a checkpoint was saved/);
    const run = readJson(join(dir, 'run.json'));
    expect(run.status).toBe('interrupted');
    expect(run.stages.sft.status).toBe('cancelled');
    expect(run.stages.dpo.status).toBe('pending');
    const ckpt = newestCompleteCheckpoint(join(dir, 'stages', 'sft'));
    expect(ckpt).not.toBeNull();
    expect(ckpt!.step).toBe(metricsCount(dir, 'sft')); // the checkpoint is at the last recorded step
    expect(existsSync(join(dir, '.lock'))).toBe(false);

    const resumed = await cli(['stage', 'sft', '--resume'], { cwd, env: fakeEnv({ stages: { '*': { steps: ckpt!.step + 3, step_time_s: 0, save_every: 50 } } }) });
    expect(resumed.code).toBe(0);
    const steps = readMetrics(join(dir, 'stages', 'sft', 'metrics.jsonl')).map((m) => m.step);
    expect(steps).toEqual(Array.from({ length: ckpt!.step + 3 }, (_, i) => i + 1));
    recordReliability({ fault: 'SIGINT (Ctrl-C) to the CLI', stage: 'sft', injected: 1, survived: 1, lost: 0, outcome: 'cancel at step boundary, checkpoint at last step, exit 130, resume completed', test: 'process: Ctrl-C' });
  });

  it('a second Ctrl-C stops a sidecar that ignores cancel', async () => {
    const cwd = tmp();
    const child = spawnCli(['run', '--preset', 'smoke', '--stages', 'sft'], { cwd, env: fakeEnv({ ...SLOW, ignore_cancel: true }) });
    const dir = await waitFor(() => runDirIn(cwd), 20_000, 'run folder');
    await waitFor(() => metricsCount(dir, 'sft') >= 5, 20_000, 'some sft metrics');
    const pid = sidecarPid(dir)!;
    child.proc.kill('SIGINT');
    await new Promise((r) => setTimeout(r, 500));
    expect(child.proc.exitCode).toBeNull(); // still waiting for the step boundary that never comes
    child.proc.kill('SIGINT');
    const { code } = await child.exit;
    expect(code).toBe(130);
    expect(isAlive(pid)).toBe(false);
    expect(readJson(join(dir, 'run.json')).stages.sft.status).toBe('interrupted');
    recordReliability({ fault: 'second SIGINT while the sidecar ignores cancel', stage: 'sft', injected: 1, survived: 1, lost: 0, outcome: 'sidecar stopped (SIGTERM/SIGKILL), exit 130, stage interrupted', test: 'process: second Ctrl-C' });
  });

  it('when the controller is SIGKILLed the sidecar exits by itself and the run shows as interrupted', async () => {
    const cwd = tmp();
    const child = spawnCli(['run', '--preset', 'smoke', '--stages', 'sft'], { cwd, env: fakeEnv(SLOW) });
    const dir = await waitFor(() => runDirIn(cwd), 20_000, 'run folder');
    await waitFor(() => metricsCount(dir, 'sft') >= 60, 20_000, 'a checkpoint');
    const pid = sidecarPid(dir)!;
    expect(isAlive(pid)).toBe(true);
    child.proc.kill('SIGKILL');
    await child.exit;
    await waitFor(() => !isAlive(pid), 5_000, 'the orphaned sidecar to exit');
    expect(readJson(join(dir, 'run.json')).status).toBe('running'); // nobody could update it…
    const runs = await cli(['runs'], { cwd });
    expect(runs.out).toMatch(/interrupted\s+smoke\s+sft:interrupted/); // …but the stale lock gives it away
    const resumed = await cli(['stage', 'sft', '--resume'], { cwd, env: fakeEnv({ stages: { '*': { steps: 60, step_time_s: 0, save_every: 50 } } }) });
    expect(resumed.code).toBe(0);
    expect(readJson(join(dir, 'run.json')).stages.sft).toMatchObject({ status: 'ok', resumed_from: expect.stringMatching(/checkpoint-50$/) });
    recordReliability({ fault: 'controller SIGKILL (fake sidecar)', stage: 'sft', injected: 1, survived: 1, lost: 0, outcome: 'sidecar exited by itself; stale lock shown as interrupted; resume completed', test: 'process: controller SIGKILL' });
  });

  it('a second process on the same run folder gets a clear error', async () => {
    const cwd = tmp();
    const child = spawnCli(['run', '--preset', 'smoke', '--stages', 'sft,dpo'], { cwd, env: fakeEnv(SLOW) });
    const dir = await waitFor(() => runDirIn(cwd), 20_000, 'run folder');
    await waitFor(() => metricsCount(dir, 'sft') >= 1, 20_000, 'training');
    const second = await cli(['stage', 'dpo'], { cwd, env: fakeEnv(SLOW) });
    expect(second.code).toBe(2);
    expect(second.err).toMatch(new RegExp(`in use by process ${child.proc.pid}`));
    expect(second.err).toMatch(/run sft,dpo/);
    child.proc.kill('SIGINT');
    expect((await child.exit).code).toBe(130);
    recordReliability({ fault: 'second process on a locked run folder', stage: 'dpo', injected: 1, survived: 1, lost: 0, outcome: 'refused with exit 2 naming the pid and command holding the lock', test: 'process: two processes' });
  });

  it('the CLI process exits on its own after a run (no open sockets or timers)', async () => {
    const cwd = tmp();
    const child = spawnCli(['run', '--preset', 'smoke'], { cwd, env: fakeEnv({ stages: { '*': { steps: 3, step_time_s: 0 } } }) });
    const t = setTimeout(() => child.proc.kill('SIGKILL'), 20_000);
    const { code, signal } = await child.exit;
    clearTimeout(t);
    expect(signal).toBeNull();
    expect(code).toBe(0);
    // and after a failure too
    const failing = spawnCli(['run', '--preset', 'smoke'], { cwd, env: fakeEnv({ stages: { '*': { steps: 3, crash_at_step: 2 } } }) });
    const t2 = setTimeout(() => failing.proc.kill('SIGKILL'), 20_000);
    const r2 = await failing.exit;
    clearTimeout(t2);
    expect(r2).toEqual({ code: 1, signal: null });
  });
});
