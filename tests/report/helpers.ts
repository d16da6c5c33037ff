// Shared by the report tests: count what a report drew, and what metrics.jsonl holds.
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { readMetrics } from '../../src/artifacts/index.js';

/** Finite values of `key` in a stage's metrics.jsonl: what a chart must plot. */
export function finiteCount(runDir: string, stage: string, key: string): number {
  return readMetrics(join(runDir, 'stages', stage, 'metrics.jsonl')).filter((m) => typeof m.values[key] === 'number' && Number.isFinite(m.values[key])).length;
}

/** Records carrying `key` at all (finite, NaN, inf or null). */
export function recordCount(runDir: string, stage: string, key: string): number {
  return readMetrics(join(runDir, 'stages', stage, 'metrics.jsonl')).filter((m) => key in m.values).length;
}

export interface DrawnSeries {
  chart: string;
  run: string;
  key: string;
  /** data-points of the series group. */
  declared: number;
  /** Points actually in its polylines. */
  drawn: number;
  polylines: number;
  dashed: boolean;
}

/** Every series of every chart in report HTML, parsed with regular expressions (the markup is ours). */
export function drawnSeries(html: string): DrawnSeries[] {
  const out: DrawnSeries[] = [];
  for (const svg of html.matchAll(/<svg class="chart"[^>]*data-chart="([^"]*)"[^>]*>([\s\S]*?)<\/svg>/g)) {
    for (const g of svg[2]!.matchAll(/<g class="series" data-series="([^"]*)" data-key="([^"]*)" data-points="(\d+)"[^>]*>([\s\S]*?)<\/g>/g)) {
      const polys = [...g[4]!.matchAll(/<polyline[^>]*points="([^"]*)"/g)];
      out.push({
        chart: unescape(svg[1]!),
        run: unescape(g[1]!),
        key: unescape(g[2]!),
        declared: Number(g[3]),
        drawn: polys.reduce((n, p) => n + p[1]!.trim().split(/\s+/).length, 0),
        polylines: polys.length,
        dashed: /stroke-dasharray/.test(g[4]!),
      });
    }
  }
  return out;
}

const unescape = (s: string) => s.replaceAll('&lt;', '<').replaceAll('&gt;', '>').replaceAll('&quot;', '"').replaceAll('&#39;', "'").replaceAll('&amp;', '&');

export function onlyRun(runsDir: string): string {
  const runs = readdirSync(runsDir).filter((d) => !d.startsWith('.'));
  if (runs.length !== 1) throw new Error(`expected one run in ${runsDir}, found ${runs.length}`);
  return join(runsDir, runs[0]!);
}
