// `posttrain report` on real run folders made by the fake sidecar (fast), with hostile and damaged
// content planted in them: point counts against metrics.jsonl, escaping, config diffs, overlays,
// CLI behaviour, and reports of runs that are still running or have nothing recorded.
import { appendFileSync, cpSync, existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { readRunRecord } from '../../src/artifacts/index.js';
import { configChanges } from '../../src/report/diff.js';
import { cli, fakeEnv, readJson, tmp } from '../helpers/cli.js';
import { drawnSeries, finiteCount, recordCount } from './helpers.js';

const HOSTILE = '<script>alert("pwned")</script><img src=x onerror=alert(1)>';

let cwd: string;
let runsDir: string;
let dirA: string;
let dirB: string;
let idA: string;
let idB: string;

async function fakeRun(args: string[], steps: number): Promise<string> {
  const r = await cli(['run', '--preset', 'smoke', '--set', `runtime.runs_dir=${runsDir}`, ...args], { cwd, env: fakeEnv({ stages: { '*': { steps, step_time_s: 0, save_every: 0 } } }) });
  expect(r.err).not.toMatch(/error:/);
  expect(r.code).toBe(0);
  return r.out.trim();
}

const line = (o: unknown) => `${JSON.stringify(o)}\n`;

beforeAll(async () => {
  cwd = tmp('posttrain-report-');
  runsDir = join(cwd, 'runs');
  dirA = await fakeRun([], 6);
  dirB = await fakeRun(['--stages', 'sft,dpo', '--set', 'stages.sft.max_steps=60'], 9);
  idA = readRunRecord(dirA).id;
  idB = readRunRecord(dirB).id;

  // Untrusted text where a report shows text: samples, alerts, an error message.
  const sft = join(dirA, 'stages', 'sft');
  writeFileSync(join(sft, 'samples.jsonl'), line({ stage: 'sft', prompt: HOSTILE, before: 'before & after', after: '</td></tr></table><h1>x</h1>' }) + 'not json\n' + line({ stage: 'sft', prompt: 'second', before: 'b', after: 'a' }));
  writeFileSync(join(sft, 'alerts.jsonl'), line({ stage: 'sft', step: 4, rule: 'loss_spike', severity: 'warning', message: `loss jumped ${HOSTILE}`, hint: 'lower the learning rate', ts: 1 }) + '{"half": \n');
  // A diverging stretch in dpo: NaN then +Infinity then finite again.
  const dpo = join(dirA, 'stages', 'dpo', 'metrics.jsonl');
  appendFileSync(dpo, line({ stage: 'dpo', step: 7, ts: 7, values: { 'train/loss': 'NaN', 'train/learning_rate': 0.001 } }));
  appendFileSync(dpo, line({ stage: 'dpo', step: 8, ts: 8, values: { 'train/loss': 'Infinity', 'train/learning_rate': 0.001 } }));
  appendFileSync(dpo, line({ stage: 'dpo', step: 9, ts: 9, values: { 'train/loss': 0.05, 'train/learning_rate': 0.001 } }));
}, 60_000);

describe('posttrain report <run>', () => {
  let html: string;
  let out: string;

  beforeAll(async () => {
    const r = await cli(['report', idA, '--runs-dir', runsDir], { cwd });
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    out = r.out;
    html = readFileSync(join(dirA, 'report.html'), 'utf8');
  });

  it('writes <run>/report.html and prints its path', () => {
    expect(out).toBe(`${join(dirA, 'report.html')}\n`);
    expect(html.startsWith('<!doctype html>')).toBe(true);
    // Atomic write: no temp file left behind.
    expect(readFileSync(join(dirA, 'report.html'), 'utf8')).toBe(html);
  });

  it('draws every curve with exactly the finite values metrics.jsonl holds', () => {
    const series = drawnSeries(html);
    for (const stage of ['sft', 'dpo', 'grpo', 'rlhf']) {
      for (const key of ['train/loss', 'train/learning_rate', 'train/epoch']) {
        const s = series.find((x) => x.chart === `${stage}/${key}` && x.key === key);
        expect(s, `${stage}/${key}`).toBeDefined();
        expect(s!.run).toBe(idA);
        expect(s!.declared).toBe(finiteCount(dirA, stage, key));
        expect(s!.drawn).toBe(s!.declared);
      }
    }
    // The NaN/Infinity stretch is a gap: two polylines, 7 finite points of 9 records.
    const loss = series.find((x) => x.chart === 'dpo/train/loss')!;
    expect(recordCount(dirA, 'dpo', 'train/loss')).toBe(9);
    expect(loss).toMatchObject({ declared: 7, drawn: 7, polylines: 2 });
    expect(html).toMatch(/2 non-finite or empty values \(NaN\/inf\) shown as gaps/);
  });

  it('escapes hostile text from the run folder; the page has no script and fetches nothing', () => {
    expect(html).not.toMatch(/<script/i);
    expect(html).not.toMatch(/<img/i);
    expect(html).not.toContain('<h1>x</h1>');
    expect(html).toContain('&lt;script&gt;alert(&quot;pwned&quot;)&lt;/script&gt;');
    expect(html).toContain('before &amp; after');
    expect(html).toContain(`default-src 'none'`);
    expect(html).not.toMatch(/(src|href)="(https?:)?\/\//);
  });

  it('shows alerts, samples and what could not be read', () => {
    expect(html).toContain('loss_spike');
    expect(html).toContain('lower the learning rate');
    expect(html).toContain('1 unreadable line(s) in alerts.jsonl skipped');
    expect(html).toContain('1 unreadable line(s) in samples.jsonl skipped');
    expect(html).toMatch(/no samples recorded/); // the other stages (the fake sidecar samples nothing)
  });

  it('shows provenance, lineage, data and timings', () => {
    expect(html).toContain('<code>preset smoke</code>');
    expect(html).toContain(`--set runtime.runs_dir=${runsDir}`);
    for (const s of ['sft', 'dpo', 'grpo']) expect(html).toContain(`stages/${s}/adapter`);
    const run = readJson(join(dirA, 'run.json'));
    expect(html).toContain(run.data.sft.sha256.slice(0, 16));
    expect(html).toContain('<td class="num">96</td>'); // sft rows
    expect(html).toContain('made with the fake sidecar');
    for (const s of ['sft', 'dpo', 'grpo', 'rlhf']) expect(html).toContain(`id="stage-${s}"`);
    expect(html).toContain(run.stages.sft.started);
  });

  it('says the config is the preset as is (runs_dir set to <cwd>/runs is the default)', () => {
    expect(html.includes('changed from preset smoke (0)')).toBe(true);
    expect(html.includes('nothing: the run used preset smoke as is')).toBe(true);
  });
});

describe('config diff', () => {
  it('against the preset: stages.sft.max_steps 30 → 60', () => {
    const { baseline, changes } = configChanges(readRunRecord(dirB));
    expect(baseline.label).toBe('preset smoke');
    expect(changes).toContainEqual({ path: 'stages.sft.max_steps', from: 30, to: 60 });
    expect(changes).toContainEqual({ path: 'runtime.stages', from: ['sft', 'dpo', 'grpo', 'rlhf'], to: ['sft', 'dpo'] });
  });

  it('without a preset, against the schema defaults', () => {
    const record = readRunRecord(dirA);
    record.preset = null;
    const { baseline, changes } = configChanges(record);
    expect(baseline.label).toBe('schema defaults');
    expect(changes).toContainEqual({ path: 'model.id', from: undefined, to: record.config.model.id });
    expect(changes).toContainEqual({ path: 'stages.sft.max_steps', from: null, to: 30 });
    expect(changes).toContainEqual({ path: 'runtime.device', from: 'auto', to: 'cpu' });
  });

  it('a preset that no longer exists falls back to the defaults, and says so', () => {
    const record = readRunRecord(dirA);
    record.preset = 'gone-preset';
    const { baseline } = configChanges(record);
    expect(baseline.label).toBe('schema defaults');
    expect(baseline.note).toMatch(/preset "gone-preset" no longer resolves/);
  });
});

describe('posttrain report <run-a> <run-b>', () => {
  it('overlays run B (dashed) on run A in <run-a>/compare-<run-b>.html', async () => {
    const r = await cli(['report', idA, idB, '--runs-dir', runsDir], { cwd });
    expect(r.code).toBe(0);
    const file = join(dirA, `compare-${idB}.html`);
    expect(r.out).toBe(`${file}\n`);
    const html = readFileSync(file, 'utf8');
    const series = drawnSeries(html);
    for (const stage of ['sft', 'dpo']) {
      const a = series.find((s) => s.chart === `${stage}/train/loss` && s.run === idA)!;
      const b = series.find((s) => s.chart === `${stage}/train/loss` && s.run === idB)!;
      expect(a).toMatchObject({ declared: finiteCount(dirA, stage, 'train/loss'), dashed: false });
      expect(b).toMatchObject({ declared: finiteCount(dirB, stage, 'train/loss'), drawn: 9, dashed: true });
    }
    // Stages only A ran are still there, with A's series alone.
    expect(series.filter((s) => s.chart === 'grpo/train/loss').map((s) => s.run)).toEqual([idA]);
    expect(html).toContain(`posttrain report — ${idA} vs ${idB}`);
    expect(html).toMatch(/A → B \(\d+\)/);
    expect(html).toMatch(/<code>stages\.sft\.max_steps<\/code><\/td><td><code>30<\/code><\/td><td><code>60<\/code>/);
  });
});

describe('posttrain report: CLI', () => {
  it('--open prints the path and its file:// URL; --out writes where asked', async () => {
    const r = await cli(['report', idB, '--runs-dir', 'runs', '--out', 'out/../b.html', '--open'], { cwd });
    expect(r.code).toBe(0);
    const file = join(cwd, 'b.html');
    expect(r.out).toBe(`${file}\n${pathToFileURL(file).href}\n`);
    expect(readFileSync(file, 'utf8')).toContain(idB);
  });

  it('defaults to the latest run', async () => {
    const r = await cli(['report', '--runs-dir', 'runs'], { cwd });
    expect(r.code).toBe(0);
    expect(r.out).toBe(`${join(dirB, 'report.html')}\n`);
  });

  it('an unknown run is a usage error naming the runs there', async () => {
    const r = await cli(['report', 'nope', '--runs-dir', 'runs'], { cwd });
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/error: No run "nope" in /);
    expect(r.err).toMatch(/hint: recent runs: /);
    const r2 = await cli(['report', idA, 'nope-b', '--runs-dir', 'runs'], { cwd });
    expect(r2.code).toBe(2);
    expect(existsSync(join(dirA, 'compare-nope-b.html'))).toBe(false);
  });

  it('a run still running, with a damaged metrics file and a stage with nothing yet, is reported as it stands and not touched', async () => {
    const dir = join(runsDir, 'still-running');
    cpSync(dirA, dir, { recursive: true });
    rmSync(join(dir, 'report.html'), { force: true });
    const run = readJson(join(dir, 'run.json'));
    run.id = 'still-running';
    run.status = 'running';
    run.stages.grpo = { ...run.stages.grpo, status: 'running', finished: null, output_adapter: null };
    run.stages.rlhf = { ...run.stages.rlhf, status: 'pending', started: null, finished: null, output_adapter: null, steps: null };
    writeFileSync(join(dir, 'run.json'), JSON.stringify(run));
    rmSync(join(dir, 'stages', 'rlhf'), { recursive: true });
    rmSync(join(dir, 'stages', 'grpo', 'summary.json'));
    // A garbage line in the middle and a line being written right now at the end.
    appendFileSync(join(dir, 'stages', 'grpo', 'metrics.jsonl'), 'garbage\n{"stage":"grpo","step":7,"ts":');
    const before = readFileSync(join(dir, 'run.json'), 'utf8');

    const r = await cli(['report', 'still-running', '--runs-dir', 'runs'], { cwd });
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    const html = readFileSync(join(dir, 'report.html'), 'utf8');
    expect(html).toContain('marked running, but no live process holds');
    expect(html).toContain('2 line(s) of metrics.jsonl are not metric records and were skipped');
    expect(html).toContain('no metrics recorded yet');
    expect(drawnSeries(html).find((s) => s.chart === 'grpo/train/loss')!.drawn).toBe(finiteCount(dirA, 'grpo', 'train/loss'));
    // Read-only: run.json unchanged (no "mark interrupted"), no lock left.
    expect(readFileSync(join(dir, 'run.json'), 'utf8')).toBe(before);
    expect(existsSync(join(dir, '.lock'))).toBe(false);
  });
});
