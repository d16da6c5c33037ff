// One stage's section of the report: status, error, timings and throughput, lineage, alerts,
// metric charts and before/after samples, for one run or side by side for two.
import type { StageName } from '../config/schema.js';
import { type Alert, type RunData, type StageData } from './collect.js';
import { PALETTE_A, PALETTE_B, type RunMetrics, stageCharts } from './charts.js';
import { esc, fmtNum } from './escape.js';
import { badge, type Cell, code, duration, kvTable, pathCell, raw, runHeaders, runLabels, table } from './html.js';
import { renderChart, type Chart } from './svg.js';

/** How many before/after samples a stage shows per run. */
export const SAMPLES_SHOWN = 6;

const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const num = (v: unknown): number | null => (typeof v === 'number' && Number.isFinite(v) ? v : null);

/**
 * Throughput from summary.json's `sidecar` block. RLHF nests one block per phase
 * (`reward_model`, `policy`); other stages have one flat block.
 */
export function throughput(summary: Record<string, unknown> | null): { phase: string; samplesPerS: number | null; tokensPerS: number | null; runtimeS: number | null }[] {
  const sidecar = summary?.sidecar;
  if (!isObj(sidecar)) return [];
  const phases = Object.entries(sidecar).filter(([, v]) => isObj(v) && ('train_runtime_s' in v || 'train/train_samples_per_second' in v));
  const blocks: [string, Record<string, unknown>][] = phases.length > 0 ? (phases as [string, Record<string, unknown>][]) : [['', sidecar]];
  return blocks.map(([phase, b]) => {
    const runtime = num(b.train_runtime_s) ?? num(b['train/train_runtime']);
    const tokens = num(b.tokens_seen);
    return {
      phase,
      samplesPerS: num(b['train/train_samples_per_second']),
      tokensPerS: tokens !== null && runtime !== null && runtime > 0 ? tokens / runtime : null,
      runtimeS: runtime,
    };
  });
}

/** Wall seconds: summary.json's, else finished − started, else (still running) so far. */
function wallSeconds(s: StageData): { secs: number | null; soFar: boolean } {
  const w = num(s.summary?.wall_s);
  if (w !== null) return { secs: w, soFar: false };
  const started = s.record?.started ? Date.parse(s.record.started) : NaN;
  const finished = s.record?.finished ? Date.parse(s.record.finished) : NaN;
  if (Number.isFinite(started) && Number.isFinite(finished)) return { secs: (finished - started) / 1000, soFar: false };
  if (Number.isFinite(started) && s.record?.status === 'running') return { secs: (Date.now() - started) / 1000, soFar: true };
  return { secs: null, soFar: false };
}

function timingRows(runs: readonly RunData[], stages: readonly (StageData | undefined)[]): [string, ...Cell[]][] {
  const each = (f: (s: StageData, r: RunData) => Cell): Cell[] => stages.map((s, i) => (s === undefined ? null : f(s, runs[i]!)));
  const rows: [string, ...Cell[]][] = [
    ['started', ...each((s) => s.record?.started)],
    ['finished', ...each((s) => s.record?.finished)],
    ['wall time', ...each((s) => {
      const w = wallSeconds(s);
      return w.secs === null ? null : `${duration(w.secs)}${w.soFar ? ' so far' : ''}`;
    })],
    ['steps', ...each((s) => s.record?.steps ?? lastStep(s))],
    ['metric records', ...each((s) => s.metrics.length)],
  ];
  const phases = [...new Set(stages.flatMap((s) => throughput(s?.summary ?? null).map((t) => t.phase)))];
  for (const phase of phases) {
    const suffix = phase ? ` (${phase})` : '';
    const pick = (s: StageData) => throughput(s.summary).find((t) => t.phase === phase);
    rows.push([`samples/s${suffix}`, ...each((s) => pick(s)?.samplesPerS)]);
    rows.push([`tokens/s${suffix}`, ...each((s) => pick(s)?.tokensPerS)]);
    rows.push([`trainer runtime${suffix}`, ...each((s) => duration(pick(s)?.runtimeS))]);
  }
  const sidecar = (k: string) => each((s) => (isObj(s.summary?.sidecar) && typeof s.summary.sidecar[k] === 'string' ? s.summary.sidecar[k] : null));
  if (stages.some((s) => isObj(s?.summary?.sidecar) && 'device' in s.summary.sidecar)) rows.push(['device', ...sidecar('device')], ['adapter mode', ...sidecar('adapter_mode')]);
  rows.push(
    ['started from', ...each((s, r) => (s.record?.input_adapter ? pathCell(s.record.input_adapter, r.dir) : `base model ${r.record.config?.model?.id ?? ''}`))],
    ['resumed from', ...each((s, r) => pathCell(s.record?.resumed_from, r.dir))],
    ['output adapter', ...each((s, r) => pathCell(s.record?.output_adapter, r.dir))],
  );
  return rows;
}

const lastStep = (s: StageData): number | null => (s.metrics.length > 0 ? s.metrics[s.metrics.length - 1]!.step : null);

function alertsList(alerts: readonly Alert[]): string {
  const items = alerts.map((a) => {
    const sev = ['error', 'warning', 'info'].includes(a.severity) ? a.severity : 'warning';
    return `<li>${badge(a.severity, sev).html} ${a.step !== null ? `<span class="muted">step ${esc(a.step)}</span> ` : ''}<code>${esc(a.rule)}</code> ${esc(a.message)}${a.hint ? `<div class="hint">hint: ${esc(a.hint)}</div>` : ''}</li>`;
  });
  return `<ul class="alerts">${items.join('')}</ul>`;
}

function chartFigure(c: Chart): string {
  const gaps = c.series.reduce((n, s) => n + s.points.filter((p) => typeof p.y !== 'number' || !Number.isFinite(p.y)).length, 0);
  const caption = gaps > 0 ? `${gaps} non-finite or empty value${gaps === 1 ? '' : 's'} (NaN/inf) shown as gaps, marked red on the axis` : '';
  return `<figure class="chart-card">${renderChart(c)}${caption ? `<figcaption>${esc(caption)}</figcaption>` : ''}</figure>`;
}

function samplesTable(s: StageData): string {
  if (s.samples.length === 0) return '<p class="note">no samples recorded</p>';
  const shown = s.samples.slice(0, SAMPLES_SHOWN);
  const text = (t: string) => raw(`<div class="text">${esc(t)}</div>`);
  const more = s.samples.length > shown.length ? `<p class="note">first ${shown.length} of ${s.samples.length} samples</p>` : '';
  const bad = s.badSampleLines > 0 ? `<p class="note">${s.badSampleLines} unreadable line(s) in samples.jsonl skipped</p>` : '';
  return table(['prompt', 'before training', 'after training'], shown.map((x) => [text(x.prompt), text(x.before), text(x.after)]), 'samples') + more + bad;
}

/** The `sidecar` block of summary.json, flattened to dot paths (nested phases included). */
function flatten(v: unknown, prefix = ''): [string, unknown][] {
  if (!isObj(v)) return [[prefix, v]];
  return Object.entries(v).flatMap(([k, x]) => flatten(x, prefix ? `${prefix}.${k}` : k));
}

export function renderStage(name: StageName, runs: readonly RunData[]): string {
  const stages = runs.map((r) => r.stages.find((s) => s.name === name));
  const labels = runLabels(runs);
  const two = runs.length > 1;
  const out: string[] = [];
  const statuses = stages.map((s, i) => `${two ? `${esc(labels[i])} ` : ''}${badge(s?.record?.status ?? 'not run', s?.record?.status ?? 'pending').html}`);
  out.push(`<section class="stage" id="stage-${esc(name)}" data-stage="${esc(name)}"><h2>${esc(name)} ${statuses.join(' ')}</h2>`);

  stages.forEach((s, i) => {
    const who = two ? `${labels[i]}: ` : '';
    const r = runs[i]!;
    if (s?.record?.error) out.push(`<div class="errorbox"><b>${esc(who)}error [${esc(s.record.error.code)}]</b>\n${esc(s.record.error.message)}</div>`);
    if (s?.record?.status === 'running') out.push(`<p class="note">${esc(who)}${r.abandoned ? 'marked running, but no live process holds the run (crashed or killed): showing what was recorded' : 'still running: this report shows what had been recorded when it was written'}</p>`);
    if (s !== undefined && s.metrics.length === 0) out.push(`<p class="note">${esc(who)}no metrics recorded yet</p>`);
    if (s !== undefined && s.badMetricLines > 0) out.push(`<p class="note">${esc(who)}${s.badMetricLines} line(s) of metrics.jsonl are not metric records and were skipped</p>`);
  });

  const alerts = stages.map((s) => s?.alerts ?? []);
  if (alerts.some((a) => a.length > 0) || stages.some((s) => (s?.badAlertLines ?? 0) > 0)) {
    out.push('<h3>Alerts</h3>');
    stages.forEach((s, i) => {
      if (s === undefined) return;
      if (two) out.push(`<p>${runHeaders(runs)![i]!.html}</p>`);
      out.push(s.alerts.length > 0 ? alertsList(s.alerts) : '<p class="note">no alerts</p>');
      if (s.badAlertLines > 0) out.push(`<p class="note">${s.badAlertLines} unreadable line(s) in alerts.jsonl skipped</p>`);
    });
  }

  const metricRuns: RunMetrics[] = stages.flatMap((s, i) =>
    s === undefined ? [] : [{ run: runs[i]!.record.id, label: labels[i]!, dashed: i > 0, palette: i === 0 ? PALETTE_A : PALETTE_B, metrics: s.metrics }],
  );
  const charts = stageCharts(name, metricRuns);
  const grid = (cs: readonly Chart[]) => `<div class="charts">${cs.map(chartFigure).join('')}</div>`;
  // Timings sit in the first cell of the key-metrics grid, so a stage's headline fits one screen.
  const timings = `<div class="card"><h3>Timings and lineage</h3>${kvTable(timingRows(runs, stages), runHeaders(runs))}</div>`;
  out.push(`<div class="charts">${timings}${charts.key.map(chartFigure).join('')}</div>`);
  if (charts.other.length > 0) {
    // With no key metric recorded (an unusual trainer, the fake sidecar), the others are all there is.
    out.push(`<details${charts.key.length === 0 ? ' open' : ''}><summary>${charts.key.length > 0 ? 'Other metrics' : 'Metrics'} (${charts.other.length} chart${charts.other.length === 1 ? '' : 's'})</summary>${grid(charts.other)}</details>`);
  }
  if (charts.scalars.length > 0) {
    const rows = charts.scalars.map((x) => [code(x.key), ...x.values.map((v) => (v === undefined ? null : v === null ? 'null' : fmtNum(v)))] as Cell[]);
    out.push(`<details><summary>Values recorded once (${charts.scalars.length})</summary>${table(['metric', ...(two ? labels : ['value'])], rows)}</details>`);
  }

  out.push('<h3>Samples before / after</h3>');
  if (two) out.push(`<div class="cols">${stages.map((s, i) => `<div><p>${runHeaders(runs)![i]!.html}</p>${s ? samplesTable(s) : '<p class="note">stage not in this run</p>'}</div>`).join('')}</div>`);
  else out.push(stages[0] ? samplesTable(stages[0]) : '');

  const sidecars = stages.map((s) => (isObj(s?.summary?.sidecar) ? flatten(s.summary.sidecar) : []));
  if (sidecars.some((x) => x.length > 0)) {
    const keys = [...new Set(sidecars.flatMap((x) => x.map(([k]) => k)))];
    const rows = keys.map((k) => [code(k), ...sidecars.map((x) => {
      const hit = x.find(([kk]) => kk === k);
      return hit === undefined ? null : typeof hit[1] === 'number' ? fmtNum(hit[1]) : typeof hit[1] === 'string' ? hit[1] : JSON.stringify(hit[1]);
    })] as Cell[]);
    out.push(`<details><summary>Trainer summary (summary.json)</summary>${table(['field', ...(two ? labels : ['value'])], rows)}</details>`);
  }
  out.push('</section>');
  return out.join('\n');
}
