// The whole report page: header, run provenance, config changes, lineage, data, then one section
// per stage. Self-contained: inline CSS, inline SVG, no script, and a Content-Security-Policy that
// forbids every fetch and every script, so even a string that slipped past escaping could neither
// run nor phone home.
import type { RunData } from './collect.js';
import { configChanges, diffValues, showValue } from './diff.js';
import { esc } from './escape.js';
import { badge, type Cell, code, kvTable, pathCell, raw, runHeaders, runLabels, table } from './html.js';
import { renderStage } from './stage.js';
import { CSS } from './style.js';
import { STAGES, type StageName } from '../config/schema.js';
import type { RunRecord } from '../artifacts/index.js';
import { type Staleness, staleness } from '../pipeline/lineage.js';

const CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'";

function header(runs: readonly RunData[], generated: string, version: string): string {
  const [a, b] = runs;
  const title = b ? `${a!.record.id} vs ${b.record.id}` : a!.record.id;
  const statuses = runs.map((r, i) => `${b ? `${runLabels(runs)[i]} ` : ''}${badge(r.record.status).html}${r.abandoned ? ' <span class="muted">(no live process)</span>' : ''}`).join(' &nbsp; ');
  const names = [...new Set(runs.flatMap((r) => r.stages.map((s) => s.name)))];
  const order = STAGES.filter((s) => names.includes(s));
  const nav = order.map((s) => `<a href="#stage-${esc(s)}">${esc(s)}</a>`).join('');
  return `<header class="top"><div class="inner"><h1>posttrain report — ${esc(title)}</h1><div class="sub">${statuses} &nbsp;·&nbsp; generated ${esc(generated)} by posttrain ${esc(version)}</div><nav class="stages"><a href="#run">run</a><a href="#config">config</a><a href="#lineage">lineage</a><a href="#data">data</a>${nav}</nav></div></header>`;
}

function provenance(r: RunData): Cell {
  const parts = [r.record.preset ? `preset ${r.record.preset}` : null, r.record.config_file, ...(r.record.overrides ?? []).map((o) => `--set ${o}`)].filter((x): x is string => Boolean(x));
  return parts.length > 0 ? raw(parts.map((p) => `<code>${esc(p)}</code>`).join(' ← ')) : 'schema defaults';
}

function runSection(runs: readonly RunData[]): string {
  const each = (f: (r: RunData) => Cell): Cell[] => runs.map(f);
  const rows: [string, ...Cell[]][] = [
    ['run id', ...each((r) => code(r.record.id))],
    ['status', ...each((r) => raw(`${badge(r.record.status).html}${r.abandoned ? ' <span class="muted">marked running, but no live process holds it</span>' : ''}`))],
    ['folder', ...each((r) => pathCell(r.dir))],
    ['created', ...each((r) => r.record.created)],
    ['updated', ...each((r) => r.record.updated)],
    ['config', ...each(provenance)],
    ['stages selected', ...each((r) => (r.record.stages_selected ?? []).join(' → '))],
    ['model', ...each((r) => {
      const m = r.record.config?.model;
      return m ? raw(`<code>${esc(m.id)}</code> <span class="muted">${esc(m.adapter?.mode ?? '')} r=${esc(m.adapter?.r ?? '')} α=${esc(m.adapter?.alpha ?? '')}</span>`) : null;
    })],
    ['device / seed', ...each((r) => (r.record.config?.runtime ? `${r.record.config.runtime.device} / ${r.record.config.runtime.seed}` : null))],
  ];
  if (runs.some((r) => r.record.fake_sidecar)) rows.push(['note', ...each((r) => (r.record.fake_sidecar ? 'made with the fake sidecar (tests): metrics are scripted, nothing was trained' : null))]);
  rows.push(['versions', ...each((r) => raw(Object.entries(r.record.versions ?? {}).map(([k, v]) => `<span class="muted">${esc(k)}</span> ${esc(v)}`).join(' &nbsp;·&nbsp; ')))]);
  return `<section id="run"><h2>Run</h2>${kvTable(rows, runHeaders(runs))}</section>`;
}

function configSection(runs: readonly RunData[]): string {
  const out: string[] = ['<section id="config"><h2>Config</h2>'];
  runs.forEach((r, i) => {
    const { baseline, changes, newer } = configChanges(r.record);
    const who = runs.length > 1 ? `${runHeaders(runs)![i]!.html} ` : '';
    out.push(`<h3>${who}changed from ${esc(baseline.label)} (${changes.length})</h3>`);
    if (baseline.note) out.push(`<p class="note">${esc(baseline.note)}</p>`);
    if (newer > 0) out.push(`<p class="note">${newer} setting${newer === 1 ? '' : 's'} of this posttrain version did not exist when the run was made; not listed</p>`);
    out.push(changes.length === 0 ? `<p class="note">nothing: the run used ${esc(baseline.label)} as is</p>` : table(['setting', baseline.label, 'this run'], changes.map((c) => [code(c.path), code(showValue(c.from)), code(showValue(c.to))]), 'diff'));
  });
  if (runs.length === 2) {
    const changes = diffValues(runs[0]!.record.config, runs[1]!.record.config);
    out.push(`<h3>A → B (${changes.length})</h3>`);
    out.push(changes.length === 0 ? '<p class="note">the two runs have the same config</p>' : table(['setting', 'A', 'B'], changes.map((c) => [code(c.path), code(showValue(c.from)), code(showValue(c.to))]), 'diff'));
  }
  out.push('</section>');
  return out.join('\n');
}

/** base model → each stage's adapter, in order, with where each stage started from. */
function lineageSection(runs: readonly RunData[]): string {
  const out: string[] = ['<section id="lineage"><h2>Lineage</h2>'];
  runs.forEach((r, i) => {
    if (runs.length > 1) out.push(`<p>${runHeaders(runs)![i]!.html}</p>`);
    const nodes = [`<div class="node"><b>base model</b><span class="mono">${esc(r.record.config?.model?.id ?? '?')}</span></div>`];
    const stale = lineageOf(r.record);
    for (const s of r.stages) {
      const rec = s.record;
      const why = stale[s.name as StageName];
      const from = rec?.input_adapter ? `from ${pathCell(rec.input_adapter, r.dir)!.html}` : 'from the base model';
      const resumed = rec?.resumed_from ? `<br>resumed from ${pathCell(rec.resumed_from, r.dir)!.html}` : '';
      const adapter = rec?.output_adapter ? pathCell(rec.output_adapter, r.dir)!.html : '<span class="muted">no adapter</span>';
      const staleNote = why?.stale ? `<div class="stale">stale: ${esc(why.reason ?? '')}</div>` : '';
      nodes.push(`<div class="node"><b>${esc(s.name)} ${badge(rec?.status ?? 'pending', rec?.status ?? 'pending').html}${why?.stale ? ` ${badge('stale', 'failed').html}` : ''}</b>${adapter}<div class="muted">${from}${resumed}</div>${staleNote}</div>`);
    }
    const rm = r.stages.find((s) => s.name === 'rlhf')?.summary?.sidecar as Record<string, unknown> | undefined;
    const rmPath = typeof (rm?.reward_model as Record<string, unknown> | undefined)?.path === 'string' ? ((rm!.reward_model as Record<string, unknown>).path as string) : null;
    out.push(`<div class="flow">${nodes.join('<span class="arrow">→</span>')}</div>`);
    if (rmPath) out.push(`<p class="muted">RLHF reward model (trained from the base): ${pathCell(rmPath, r.dir)!.html}</p>`);
  });
  out.push('</section>');
  return out.join('\n');
}

function dataSection(runs: readonly RunData[]): string {
  const two = runs.length > 1;
  const labels = runLabels(runs);
  const rows: Cell[][] = runs.flatMap((r, i) =>
    Object.entries(r.record.data ?? {}).map(([target, d]) => [
      ...(two ? [labels[i]!] : []),
      code(target),
      pathCell(d.source),
      d.format,
      d.rows,
      d.skipped,
      d.bytes,
      raw(`<code title="${esc(d.sha256)}">${esc(String(d.sha256).slice(0, 16))}…</code>`),
    ]),
  );
  const body = rows.length === 0 ? '<p class="note">no data recorded</p>' : table([...(two ? ['run'] : []), 'target', 'source', 'format', 'rows', 'skipped', 'bytes', 'sha256'], rows);
  return `<section id="data"><h2>Data</h2>${body}</section>`;
}

export interface PageOptions {
  /** When the report was made (ISO); the caller passes it so output is reproducible in tests. */
  generated: string;
  version: string;
}

/** The report page for one run, or two overlaid (the first is the main run). */
export function renderPage(runs: readonly RunData[], opts: PageOptions): string {
  if (runs.length < 1 || runs.length > 2) throw new RangeError(`a report covers one or two runs, not ${runs.length}`);
  const names = new Set(runs.flatMap((r) => r.stages.map((s) => s.name)));
  const stages = STAGES.filter((s) => names.has(s)).map((s) => renderStage(s, runs));
  const title = runs.map((r) => r.record.id).join(' vs ');
  return [
    '<!doctype html>',
    '<html lang="en"><head><meta charset="utf-8">',
    `<meta http-equiv="Content-Security-Policy" content="${CSP}">`,
    '<meta name="viewport" content="width=device-width, initial-scale=1">',
    '<meta name="referrer" content="no-referrer">',
    `<title>posttrain report — ${esc(title)}</title>`,
    `<style>${CSS}</style></head><body>`,
    header(runs, opts.generated, opts.version),
    '<main>',
    runSection(runs),
    configSection(runs),
    lineageSection(runs),
    dataSection(runs),
    stages.length > 0 ? stages.join('\n') : '<section><p class="note">no stages recorded</p></section>',
    `<footer>posttrain ${esc(opts.version)} · self-contained: no scripts, nothing fetched</footer>`,
    '</main></body></html>',
    '',
  ].join('\n');
}

/** Staleness of a run read leniently (a partial run.json has no lineage to show). */
function lineageOf(record: unknown): Partial<Record<StageName, Staleness>> {
  try {
    return staleness(record as RunRecord);
  } catch {
    return {};
  }
}
