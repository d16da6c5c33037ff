// A user's own reward function misbehaving inside a real GRPO stage on the smoke model (real
// sidecar, real TRL): it raises, returns strings, returns NaN or inf, never returns, ignores the
// time limit's signal, or hangs while the user presses Ctrl-C once. Each ends in one clear error
// that names `module:function` (and the first bad value), or in a clean cancel; nothing is lost.
// Each run trains at most 2 steps.
import { existsSync, readdirSync, rmSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { cli, spawnCli, tmp, waitFor } from '../helpers/cli.js';
import { recordReliability } from '../helpers/reliability.js';

const STACK = /^\s+at .+:\d+:\d+\)?$/m;
const REWARDS = `
import signal, time
def fine(prompts, completions, **kw):
    return [float(len(c) % 2) for c in completions]
def raises(prompts, completions, **kw):
    return [1.0 / 0 for _ in completions]
def strings(prompts, completions, **kw):
    return [0.5] + ["1.0"] * (len(completions) - 1)
def nan(prompts, completions, **kw):
    return [1.0, float("nan")] + [0.0] * (len(completions) - 2)
def inf(prompts, completions, **kw):
    return [float("inf")] * len(completions)
def spins(prompts, completions, **kw):
    while True:
        pass
def deaf(prompts, completions, **kw):
    # Like a library that takes the signals over: the time limit and the cancel cannot reach it.
    signal.signal(signal.SIGALRM, signal.SIG_IGN)
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    while True:
        time.sleep(0.5)
def sleeps(prompts, completions, **kw):
    open("sleeping", "w").close()
    time.sleep(3600)
    return [0.0] * len(completions)
`;

let cwd: string;
beforeAll(() => {
  cwd = tmp('posttrain-user-code-');
  writeFileSync(join(cwd, 'badrewards.py'), REWARDS);
  // A file in the working folder with a library's name must not replace the library.
  writeFileSync(join(cwd, 'datasets.py'), 'raise ImportError("the working folder\'s datasets.py was imported")\n');
});

const grpo = (fn: string, ...sets: string[]) => [
  'run', '--preset', 'smoke', '--stages', 'grpo',
  '--set', `stages.grpo.reward_funcs=[{"name":"badrewards:${fn}"}]`,
  '--set', 'stages.grpo.max_steps=2',
  ...sets.flatMap((s) => ['--set', s]),
];

/** run.json of the newest run in the working folder (ids sort by time; the runs are seconds apart). */
const lastRun = () => {
  const ids = readdirSync(join(cwd, 'runs')).filter((d) => !d.startsWith('.')).sort();
  return JSON.parse(readFileSync(join(cwd, 'runs', ids[ids.length - 1]!, 'run.json'), 'utf8'));
};

describe('security: the working folder is not on the sidecar import path', () => {
  it('a datasets.py next to the config does not replace the library; the named reward module still imports', async () => {
    const r = await cli(grpo('fine'), { cwd });
    recordReliability({
      fault: 'datasets.py (raising at import) in the working folder of a GRPO run with a reward module from that folder',
      stage: 'security',
      injected: 1,
      survived: r.code === 0 ? 1 : 0,
      lost: 0,
      outcome: r.code === 0 ? 'library imported, shadow ignored (PYTHONSAFEPATH); badrewards:fine imported from the folder; stage ok' : `exit ${r.code}: ${r.err.slice(-300)}`,
      test: 'tests/hostile/user-code.test.ts',
    });
    expect(r.code, r.err).toBe(0);
    expect(lastRun().stages.grpo.status).toBe('ok');
  });
});

describe("a user's reward function, named when it misbehaves (real GRPO)", () => {
  const cases: { fn: string; sets?: string[]; want: RegExp[]; what: string }[] = [
    { fn: 'raises', what: 'raises ZeroDivisionError', want: [/reward function badrewards:raises raised ZeroDivisionError: (float )?division by zero/] },
    { fn: 'strings', what: 'returns strings', want: [/reward function badrewards:strings returned '1\.0' \(a str\) for completion 1 of \d+/, /a reward is a number, or None/] },
    { fn: 'nan', what: 'returns NaN', want: [/reward_nonfinite/, /badrewards:nan returned nan for completion 1 of \d+/, /monitor\.reward_nonfinite\.fatal/] },
    { fn: 'inf', what: 'returns inf', want: [/reward_nonfinite/, /badrewards:inf returned inf for completion 0 of \d+/] },
    { fn: 'spins', what: 'never returns (busy loop)', sets: ['stages.grpo.reward_timeout_s=2'], want: [/reward function badrewards:spins did not return within 2 s/, /stages\.grpo\.reward_timeout_s/] },
    { fn: 'deaf', what: 'never returns and blocks the time limit\'s signal', sets: ['stages.grpo.reward_timeout_s=2', 'runtime.stall_timeout_s=6'], want: [/in reward function badrewards:deaf for \d+ s/, /runtime\.stall_timeout_s/] },
  ];
  for (const c of cases) {
    it(`${c.what}: exit 1 with the function named, no stack trace`, async () => {
      const r = await cli(grpo(c.fn, ...(c.sets ?? [])), { cwd });
      const ok = r.code === 1 && c.want.every((w) => w.test(r.err)) && !STACK.test(r.err) && !/internal_error/.test(r.err);
      recordReliability({
        fault: `GRPO reward function that ${c.what}`,
        stage: 'grpo',
        injected: 1,
        survived: ok ? 1 : 0,
        lost: 0,
        outcome: ok ? `exit 1: ${c.want.map((w) => w.source.replace(/\\/g, '')).join(' / ')}` : `exit ${r.code}: ${r.err.split('\n').find((l) => l.startsWith('error')) ?? '?'}`,
        test: 'tests/hostile/user-code.test.ts',
      });
      expect(r.code, r.err).toBe(1);
      for (const w of c.want) expect(r.err).toMatch(w);
      expect(r.err).not.toMatch(STACK);
      expect(r.err).not.toContain('internal_error');
      expect(lastRun().stages.grpo.status).toBe('failed');
    });
  }

  it('one Ctrl-C stops a reward function that sleeps forever: cancelled, exit 130', async () => {
    rmSync(join(cwd, 'sleeping'), { force: true });
    const child = spawnCli(grpo('sleeps'), { cwd });
    await waitFor(() => existsSync(join(cwd, 'sleeping')), 40_000, 'the reward function to start sleeping');
    const t0 = Date.now();
    child.proc.kill('SIGINT');
    const exit = await Promise.race([child.exit, new Promise<null>((r) => setTimeout(() => r(null), 30_000))]);
    if (!exit) child.proc.kill('SIGKILL');
    const took = (Date.now() - t0) / 1000;
    recordReliability({
      fault: 'one Ctrl-C while a GRPO reward function sleeps forever',
      stage: 'grpo',
      injected: 1,
      survived: exit?.code === 130 ? 1 : 0,
      lost: 0,
      outcome: exit ? `exit ${exit.code} after ${took.toFixed(1)} s; stage cancelled, the call interrupted` : 'still running 30 s after Ctrl-C',
      test: 'tests/hostile/user-code.test.ts',
    });
    expect(exit?.code, child.err()).toBe(130);
    expect(child.err()).toMatch(/cancelled inside reward function badrewards:sleeps/);
    expect(lastRun().stages.grpo.status).toBe('cancelled');
  }, 90_000);
});
