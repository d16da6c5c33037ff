// Resume semantics at the controller: --resume of a completed stage has nothing to resume and
// leaves the adapter and run.json as they were (the sidecar side, a checkpoint already at
// max_steps, is tests/python/test_stage_sft.py and test_stage_rlhf.py). Fake sidecar.
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { cli, fakeEnv, spawnCli, tmp, waitFor } from '../helpers/cli.js';
import { recordReliability } from '../helpers/reliability.js';

const QUICK = { stages: { '*': { steps: 4, step_time_s: 0, save_every: 2 } } };

function snapshot(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string) => {
    for (const f of readdirSync(d)) {
      const p = join(d, f);
      if (statSync(p).isDirectory()) walk(p);
      else out[p] = readFileSync(p, 'base64');
    }
  };
  walk(dir);
  return out;
}

describe('--resume of a completed stage', () => {
  it('says there is nothing to resume; adapter, metrics and run.json are untouched', async () => {
    const cwd = tmp();
    // max_steps as the fake trains (4), as a real stage's record and config agree.
    const r = await cli(['run', '--preset', 'smoke', '--stages', 'sft', '--set', 'stages.sft.max_steps=4'], { cwd, env: fakeEnv(QUICK) });
    expect(r.code).toBe(0);
    const runDir = r.out.trim();
    const before = snapshot(runDir);
    const again = await cli(['stage', 'sft', '--resume'], { cwd, env: fakeEnv(QUICK) });
    const after = snapshot(runDir);
    const changed = Object.keys({ ...before, ...after }).filter((f) => before[f] !== after[f]);
    // Recorded from what was observed, before the assertions: a failure shows as a failed row.
    recordReliability({
      fault: '--resume of a stage that already completed',
      stage: 'sft',
      injected: 1,
      survived: again.code === 0 && changed.length === 0 ? 1 : 0,
      lost: 0,
      outcome: changed.length === 0 ? `exit ${again.code}, "nothing to resume"; every file of the run folder byte-identical` : `exit ${again.code}; changed: ${changed.join(', ')}`,
      test: 'tests/pipeline/resume-state.test.ts',
    });
    expect(again.code, again.err).toBe(0);
    expect(again.err).toMatch(/stage sft of run \S+ is complete \(ok at step 4\): nothing to resume, its adapter is untouched/);
    expect(again.err).toMatch(/To train it again from the start: `posttrain stage sft --run \S+/);
    expect(changed).toEqual([]);
  });
});

describe('a stopped controller (Ctrl-Z, then fg)', () => {
  it('does not declare a healthy sidecar hung when it continues', async () => {
    const cwd = tmp();
    const slow = { stages: { '*': { steps: 16, step_time_s: 0.15, save_every: 4 } } };
    const child = spawnCli(
      ['run', '--preset', 'smoke', '--stages', 'sft', '--progress', 'plain', '--set', 'runtime.heartbeat_interval_s=0.2', '--set', 'runtime.heartbeat_timeout_s=1'],
      { cwd, env: fakeEnv(slow) },
    );
    await waitFor(() => /sft: step \d+/.test(child.err()), 20_000, 'the first step');
    process.kill(child.proc.pid!, 'SIGSTOP'); // the controller alone: its sidecar goes on beating
    await new Promise((r) => setTimeout(r, 2_500)); // longer than heartbeat_timeout_s
    process.kill(child.proc.pid!, 'SIGCONT');
    const exit = await child.exit;
    recordReliability({
      fault: 'controller stopped (SIGSTOP) for 2.5x heartbeat_timeout_s, then continued',
      stage: 'sft',
      injected: 1,
      survived: exit.code === 0 ? 1 : 0,
      lost: 0,
      outcome: exit.code === 0 ? 'no false "hung": the stage finished, exit 0' : `exit ${exit.code}: ${child.err().split('\n').filter((l) => l.startsWith('error')).join(' ')}`,
      test: 'tests/pipeline/resume-state.test.ts',
    });
    expect(exit.code, child.err()).toBe(0);
    expect(child.err()).not.toMatch(/stopped answering/);
  }, 40_000);
});

describe('resuming under other library versions', () => {
  it('warns with both versions and run.json keeps both', async () => {
    const cwd = tmp();
    const crash = { stages: { '*': { ...QUICK.stages['*'], crash_at_step: 3 } } };
    const r = await cli(['run', '--preset', 'smoke', '--stages', 'sft'], { cwd, env: fakeEnv(crash) });
    expect(r.code).toBe(1);
    const dir = join(cwd, 'runs', readdirSync(join(cwd, 'runs')).filter((d) => !d.startsWith('.'))[0]!);
    const file = join(dir, 'run.json');
    const rec = JSON.parse(readFileSync(file, 'utf8'));
    const ours = rec.versions.transformers;
    rec.versions.transformers = '4.0.0-recorded'; // as if the run was trained elsewhere
    writeFileSync(file, JSON.stringify(rec));
    const resumed = await cli(['run', '--resume'], { cwd, env: fakeEnv(QUICK) });
    const after = JSON.parse(readFileSync(file, 'utf8'));
    const kept = after.versions_history?.[0]?.versions?.transformers === '4.0.0-recorded' && after.versions.transformers === ours;
    recordReliability({
      fault: 'resume under other library versions than the run was trained with',
      stage: 'sft',
      injected: 1,
      survived: resumed.code === 0 && kept && resumed.err.includes('transformers 4.0.0-recorded') ? 1 : 0,
      lost: 0,
      outcome: 'warned with both versions; run.json keeps the earlier set in versions_history',
      test: 'tests/pipeline/resume-state.test.ts',
    });
    expect(resumed.code, resumed.err).toBe(0);
    expect(resumed.err).toContain(`warning: this run was trained with transformers 4.0.0-recorded; this sidecar has transformers ${ours}`);
    expect(kept).toBe(true);
  });
});
