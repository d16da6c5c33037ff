// The in-place terminal view, fed a real run's recorded progress stream (and small synthetic
// ones) on a fake clock; its output goes through a minimal terminal (helpers.ts Screen) so the
// assertions are about what a user sees and about the cursor movements that redraw it.
import { describe, expect, it } from 'vitest';
import type { CliIO } from '../../src/cli/io.js';
import { resolveMode, selectProgress } from '../../src/ui/select.js';
import { SHOW_CURSOR, ttyProgress } from '../../src/ui/tty.js';
import { configWith, FakeClock, loadRecording, replay, Screen } from './helpers.js';

const UP = /\r\x1b\[(\d+)A/g;
const COLOUR = /\x1b\[(?:3\d|2)m/;

function view(opts: { columns?: number; color?: boolean } = {}) {
  const clock = new FakeClock();
  const screen = new Screen(opts.columns ?? 100);
  const writes: { t: number; text: string }[] = [];
  const progress = ttyProgress({
    write: (text) => {
      writes.push({ t: clock.t, text });
      screen.write(text);
    },
    now: clock.now,
    columns: () => opts.columns ?? 100,
    color: opts.color ?? false,
    tickMs: 0,
  });
  /** The live block: the rows above the cursor (it sits on the row under the block). */
  const block = (height: number) => screen.rows.slice(screen.row - height, screen.row).map((r) => r.trimEnd());
  return { clock, screen, writes, progress, block };
}

const SFT = configWith({ sft: { max_steps: 30 } });

describe('the TTY view replaying a real smoke run', () => {
  const events = loadRecording();

  it('redraws one block in place, frame by frame, and ends on a clean final screen', async () => {
    const v = view();
    const frames: string[] = [];
    const progress = { ...v.progress, tick: v.progress.tick };
    for (const m of Object.keys(v.progress) as (keyof typeof v.progress)[]) {
      const f = v.progress[m] as (...a: unknown[]) => void;
      (progress as Record<string, unknown>)[m] = (...a: unknown[]) => {
        const before = v.writes.length;
        f(...a);
        if (v.writes.length > before && v.screen.row >= 5) frames.push(`@${v.clock.t}ms\n${v.block(5).join('\n')}`);
      };
    }
    replay(events, progress, v.clock, { fn: progress.tick, tickMs: 100 });
    await expect(`${frames.join('\n\n')}\n`).toMatchFileSnapshot('./__snapshots__/tty-smoke.frames.txt');

    // Everything above the block scrolled away once; the block is on screen exactly once.
    expect(v.screen.text()).toMatchInlineSnapshot(`
      "run 20261125-092854-347d: /runs/20261125-092854-347d
      rlhf: alert: step 108: 100% of completions hit stages.rlhf.policy.max_completion_length for 5
        logged steps in a row (mean length 16): rewards are judging cut-off text.
      rlhf:   hint: raise stages.rlhf.policy.max_completion_length (now 16), or teach the model to stop
        first (SFT on completions that end with EOS).
      run 20261125-092854-347d · ok in 13s
      ✓ sft  ok          [##########] 30/30   2.7s              loss 4.9090
      ✓ dpo  ok          [##########] 30/30   1.6s              loss 0.5356  margin 0.3485  acc 1.0000
      ✓ grpo ok          [##########] 30/30   3.0s              reward 1.1563  kl 2.8516
      ✓ rlhf ok          [##########] 120/120 2.6s              reward -2.1078  kl 0.0531"
    `);
    expect(v.screen.cursorVisible).toBe(true);
    expect(v.writes.at(-1)!.text).toBe(SHOW_CURSOR);
  });

  it('every redraw goes back up exactly the height of the block it replaces', () => {
    const v = view();
    replay(events, v.progress, v.clock, { fn: v.progress.tick, tickMs: 100 });
    const ups = v.writes.flatMap((w) => [...w.text.matchAll(UP)].map((m) => Number(m[1])));
    expect(ups.length).toBeGreaterThan(50);
    expect(new Set(ups)).toEqual(new Set([5])); // header + 4 stages, from the first draw to the last
    expect(v.writes.filter((w) => w.text.includes('\x1b[?25l'))).toHaveLength(1);
  });

  it('redraws at most 10 times a second between state changes', () => {
    const v = view();
    replay(events, v.progress, v.clock, { fn: v.progress.tick, tickMs: 100 });
    const draws = v.writes.filter((w) => /\x1b\[\d+A/.test(w.text)).map((w) => w.t);
    // State changes, stage ends and alerts draw at once; every other draw (a metric's, the
    // clock's) comes at least 100 ms after the one before it.
    const forced = new Set(events.filter((e) => e.call !== 'metric').map((e) => e.t));
    const throttled = draws.map((t, i) => ({ t, gap: i === 0 ? Infinity : t - draws[i - 1]! })).filter((d) => !forced.has(d.t));
    expect(throttled.length).toBeGreaterThan(50);
    expect(Math.min(...throttled.map((d) => d.gap))).toBeGreaterThanOrEqual(100);
    const metrics = events.filter((e) => e.call === 'metric').length;
    expect(draws.length).toBeLessThan(metrics / 1.5); // 221 metrics did not each cause a frame
  });

  it('prints the health alert above the block, which is then drawn again below it', () => {
    const v = view();
    const at = events.findIndex((e) => e.call === 'alert');
    replay(events.slice(0, at + 1), v.progress, v.clock);
    const rows = v.screen.text().split('\n');
    const alert = rows.findIndex((r) => r.startsWith('rlhf: alert: step 108'));
    const header = rows.findIndex((r) => r.startsWith('run 20261125-092854-347d ·'));
    expect(alert).toBeGreaterThan(0);
    expect(header).toBeGreaterThan(alert);
    expect(rows.filter((r) => r.startsWith('run 20261125-092854-347d ·'))).toHaveLength(1);
    expect(v.block(5).at(-1)).toMatch(/^▸ rlhf training +\[#########-\] 108\/120 /);
  });
});

describe('the TTY view, unit by unit', () => {
  it('shows the sidecar start-up and the preflight as states with clocks, not silence', () => {
    const v = view();
    v.progress.runStart({ runId: 'r1', runDir: '/runs/r1', stages: ['sft'] });
    v.progress.sidecarState('starting', null);
    v.clock.t = 3200;
    v.progress.tick();
    expect(v.block(2)).toEqual(['run r1 · starting sidecar… 3.2s', '· sft  pending']);
    v.clock.t = 3500;
    v.progress.sidecarState('ready', 'pid 42');
    v.clock.t = 5000;
    v.progress.tick();
    expect(v.block(2)[0]).toBe('run r1 · sidecar ready in 3.5s · preflight checks… 1.5s');
    v.progress.stageStart('sft', SFT, null);
    v.progress.state('sft', 'loading_model', '/models/x');
    expect(v.block(2)).toEqual(['run r1 · sidecar ready in 3.5s', '▸ sft  loading…    [----------] 0/30    0.0s   eta –']);
  });

  it('computes the ETA from the recent step rate and counts it down between steps', () => {
    const v = view();
    v.progress.runStart({ runId: 'r1', runDir: '/runs/r1', stages: ['sft'] });
    v.progress.stageStart('sft', SFT, null);
    v.clock.t = 1000;
    v.progress.metric('sft', 1, { 'train/loss': 2 });
    expect(v.block(1)[0]).toBe('▸ sft  starting…   [----------] 1/30    1.0s   eta –      loss 2.0000');
    v.clock.t = 1400;
    v.progress.state('sft', 'training', null);
    v.clock.t = 1500;
    v.progress.metric('sft', 2, { 'train/loss': 1.5 });
    expect(v.block(1)[0]).toBe('▸ sft  training    [----------] 2/30    1.5s   eta 14s    loss 1.5000'); // 28 steps at 2/s
    v.clock.t = 2500;
    v.progress.tick();
    expect(v.block(1)[0]).toBe('▸ sft  training    [----------] 2/30    2.5s   eta 13s    loss 1.5000');
    v.clock.t = 4000;
    v.progress.metric('sft', 15, { 'train/loss': 0.5 }); // faster now: over the window 14 steps in 3 s
    expect(v.block(1)[0]).toBe('▸ sft  training    [#####-----] 15/30   4.0s   eta 3.2s   loss 0.5000'); // 15 left
  });

  it('throttles metric redraws to one per 100 ms and draws the last step at stageEnd', () => {
    const v = view();
    v.progress.runStart({ runId: 'r1', runDir: '/runs/r1', stages: ['sft'] });
    v.progress.stageStart('sft', configWith({ sft: { max_steps: 200 } }), null);
    const before = v.writes.length;
    for (let s = 1; s <= 200; s++) {
      v.clock.t = s * 5;
      v.progress.metric('sft', s, { 'train/loss': 1 / s });
    }
    expect(v.writes.length - before).toBe(10); // 1 s of metrics: t = 100, 200, … 1000 ms
    expect(v.block(1)[0]).toMatch(/ 200\/200 /);
    v.progress.stageEnd('sft', 'ok', 1);
    expect(v.block(1)[0]).toBe('✓ sft  ok          [##########] 200/200 1.0s              loss 0.0050');
  });

  it('cuts lines to the terminal width (dropping the bar first) and never wraps the block', () => {
    const v = view({ columns: 40, color: true });
    const events = loadRecording();
    replay(events, v.progress, v.clock, { fn: v.progress.tick, tickMs: 100 });
    const block = v.block(5);
    for (const row of block) expect(Array.from(row).length).toBeLessThanOrEqual(39);
    expect(block.join('\n')).toMatchInlineSnapshot(`
      "run 20261125-092854-347d · ok in 13s
      ✓ sft  ok          30/30   2.7s
      ✓ dpo  ok          30/30   1.6s
      ✓ grpo ok          30/30   3.0s
      ✓ rlhf ok          120/120 2.6s"
    `);
    // Colour codes are never cut in half: each colour is reset within the same row.
    for (const w of v.writes) {
      for (const row of w.text.split('\n')) expect(row.split('\x1b[0m').length - 1).toBe((row.match(/\x1b\[(?:3\d|2)m/g) ?? []).length);
    }
    expect(v.writes.some((w) => COLOUR.test(w.text))).toBe(true);
  });

  it('at 80 columns, over a whole real run: the bar never comes and goes, columns never shift, no number is cut', () => {
    const v = view({ columns: 80 });
    const frames: string[][] = [];
    const progress = { ...v.progress };
    for (const m of Object.keys(v.progress) as (keyof typeof v.progress)[]) {
      const f = v.progress[m] as (...a: unknown[]) => void;
      (progress as Record<string, unknown>)[m] = (...a: unknown[]) => {
        f(...a);
        if (v.screen.row >= 5) frames.push(v.block(5));
      };
    }
    replay(loadRecording(), progress, v.clock, { fn: progress.tick, tickMs: 100 });
    const started = frames.flatMap((f) => f.slice(1)).filter((l) => /^[▸✓✗■•] /.test(l));
    expect(started.length).toBeGreaterThan(100);
    // The same layout in every frame: no bar at 80 columns, the steps column at one offset.
    expect(started.filter((l) => l.includes('[#') || l.includes('[-'))).toEqual([]);
    expect(new Set(started.map((l) => l.search(/\d+\/\d+/)))).toEqual(new Set([19]));
    for (const l of started) {
      expect(Array.from(l).length).toBeLessThanOrEqual(79);
      // Every metric is whole: a label and a full number (4 decimals, or NaN).
      const metrics = l.slice(41).trim();
      if (metrics) expect(metrics).toMatch(/^((loss|margin|acc|reward|kl|rm loss|rm acc) (-?\d+\.\d{4}|NaN|[-+]?Infinity) ?)+$/);
    }
    // DPO keeps all three of its key metrics at 80 columns.
    expect(frames.at(-1)!.find((l) => l.startsWith('✓ dpo'))).toMatch(/loss \S+ margin \S+ acc \S+$/);
  });

  it('wraps text printed above the block at word boundaries', () => {
    const v = view({ columns: 60 });
    v.progress.runStart({ runId: 'r1', runDir: '/runs/r1', stages: ['sft'] });
    const text = 'grpo: alert: step 12: 100% of completions hit stages.grpo.max_completion_length for 5 logged steps in a row';
    v.progress.note(text);
    const rows = v.screen.text().split('\n').slice(1, 4);
    for (const r of rows) expect(Array.from(r).length).toBeLessThanOrEqual(59);
    expect(rows.map((r) => r.trim()).join(' ')).toBe(text); // no word cut in two
  });

  it('a terminal shrunk mid-run: the next frame goes up by the rows the old lines now take', () => {
    let columns = 120;
    const clock = new FakeClock();
    const writes: string[] = [];
    const p = ttyProgress({ write: (t) => writes.push(t), now: clock.now, columns: () => columns, color: false, tickMs: 0 });
    p.runStart({ runId: 'r1', runDir: '/runs/r1', stages: ['sft'] });
    p.stageStart('sft', SFT, null);
    clock.t = 1000;
    p.metric('sft', 5, { 'train/loss': 1.25 });
    const last = writes.at(-1)!.split('\n').filter((l) => l.includes('\x1b[2K')).map((l) => l.replace(/\x1b\[[0-9;]*[A-Za-z]/g, '').replace('\r', ''));
    columns = 40; // the 2 lines, up to 119 wide, reflow into ceil(len / 40) rows each
    clock.t = 2000;
    p.tick();
    const up = Number(/\x1b\[(\d+)A/.exec(writes.at(-1)!)![1]);
    expect(up).toBe(last.reduce((n, l) => n + Math.max(1, Math.ceil(Array.from(l).length / 40)), 0));
    expect(up).toBeGreaterThan(2);
    expect(writes.at(-1)).toContain('\x1b[J'); // and whatever is below is cleared
    clock.t = 3000;
    p.metric('sft', 6, { 'train/loss': 1 });
    expect(Number(/\x1b\[(\d+)A/.exec(writes.at(-1)!)![1])).toBe(2); // at the same width: the line count again
  });

  it('shows RLHF reward-model metrics first, then the policy reward and KL', () => {
    const v = view();
    v.progress.runStart({ runId: 'r1', runDir: '/runs/r1', stages: ['rlhf'] });
    v.progress.stageStart('rlhf', configWith({ rlhf: { reward_model: { max_steps: 10 }, policy: { max_steps: 10 } } }), null);
    v.progress.state('rlhf', 'training', null);
    v.progress.metric('rlhf', 5, { 'rm/train/loss': 0.6 });
    v.clock.t = 200;
    v.progress.metric('rlhf', 5, { 'rm/eval/accuracy': 0.75 });
    v.clock.t = 400;
    v.progress.metric('rlhf', 6, { 'rm/train/loss': 0.5 });
    expect(v.block(1)[0]).toBe('▸ rlhf training    [###-------] 6/20    0.4s   eta –      rm loss 0.5000  rm acc 0.7500');
    v.clock.t = 600;
    v.progress.state('rlhf', 'saving', 'reward model');
    expect(v.block(1)[0]).toMatch(/^▸ rlhf saving rm… /);
    v.clock.t = 1000;
    v.progress.metric('rlhf', 11, { 'train/reward': -1, 'train/kl': 0.01 });
    v.progress.state('rlhf', 'training', null);
    expect(v.block(1)[0]).toBe('▸ rlhf training    [#####-----] 11/20   1.0s   eta –      reward -1.0000  kl 0.0100');
  });

  it('a stage the sidecar died in shows failed, later stages "not run", and the cursor comes back', () => {
    const v = view();
    v.progress.runStart({ runId: 'r1', runDir: '/runs/r1', stages: ['sft', 'dpo'] });
    v.progress.stageStart('sft', SFT, null);
    v.progress.metric('sft', 3, { 'train/loss': Number.NaN });
    v.clock.t = 2000;
    v.progress.runEnd({ runDir: '/runs/r1', status: 'failed' });
    expect(v.block(3)).toEqual(['run r1 · failed in 2.0s', '✗ sft  failed      [#---------] 3/30    2.0s              loss NaN', '· dpo  not run']);
    expect(v.screen.cursorVisible).toBe(true);
  });

  it('notes before the run starts are written plainly; after runEnd nothing redraws', () => {
    const v = view();
    v.progress.note('warning: data.sft: left out 1 bad row(s) of 3');
    expect(v.writes.map((w) => w.text)).toEqual(['warning: data.sft: left out 1 bad row(s) of 3\n']);
    v.progress.runStart({ runId: 'r1', runDir: '/runs/r1', stages: ['sft'] });
    v.progress.runEnd({ runDir: '/runs/r1', status: 'interrupted' });
    const n = v.writes.length;
    v.progress.tick();
    v.progress.note('after');
    expect(v.writes.slice(n).map((w) => w.text)).toEqual(['after\n']);
    expect(v.screen.text()).toBe('warning: data.sft: left out 1 bad row(s) of 3\nrun r1: /runs/r1\nrun r1 · interrupted in 0.0s\n· sft  not run\nafter');
  });
});

describe('choosing the renderer', () => {
  const io = (over: Partial<CliIO>): CliIO & { errText: () => string } => {
    let err = '';
    return { out: () => {}, err: (t) => void (err += t), isTTY: false, errIsTTY: true, columns: 80, cwd: '/', env: { TERM: 'xterm-256color' }, errText: () => err, ...over };
  };

  it('auto is the TTY view only on an interactive terminal, never in CI or on TERM=dumb', () => {
    expect(resolveMode('auto', io({}))).toBe('tty');
    expect(resolveMode('auto', io({ errIsTTY: false }))).toBe('plain');
    expect(resolveMode('auto', io({ env: { TERM: 'dumb' } }))).toBe('plain');
    expect(resolveMode('auto', io({ env: { TERM: 'xterm', CI: 'true' } }))).toBe('plain');
    expect(resolveMode('auto', io({ env: { TERM: 'xterm', CI: 'false' } }))).toBe('tty');
    expect(resolveMode('plain', io({}))).toBe('plain');
  });

  it('NO_COLOR turns colour off but keeps the in-place redraw', () => {
    for (const [env, coloured] of [[{ TERM: 'xterm' }, true], [{ TERM: 'xterm', NO_COLOR: '1' }, false]] as const) {
      const o = io({ env });
      const p = selectProgress({ progress: 'tty' }, o);
      p.runStart({ runId: 'r1', runDir: '/runs/r1', stages: ['sft'] });
      p.stageStart('sft', SFT, null);
      p.stageEnd('sft', 'ok', 1);
      p.runEnd({ runDir: '/runs/r1', status: 'ok' });
      expect(COLOUR.test(o.errText())).toBe(coloured);
      expect(o.errText()).toMatch(/\r\x1b\[2A/);
    }
  });
});
