// What reaches a user's terminal and disk from a run: strings from a crafted run.json are inert in
// `runs` and `show`, run folders are private (0700) so a 0600 training file's copy stays private,
// and a reader that leaves early (`| head`) ends the CLI quietly. Each is a "security" row.
import { spawn } from 'node:child_process';
import { chmodSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { BIN, cli, fakeEnv, tmp } from '../helpers/cli.js';
import { recordReliability } from '../helpers/reliability.js';

const QUICK = { stages: { '*': { steps: 2, step_time_s: 0, save_every: 0 } } };
const ESC = '\x1b';

describe('security: terminal and file permissions', () => {
  it('escape sequences in a downloaded run.json are shown escaped by runs and show', async () => {
    const cwd = tmp();
    const r = await cli(['run', '--preset', 'smoke', '--stages', 'sft'], { cwd, env: fakeEnv(QUICK) });
    const dir = r.out.trim();
    const rec = JSON.parse(readFileSync(join(dir, 'run.json'), 'utf8'));
    rec.preset = `${ESC}]0;pwned${'\x07'}${ESC}[2J`; // set the window title, clear the screen
    rec.stages.sft.error = { code: 'x', message: `${ESC}[31mred${ESC}[0m\rover` };
    writeFileSync(join(dir, 'run.json'), JSON.stringify(rec));
    const listed = await cli(['runs'], { cwd });
    const shown = await cli(['show'], { cwd });
    const raw = [listed.out, listed.err, shown.out].filter((t) => t.includes(ESC) || t.includes('\x07') || t.includes('\r'));
    recordReliability({
      fault: 'window-title / clear-screen escapes and \\r in a run.json shown by runs and show',
      stage: 'security',
      injected: 2,
      survived: raw.length === 0 ? 2 : 0,
      lost: 0,
      outcome: raw.length === 0 ? 'printed as \\x1b…, no control character reached the terminal' : 'control characters reached the terminal',
      test: 'tests/hostile/terminal.test.ts',
    });
    expect(raw).toEqual([]);
    expect(listed.out).toContain('\\x1b]0;pwned\\x07\\x1b[2J');
    expect(shown.out).toContain('\\x1b[31mred\\x1b[0m\\x0dover');
  });

  it('a run folder is 0700: the copy of a 0600 training file is not readable by others', async () => {
    const cwd = tmp();
    const data = join(cwd, 'private.jsonl');
    writeFileSync(data, '{"prompt": "secret", "response": "data"}\n{"prompt": "more", "response": "rows"}\n');
    chmodSync(data, 0o600);
    const r = await cli(['run', '--preset', 'smoke', '--stages', 'sft', '--set', 'data.sft.path=private.jsonl'], { cwd, env: fakeEnv(QUICK) });
    expect(r.code, r.err).toBe(0);
    const dir = r.out.trim();
    const mode = statSync(dir).mode & 0o777;
    recordReliability({
      fault: '0600 training file copied into a run folder',
      stage: 'security',
      injected: 1,
      survived: mode === 0o700 ? 1 : 0,
      lost: 0,
      outcome: `run folder mode ${mode.toString(8)}: its data/, run.json, samples and checkpoints are the owner's alone`,
      test: 'tests/hostile/terminal.test.ts',
    });
    expect(mode).toBe(0o700);
    expect(readdirSync(join(cwd, 'runs')).filter((d) => d.startsWith('.staging'))).toEqual([]);
  });

  it('`posttrain presets | head -1` and `--help | head -1` end quietly, no EPIPE stack', async () => {
    const results: { code: number | null; err: string }[] = [];
    for (const args of [['presets'], ['--help'], ['validate', '--help']]) {
      const child = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
      let err = '';
      child.stderr.on('data', (d) => (err += d));
      child.stdout.once('data', () => child.stdout.destroy()); // the reader leaves after one chunk
      const code = await new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
      results.push({ code, err });
    }
    const clean = results.every((r) => r.code === 0 && !/EPIPE|at .*\.js:\d+/.test(r.err));
    recordReliability({
      fault: 'stdout closed by the reader (| head) on presets, --help, validate --help',
      stage: 'security',
      injected: results.length,
      survived: results.filter((r) => r.code === 0 && !/EPIPE|at .*\.js:\d+/.test(r.err)).length,
      lost: 0,
      outcome: clean ? 'exit 0, nothing on stderr' : JSON.stringify(results),
      test: 'tests/hostile/terminal.test.ts',
    });
    for (const r of results) {
      expect(r.err).not.toMatch(/EPIPE|at .*\.js:\d+/);
      expect(r.code).toBe(0);
    }
  });

  it("text from the sidecar (log lines, a stage's error, preflight notes) reaches the terminal inert", async () => {
    const evil = `${ESC}]0;pwned\x07${ESC}[2J\rover`;
    const script = {
      preflight_problems: [{ stage: 'sft', code: 'x', message: `note ${evil}`, severity: 'warning' }],
      stages: { sft: { steps: 2, step_time_s: 0, save_every: 0, logs: [{ level: 'warning', message: `log ${evil}` }] }, dpo: { error: { code: 'boom', message: `error ${evil}` } } },
    };
    const r = await cli(['run', '--preset', 'smoke', '--stages', 'sft,dpo'], { cwd: tmp(), env: fakeEnv(script) });
    const raw = [r.out, r.err].filter((t) => t.includes(ESC) || t.includes('\x07') || t.includes('\r'));
    recordReliability({
      fault: "escape sequences in the sidecar's log lines, a stage error and a preflight note (e.g. echoed from a data row or a reward function)",
      stage: 'security',
      injected: 3,
      survived: raw.length === 0 ? 3 : 0,
      lost: 0,
      outcome: raw.length === 0 ? 'printed as \\x1b…, no control character reached the terminal' : 'control characters reached the terminal',
      test: 'tests/hostile/terminal.test.ts',
    });
    expect(r.code).toBe(1);
    expect(raw).toEqual([]);
    for (const what of ['note', 'log', 'error']) expect(r.err).toContain(`${what} \\x1b]0;pwned\\x07\\x1b[2J\\x0dover`);
  });
});
