// Which charts a stage gets. One chart per metric, except that companions share one: a metric and
// its eval twin (`train/loss` + `eval/loss`, `rm/train/accuracy` + `rm/eval/accuracy`), chosen and
// rejected (`rewards/chosen` + `rewards/rejected`), and min/mean/max families. The signals that
// say whether a stage worked come first; the rest go into a collapsed section. A metric recorded
// once (TRL's end-of-training summary: train_runtime, total_flos…) is a number, not a curve, and
// is listed in a table instead.
import type { MetricRecord } from '../artifacts/index.js';
import type { StageName } from '../config/schema.js';
import { stageEntry } from '../stages/catalogue.js';
import type { Chart, ChartSeries } from './svg.js';

/** One run's metrics for one stage, with how the run is labelled and drawn. */
export interface RunMetrics {
  run: string;
  /** "A" / "B" in an overlay, "" for a single run. */
  label: string;
  dashed: boolean;
  palette: readonly string[];
  metrics: readonly MetricRecord[];
}

export interface StageCharts {
  key: Chart[];
  other: Chart[];
  /** Metrics recorded once per run: key → value per run (in `runs` order; undefined = absent). */
  scalars: { key: string; values: (number | null | undefined)[] }[];
}

// Run A in cool, saturated colours with solid lines; run B in warm ones, dashed.
export const PALETTE_A = ['#2563eb', '#dc2626', '#059669', '#7c3aed', '#0f766e', '#4338ca', '#be123c', '#0369a1'] as const;
export const PALETTE_B = ['#ea580c', '#db2777', '#65a30d', '#0891b2', '#a16207', '#c026d3', '#b45309', '#e11d48'] as const;

/** Keys that share a chart map to the same group name. */
export function groupOf(key: string): string {
  return key
    .replace(/(^|\/)eval\//, '$1train/')
    .replace(/\/(chosen|rejected)$/, '/chosen|rejected')
    .replace(/(^|\/)(min|mean|max)_([^/]+)$/, '$1min|mean|max_$3');
}

/** How many records carry each key, in order of first appearance. */
function keyCounts(metrics: readonly MetricRecord[]): Map<string, number> {
  const counts = new Map<string, number>();
  for (const m of metrics) for (const k of Object.keys(m.values)) counts.set(k, (counts.get(k) ?? 0) + 1);
  return counts;
}

export function stageCharts(stage: StageName, runs: readonly RunMetrics[]): StageCharts {
  // Keys in first-appearance order across the runs, with the most records any run has.
  const counts = new Map<string, number>();
  for (const r of runs) for (const [k, n] of keyCounts(r.metrics)) counts.set(k, Math.max(counts.get(k) ?? 0, n));

  const groups = new Map<string, string[]>();
  for (const k of counts.keys()) {
    const g = groupOf(k);
    groups.set(g, [...(groups.get(g) ?? []), k]);
  }

  const charts: { chart: Chart; rank: number }[] = [];
  const scalars: StageCharts['scalars'] = [];
  const keyList = stageEntry(stage).report;
  for (const keys of groups.values()) {
    if (!keys.some((k) => (counts.get(k) ?? 0) >= 2)) {
      for (const key of keys) scalars.push({ key, values: runs.map((r) => lastValue(r.metrics, key)) });
      continue;
    }
    const series: ChartSeries[] = [];
    for (const r of runs) {
      keys.forEach((key, i) => {
        const points = r.metrics.filter((m) => key in m.values).map((m) => ({ x: m.step, y: m.values[key] ?? null }));
        if (points.length === 0) return;
        const label = r.label === '' ? key : `${key} · ${r.label}`;
        series.push({ run: r.run, key, label, color: r.palette[i % r.palette.length]!, dashed: r.dashed, points });
      });
    }
    const ranks = keys.map((k) => keyList.indexOf(k)).filter((i) => i >= 0);
    charts.push({
      chart: { id: `${stage}/${keys[0]}`, title: `${stage}: ${keys.join(' & ')}`, runs: runs.map((r) => r.run), series },
      rank: ranks.length > 0 ? Math.min(...ranks) : Infinity,
    });
  }
  // Stable sort: key metrics in the list's order, then the rest in first-appearance order.
  charts.sort((a, b) => (a.rank === b.rank ? 0 : a.rank < b.rank ? -1 : 1));
  return {
    key: charts.filter((c) => c.rank !== Infinity).map((c) => c.chart),
    other: charts.filter((c) => c.rank === Infinity).map((c) => c.chart),
    scalars,
  };
}

function lastValue(metrics: readonly MetricRecord[], key: string): number | null | undefined {
  for (let i = metrics.length - 1; i >= 0; i--) if (key in metrics[i]!.values) return metrics[i]!.values[key];
  return undefined;
}
