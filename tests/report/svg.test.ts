// The chart drawing on its own: tick maths, gaps, point counts, escaping, grouping.
import { describe, expect, it } from 'vitest';
import type { MetricRecord } from '../../src/artifacts/index.js';
import { groupOf, PALETTE_A, PALETTE_B, stageCharts } from '../../src/report/charts.js';
import { diffValues } from '../../src/report/diff.js';
import { esc, fmtNum } from '../../src/report/escape.js';
import { type Chart, formatTick, niceTicks, renderChart, segments } from '../../src/report/svg.js';
import { drawnSeries } from './helpers.js';

const rec = (step: number, values: Record<string, number | null>): MetricRecord => ({ stage: 'sft', step, ts: step, values });

function chartOf(points: { x: number; y: number | null }[], more: Partial<Chart> = {}): Chart {
  return { id: 'sft/train/loss', title: 'sft: train/loss', runs: ['run-a'], series: [{ run: 'run-a', key: 'train/loss', label: 'train/loss', color: '#2563eb', dashed: false, points }], ...more };
}

describe('niceTicks', () => {
  it('covers the data with round 1/2/5 steps', () => {
    expect(niceTicks(0, 1)).toEqual({ lo: 0, hi: 1, step: 0.2, ticks: [0, 0.2, 0.4, 0.6, 0.8, 1] });
    const t = niceTicks(4.91, 5.93);
    expect(t.step).toBe(0.5);
    expect(t.lo).toBeLessThanOrEqual(4.91);
    expect(t.hi).toBeGreaterThanOrEqual(5.93);
    expect(t.ticks).toEqual([4.5, 5, 5.5, 6]);
    expect(niceTicks(0.013, 0.087).ticks).toEqual([0, 0.02, 0.04, 0.06, 0.08, 0.1]);
    expect(niceTicks(-2.6, -0.5).ticks).toEqual([-3, -2.5, -2, -1.5, -1, -0.5]);
  });

  it('gives a flat series a band around its value, and integer steps for training steps', () => {
    const flat = niceTicks(0.001, 0.001);
    expect(flat.lo).toBeLessThan(0.001);
    expect(flat.hi).toBeGreaterThan(0.001);
    expect(niceTicks(0, 0).ticks).toEqual([-1, -0.5, 0, 0.5, 1]);
    expect(niceTicks(1, 3, 6, true).step).toBe(1);
    expect(niceTicks(1, 120, 6, true)).toMatchObject({ lo: 0, hi: 120, step: 20 });
  });

  it('refuses non-finite bounds', () => {
    expect(() => niceTicks(Number.NaN, 1)).toThrow(RangeError);
  });

  it('labels ticks with the decimals the step needs', () => {
    expect(formatTick(0.4, 0.2)).toBe('0.4');
    expect(formatTick(0.25, 0.05)).toBe('0.25');
    expect(formatTick(120, 20)).toBe('120');
    expect(formatTick(0, 0.2)).toBe('0');
    expect(formatTick(25000, 5000)).toBe('25000');
    expect(formatTick(2e9, 5e8)).toBe('2.0e+9');
    // One notation per axis: a learning-rate axis 9.0e-4 … 1.15e-3 stays in exponent form only if all of it is tiny.
    expect(formatTick(0.00105, 0.00005, 0.00115)).toBe('0.00105');
    expect(formatTick(0.00095, 0.00005, 0.00098)).toBe('9.5e-4');
    expect(formatTick(5.8875, 0.0005)).toBe('5.8875');
  });
});

describe('segments and gaps', () => {
  it('splits at NaN, ±Infinity and null, keeping every finite point once', () => {
    const pts = [1, 2, Number.NaN, 4, null, Number.POSITIVE_INFINITY, 7, 8, Number.NEGATIVE_INFINITY].map((y, i) => ({ x: i + 1, y }));
    expect(segments(pts).map((s) => s.map((p) => p.x))).toEqual([[1, 2], [4], [7, 8]]);
  });

  it('draws one polyline per segment; data-points equals the polylines\' points', () => {
    const pts = [0.9, 0.8, Number.NaN, 0.6, 0.5, 0.4, Number.POSITIVE_INFINITY, 0.2].map((y, i) => ({ x: i + 1, y }));
    const svg = renderChart(chartOf(pts));
    const [s] = drawnSeries(svg);
    expect(s).toMatchObject({ chart: 'sft/train/loss', run: 'run-a', key: 'train/loss', declared: 6, drawn: 6, polylines: 3 });
    expect(svg).toContain('data-gaps="2"');
    expect(svg.match(/class="gap"/g)).toHaveLength(2);
    // Every drawn coordinate is a finite number inside the viewBox.
    for (const [, x, y] of svg.matchAll(/(-?[\d.]+),(-?[\d.]+)/g)) {
      expect(Number(x)).toBeGreaterThanOrEqual(0);
      expect(Number(x)).toBeLessThanOrEqual(560);
      expect(Number(y)).toBeGreaterThanOrEqual(0);
      expect(Number(y)).toBeLessThanOrEqual(250);
    }
  });

  it('a series with no finite value draws no line and says so', () => {
    const svg = renderChart(chartOf([{ x: 1, y: Number.NaN }, { x: 2, y: null }]));
    expect(drawnSeries(svg)[0]).toMatchObject({ declared: 0, drawn: 0, polylines: 0 });
    expect(svg).toContain('no finite values');
  });

  it('higher values are drawn higher (the y axis is not flipped)', () => {
    const svg = renderChart(chartOf([{ x: 1, y: 0 }, { x: 2, y: 10 }]));
    const [a, b] = /<polyline[^>]* points="([^"]*)"/.exec(svg)![1]!.split(' ').map((p) => Number(p.split(',')[1]));
    expect(b!).toBeLessThan(a!);
  });
});

describe('escaping', () => {
  it('escapes every HTML-special character', () => {
    expect(esc(`<script>alert("x")</script>&'`)).toBe('&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;&#39;');
  });

  it('metric keys and run ids from the run folder are escaped inside the SVG', () => {
    const evil = '"><script>alert(1)</script>';
    const svg = renderChart({ id: `sft/${evil}`, title: evil, runs: [evil], series: [{ run: evil, key: evil, label: evil, color: '#000', dashed: false, points: [{ x: 1, y: 1 }, { x: 2, y: 2 }] }] });
    expect(svg).not.toMatch(/<script/i);
    expect(drawnSeries(svg)[0]).toMatchObject({ run: evil, key: evil, drawn: 2 });
  });

  it('formats numbers for people', () => {
    expect(fmtNum(312.24)).toBe('312.2');
    expect(fmtNum(30)).toBe('30');
    expect(fmtNum(2147613696)).toBe('2.148e+9');
    expect(fmtNum(0.0000123)).toBe('1.23e-5');
    expect(fmtNum(Number.NaN)).toBe('NaN');
    expect(fmtNum(null)).toBe('—');
  });
});

describe('chart grouping', () => {
  it('puts eval twins, chosen/rejected and min/mean/max families on one chart', () => {
    expect(groupOf('eval/loss')).toBe(groupOf('train/loss'));
    expect(groupOf('rm/eval/accuracy')).toBe(groupOf('rm/train/accuracy'));
    expect(groupOf('rewards/chosen')).toBe(groupOf('rewards/rejected'));
    expect(groupOf('completions/min_length')).toBe(groupOf('completions/max_length'));
    expect(groupOf('train/reward')).not.toBe(groupOf('train/reward_std'));
  });

  it('key metrics first in the stage\'s order, the rest after, one-off values as scalars', () => {
    const metrics = [1, 2, 3].map((s) => rec(s, { 'train/loss': 1 / s, 'rewards/accuracies': s / 4, 'rewards/margins': s, 'rewards/chosen': s, 'rewards/rejected': -s, 'train/grad_norm': 1 }));
    metrics.push(rec(3, { 'train/train_runtime': 0.5 }));
    const c = stageCharts('dpo', [{ run: 'a', label: '', dashed: false, palette: PALETTE_A, metrics }]);
    expect(c.key.map((x) => x.id)).toEqual(['dpo/train/loss', 'dpo/rewards/margins', 'dpo/rewards/accuracies']);
    expect(c.other.map((x) => x.id)).toEqual(['dpo/rewards/chosen', 'dpo/train/grad_norm']);
    expect(c.other[0]!.series.map((s) => s.key)).toEqual(['rewards/chosen', 'rewards/rejected']);
    expect(c.scalars).toEqual([{ key: 'train/train_runtime', values: [0.5] }]);
  });

  it('overlays a second run in its own colours, dashed', () => {
    const a = [1, 2, 3].map((s) => rec(s, { 'train/loss': 1 / s }));
    const b = [1, 2, 3, 4, 5].map((s) => rec(s, { 'train/loss': 2 / s }));
    const c = stageCharts('sft', [
      { run: 'ra', label: 'A', dashed: false, palette: PALETTE_A, metrics: a },
      { run: 'rb', label: 'B', dashed: true, palette: PALETTE_B, metrics: b },
    ]);
    const drawn = drawnSeries(renderChart(c.key[0]!));
    expect(drawn.map((d) => [d.run, d.drawn, d.dashed])).toEqual([['ra', 3, false], ['rb', 5, true]]);
    expect(c.key[0]!.series.map((s) => s.label)).toEqual(['train/loss · A', 'train/loss · B']);
    expect(c.key[0]!.series[0]!.color).not.toBe(c.key[0]!.series[1]!.color);
  });
});

describe('diffValues', () => {
  it('lists changed leaves as dot paths; arrays compare whole', () => {
    const from = { stages: { sft: { max_steps: 30, lr: 1 }, grpo: { reward_funcs: [{ name: 'format' }] } }, runtime: { seed: 1 } };
    const to = { stages: { sft: { max_steps: 60, lr: 1 }, grpo: { reward_funcs: [{ name: 'format' }, { name: 'length' }] } }, runtime: { seed: 1, extra: { a: 1 } } };
    expect(diffValues(from, to)).toEqual([
      { path: 'stages.sft.max_steps', from: 30, to: 60 },
      { path: 'stages.grpo.reward_funcs', from: [{ name: 'format' }], to: [{ name: 'format' }, { name: 'length' }] },
      { path: 'runtime.extra.a', from: undefined, to: 1 },
    ]);
    expect(diffValues(to, to)).toEqual([]);
  });
});
