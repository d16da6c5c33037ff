// Line charts as inline SVG, drawn here rather than by a charting library: the report must open
// offline, forever, from one file, and what it needs is small (linear axes with nice ticks,
// several series, gaps, a legend). Each chart and series carries data attributes so tests (and
// scripts) can read what was drawn:
//
//   <svg data-chart="sft/train/loss" data-run="<run a>" data-runs="<run a> <run b>">
//     <g data-series="<run id>" data-key="train/loss" data-points="30" data-gaps="0">
//       <polyline points="x,y x,y …"/>    one polyline per unbroken segment
//
// A non-finite or null value (a diverging loss is written as "NaN") breaks the line: the points
// on either side go into separate polylines, and a red tick on the x axis marks the step. So the
// polylines of a series hold exactly its finite points, data-points says how many, and a test
// can count them against metrics.jsonl.
import { esc } from './escape.js';

export interface ChartPoint {
  x: number;
  /** null, NaN or ±Infinity: a gap. */
  y: number | null;
}

export interface ChartSeries {
  run: string;
  key: string;
  label: string;
  color: string;
  dashed: boolean;
  points: ChartPoint[];
}

export interface Chart {
  id: string;
  title: string;
  /** Run ids in the chart, first = the report's main run. */
  runs: string[];
  series: ChartSeries[];
}

export interface Ticks {
  lo: number;
  hi: number;
  step: number;
  ticks: number[];
}

const W = 560;
const H = 250;
const M = { left: 62, right: 16, bottom: 40 };
const LEGEND_ROW = 16;
/** Series with at most this many points get a dot per point, so sparse eval curves stay visible. */
const MARKERS_UP_TO = 12;

const clean = (v: number) => Number(v.toPrecision(12));

/** A step of 1, 2 or 5 × 10^k giving about `count` intervals over `range`. */
function niceStep(range: number, count: number): number {
  const raw = range / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const f = raw / mag;
  return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * mag;
}

/**
 * Round axis bounds and evenly spaced ticks covering [min, max]. A flat series (min = max) gets a
 * band around its value; `integer` keeps the step ≥ 1 (training steps).
 */
export function niceTicks(min: number, max: number, count = 5, integer = false): Ticks {
  if (!Number.isFinite(min) || !Number.isFinite(max)) throw new RangeError(`niceTicks needs finite bounds, got ${min}, ${max}`);
  if (!(max > min)) {
    const pad = integer ? 1 : Math.abs(min) * 0.1 || 1;
    min -= pad;
    max += pad;
  }
  let step = niceStep(max - min, count);
  if (integer) step = Math.max(1, Math.round(step));
  const lo = clean(Math.floor(min / step) * step);
  const hi = clean(Math.ceil(max / step) * step);
  const ticks: number[] = [];
  for (let i = 0; lo + i * step <= hi + step * 1e-9; i++) ticks.push(clean(lo + i * step));
  return { lo, hi, step, ticks };
}

/**
 * A tick label with as many decimals as the step needs. `scale` is the axis' largest |tick|, so
 * one axis uses one notation: exponent form only when the whole axis is huge or tiny.
 */
export function formatTick(v: number, step: number, scale = Math.abs(v)): string {
  if (v === 0) return '0';
  if (scale >= 1e5 || scale < 1e-3) {
    const digits = Math.min(4, Math.max(0, Math.floor(Math.log10(Math.abs(v))) - Math.floor(Math.log10(step) + 1e-9)));
    return v.toExponential(digits);
  }
  return v.toFixed(Math.min(10, Math.max(0, -Math.floor(Math.log10(step) + 1e-9))));
}

const scaleOf = (t: Ticks) => Math.max(Math.abs(t.lo), Math.abs(t.hi));

const finite = (p: ChartPoint): p is { x: number; y: number } => typeof p.y === 'number' && Number.isFinite(p.y) && Number.isFinite(p.x);

/** Runs of consecutive finite points; a non-finite or null value ends a run. */
export function segments(points: readonly ChartPoint[]): { x: number; y: number }[][] {
  const out: { x: number; y: number }[][] = [];
  let cur: { x: number; y: number }[] = [];
  for (const p of points) {
    if (finite(p)) cur.push(p);
    else if (cur.length > 0) {
      out.push(cur);
      cur = [];
    }
  }
  if (cur.length > 0) out.push(cur);
  return out;
}

/** Legend entries laid out left to right, wrapping; the text width is estimated (no DOM here). */
function layoutLegend(series: readonly ChartSeries[]): { rows: number; items: { s: ChartSeries; x: number; row: number }[] } {
  const items: { s: ChartSeries; x: number; row: number }[] = [];
  let x = M.left;
  let row = 0;
  for (const s of series) {
    const w = 26 + s.label.length * 6.4 + 14;
    if (x + w > W - M.right && x > M.left) {
      row++;
      x = M.left;
    }
    items.push({ s, x, row });
    x += w;
  }
  return { rows: row + 1, items };
}

/** [min, max] of the values, or the fallback when there are none (a loop: long runs overflow Math.min(...)). */
function extent(values: readonly number[], lo: number, hi: number): [number, number] {
  if (values.length === 0) return [lo, hi];
  let a = Infinity;
  let b = -Infinity;
  for (const v of values) {
    if (v < a) a = v;
    if (v > b) b = v;
  }
  return [a, b];
}

const f2 = (v: number) => String(Math.round(v * 100) / 100);

export function renderChart(chart: Chart): string {
  const legend = layoutLegend(chart.series);
  const top = 12 + legend.rows * LEGEND_ROW;
  const pw = W - M.left - M.right;
  const ph = H - top - M.bottom;
  const all = chart.series.flatMap((s) => s.points);
  const good = all.filter(finite);
  const xs = all.map((p) => p.x).filter(Number.isFinite);
  const [x0, x1] = extent(xs, 0, 1);
  const xt = niceTicks(x0, x1, 6, xs.every(Number.isInteger));
  const [y0, y1] = extent(good.map((p) => p.y), 0, 1);
  const yt = niceTicks(y0, y1, 5);
  const sx = (x: number) => M.left + ((x - xt.lo) / (xt.hi - xt.lo)) * pw;
  const sy = (y: number) => top + ph - ((y - yt.lo) / (yt.hi - yt.lo)) * ph;

  const out: string[] = [];
  out.push(
    `<svg class="chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${W} ${H}" role="img" aria-label="${esc(chart.title)}" data-chart="${esc(chart.id)}" data-run="${esc(chart.runs[0] ?? '')}" data-runs="${esc(chart.runs.join(' '))}">`,
  );
  out.push(`<title>${esc(chart.title)}</title>`);
  // Grid and axes.
  out.push('<g class="axis">');
  for (const t of yt.ticks) {
    const y = f2(sy(t));
    out.push(`<line class="grid" x1="${M.left}" x2="${W - M.right}" y1="${y}" y2="${y}"/><text class="tick" x="${M.left - 6}" y="${y}" text-anchor="end" dominant-baseline="middle">${esc(formatTick(t, yt.step, scaleOf(yt)))}</text>`);
  }
  for (const t of xt.ticks) {
    const x = f2(sx(t));
    out.push(`<line class="grid" x1="${x}" x2="${x}" y1="${top}" y2="${top + ph}"/><text class="tick" x="${x}" y="${top + ph + 14}" text-anchor="middle">${esc(formatTick(t, xt.step, scaleOf(xt)))}</text>`);
  }
  out.push(`<rect class="frame" x="${M.left}" y="${top}" width="${pw}" height="${ph}"/>`);
  out.push(`<text class="label" x="${M.left + pw / 2}" y="${H - 6}" text-anchor="middle">step</text>`);
  out.push('</g>');
  if (good.length === 0) out.push(`<text class="empty" x="${M.left + pw / 2}" y="${top + ph / 2}" text-anchor="middle">no finite values</text>`);

  // Series: one group each, one polyline per unbroken segment.
  for (const s of chart.series) {
    const segs = segments(s.points);
    const n = segs.reduce((k, seg) => k + seg.length, 0);
    const gaps = s.points.filter((p) => !finite(p));
    const dash = s.dashed ? ' stroke-dasharray="6 4"' : '';
    out.push(`<g class="series" data-series="${esc(s.run)}" data-key="${esc(s.key)}" data-points="${n}" data-gaps="${gaps.length}" stroke="${esc(s.color)}" fill="${esc(s.color)}">`);
    for (const seg of segs) {
      out.push(`<polyline data-series="${esc(s.run)}" data-key="${esc(s.key)}" fill="none" stroke-width="1.8"${dash} points="${seg.map((p) => `${f2(sx(p.x))},${f2(sy(p.y))}`).join(' ')}"/>`);
      // A lone point between gaps draws no line; give it a dot.
      if (seg.length === 1 || n <= MARKERS_UP_TO) for (const p of seg) out.push(`<circle r="2.6" cx="${f2(sx(p.x))}" cy="${f2(sy(p.y))}"/>`);
    }
    for (const p of gaps) if (Number.isFinite(p.x)) out.push(`<line class="gap" x1="${f2(sx(p.x))}" x2="${f2(sx(p.x))}" y1="${top + ph - 6}" y2="${top + ph}"><title>${esc(`${s.label}: ${p.y} at step ${p.x}`)}</title></line>`);
    out.push('</g>');
  }

  // Legend.
  out.push('<g class="legend">');
  for (const { s, x, row } of legend.items) {
    const y = 10 + row * LEGEND_ROW;
    out.push(`<line x1="${f2(x)}" x2="${f2(x + 20)}" y1="${y}" y2="${y}" stroke="${esc(s.color)}" stroke-width="2.4"${s.dashed ? ' stroke-dasharray="5 3"' : ''}/><text class="legend-text" x="${f2(x + 26)}" y="${y}" dominant-baseline="middle">${esc(s.label)}</text>`);
  }
  out.push('</g></svg>');
  return out.join('');
}
