// The renderers behind the real commands: `run --json` against the fake sidecar (stdout is pure
// NDJSON, the events complete, failures end with an error event), the flags, and the real bin
// under a pseudo-terminal drawing in place.
import { execFileSync, spawn } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { readMetrics } from '../../src/artifacts/index.js';
import { BIN, cli, fakeEnv, tmp } from '../helpers/cli.js';
import { Screen } from './helpers.js';

const QUICK = { stages: { '*': { steps: 6, step_time_s: 0.005, save_every: 2 } } };

function onlyRun(cwd: string): string {
  const runs = readdirSync(join(cwd, 'runs')).filter((d) => !d.startsWith('.'));
  expect(runs).toHaveLength(1);
  return join(cwd, 'runs', runs[0]!);
}

/** stdout as events; fails the test on any line that is not a JSON object. */
function ndjson(out: string): Record<string, any>[] {
  expect(out.endsWith('\n')).toBe(true);
  return out
    .split('\n')
    .slice(0, -1)
    .map((line) => {
      const v = JSON.parse(line);
      expect(typeof v.event).toBe('string');
      expect(typeof v.ts).toBe('number');
      return v as Record<string, any>;
    });
}

describe('posttrain run --json', () => {
  it('streams every event as NDJSON on stdout and nothing else, with stderr quiet', async () => {
    const cwd = tmp();
    const r = await cli(['run', '--preset', 'smoke', '--stages', 'sft,dpo', '--json'], { cwd, env: fakeEnv(QUICK) });
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    const dir = onlyRun(cwd);
    const events = ndjson(r.out);
    expect(events[0]).toMatchObject({ event: 'run_start', run_dir: dir, stages: ['sft', 'dpo'], resume: false });
    expect(events.at(-1)).toMatchObject({ event: 'run_end', run_dir: dir, status: 'ok', run_id: events[0]!.run_id });
    const story = events.filter((e) => e.event !== 'metric' && e.event !== 'state' && e.event !== 'log').map((e) => `${e.event}${e.stage ? ` ${e.stage}` : ''}${e.state ? ` ${e.state}` : ''}`);
    expect(story).toEqual(['run_start', 'note', 'sidecar starting', 'sidecar ready', 'stage_start sft', 'stage_end sft', 'stage_start dpo', 'stage_end dpo', 'sidecar stopping', 'run_end']);
    for (const stage of ['sft', 'dpo']) {
      expect(events.find((e) => e.event === 'stage_start' && e.stage === stage)).toMatchObject({ total_steps: 30, resumed_from: null });
      expect(events.find((e) => e.event === 'stage_end' && e.stage === stage)).toMatchObject({ status: 'ok' });
      // The same metrics, step by step, as the stage's metrics.jsonl.
      const streamed = events.filter((e) => e.event === 'metric' && e.stage === stage).map((e) => [e.step, e.values]);
      const stored = readMetrics(join(dir, 'stages', stage, 'metrics.jsonl')).map((m) => [m.step, m.values]);
      expect(streamed).toEqual(stored);
      expect(streamed).toHaveLength(6);
    }
    expect(events.filter((e) => e.event === 'state' && e.stage === 'sft').map((e) => e.state)).toEqual(['loading_model', 'training', 'saving', 'done']);
  });

  it('a failed run ends with run_end (failed) and then an error event; the message is on stderr too', async () => {
    const cwd = tmp();
    const crash = { stages: { '*': QUICK.stages['*'], dpo: { ...QUICK.stages['*'], crash_at_step: 3 } } };
    const r = await cli(['run', '--preset', 'smoke', '--stages', 'sft,dpo', '--json'], { cwd, env: fakeEnv(crash) });
    expect(r.code).toBe(1);
    const events = ndjson(r.out);
    expect(events.at(-2)).toMatchObject({ event: 'run_end', status: 'failed' });
    expect(events.at(-1)).toMatchObject({ event: 'error', code: 'sidecar_crashed_error', exit_code: 1 });
    expect(events.at(-1)!.message).toMatch(/exited with code 3 during stage dpo/);
    expect(events.at(-1)!.hint).toMatch(/posttrain run --resume --run \S+/);
    expect(events.some((e) => e.event === 'stage_end' && e.stage === 'dpo')).toBe(false); // the sidecar died mid-stage
    expect(r.err).toMatch(/^error: The training sidecar exited with code 3 during stage dpo/);
  });

  it('a config error before anything starts is the only event', async () => {
    const r = await cli(['run', '--preset', 'smoke', '--json', '--set', 'stages.sft.learning_rat=1'], { cwd: tmp(), env: fakeEnv(QUICK) });
    expect(r.code).toBe(2);
    const events = ndjson(r.out);
    expect(events).toHaveLength(1);
    expect(events[0]).toMatchObject({ event: 'error', code: 'config_error', exit_code: 2 });
    expect(events[0]!.message).toMatch(/stages\.sft\.learning_rat: unknown key/);
    expect(r.err).toMatch(/Invalid config/);
  });

  it('--json with an explicit --progress also shows that view on stderr; stage --json continues a run', async () => {
    const cwd = tmp();
    const r = await cli(['run', '--preset', 'smoke', '--stages', 'sft', '--json', '--progress', 'plain'], { cwd, env: fakeEnv(QUICK) });
    expect(r.code).toBe(0);
    expect(ndjson(r.out).at(-1)).toMatchObject({ event: 'run_end', status: 'ok' });
    expect(r.err).toMatch(/^sft: step 6\/30 {2}train\/loss 0\.1429 {2}elapsed \d+\.\ds$/m);
    expect(r.err).toMatch(/^sft: ok in \d+\.\d s$/m);

    const s = await cli(['stage', 'dpo', '--json'], { cwd, env: fakeEnv(QUICK) });
    expect(s.code).toBe(0);
    const events = ndjson(s.out);
    expect(events[0]).toMatchObject({ event: 'run_start', stages: ['dpo'], resume: true, run_dir: onlyRun(cwd) });
    expect(events.filter((e) => e.event === 'stage_start').map((e) => e.stage)).toEqual(['dpo']);
    expect(events.at(-1)).toMatchObject({ event: 'run_end', status: 'ok' }); // every selected stage (sft, now dpo) is ok
  });

  it('--progress takes auto, tty, plain or none; none keeps stderr free of progress', async () => {
    const bad = await cli(['run', '--preset', 'smoke', '--progress', 'fancy'], { cwd: tmp(), env: fakeEnv(QUICK) });
    expect(bad.code).toBe(2);
    expect(bad.err).toMatch(/Allowed choices are auto, tty, plain, none/);
    const cwd = tmp();
    const none = await cli(['run', '--preset', 'smoke', '--stages', 'sft', '--progress', 'none'], { cwd, env: fakeEnv(QUICK) });
    expect(none.code).toBe(0);
    expect(none.err).toBe('using sidecar module posttrain_sidecar.fake (test hook POSTTRAIN_SIDECAR_MODULE)\n');
    expect(none.out).toBe(`${onlyRun(cwd)}\n`);
  });
});

const hasScript = (() => {
  try {
    execFileSync('script', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();

describe.skipIf(!hasScript)('the real bin on a pseudo-terminal', () => {
  it('draws the live block in place and leaves a clean screen with the cursor shown', async () => {
    const cwd = tmp();
    const env: NodeJS.ProcessEnv = { ...fakeEnv({ stages: { '*': { steps: 12, step_time_s: 0.02, save_every: 4 } } }), TERM: 'xterm' };
    delete env.CI;
    delete env.NO_COLOR;
    const command = `stty cols 100 rows 30; exec ${JSON.stringify(process.execPath)} ${JSON.stringify(BIN)} run --preset smoke --stages sft,dpo`;
    // util-linux script(1) gives the command a pty; -e passes its exit code, -f flushes as it goes.
    const child = spawn('script', ['-qfec', command, '/dev/null'], { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let raw = '';
    child.stdout.on('data', (d) => (raw += d));
    const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
    expect(code, raw).toBe(0);
    const dir = onlyRun(cwd);
    expect(raw).toMatch(/\r\x1b\[3A/); // header + 2 stages, redrawn in place
    expect(raw).toMatch(/\x1b\[32m✓ \x1b\[0m/); // colour on a terminal
    const screen = new Screen(100);
    screen.write(raw);
    expect(screen.cursorVisible).toBe(true);
    expect(screen.wraps).toBe(0);
    const rows = screen.text().split('\n');
    // Above: the run line and the test-hook note; then the final block, once; then the run folder (stdout).
    expect(rows[0]).toBe(`run ${dir.split('/').pop()}: ${dir}`);
    expect(rows.filter((r) => r.startsWith('run ') && r.includes(' · '))).toHaveLength(1);
    expect(rows.slice(-4, -1).join('\n')).toMatch(/^run \S+ · ok in \d+\.\ds\n✓ sft  ok +\[####------\] 12\/30 +\d+\.\ds +loss 0\.0769\n✓ dpo  ok +\[####------\] 12\/30 +\d+\.\ds +loss 0\.0769$/);
    expect(rows.at(-1)).toBe(dir);
  });
});
