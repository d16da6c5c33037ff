// Small HTML builders shared by the page and stage sections. Every value from a run goes through
// esc(); the helpers below take either run text (escaped here) or markup that was built by them.
import { relative, sep } from 'node:path';
import { esc, fmtNum } from './escape.js';
import type { RunData } from './collect.js';

/** Markup that is already safe (built by these helpers). Plain strings are escaped. */
export class Html {
  constructor(readonly html: string) {}
  toString(): string {
    return this.html;
  }
}
export type Cell = Html | string | number | null | undefined;

export const raw = (html: string): Html => new Html(html);

export function cell(v: Cell): string {
  if (v instanceof Html) return v.html;
  if (v === null || v === undefined || v === '') return '<span class="muted">—</span>';
  if (typeof v === 'number') return esc(fmtNum(v));
  return esc(v);
}

export const badge = (text: string, cls = text): Html => raw(`<span class="badge ${esc(cls)}">${esc(text)}</span>`);
export const code = (text: string): Html => raw(`<code>${esc(text)}</code>`);

/** A path, shown relative to the run folder when inside it; the full path on hover. */
export function pathCell(p: string | null | undefined, runDir?: string): Html | null {
  if (p === null || p === undefined || p === '') return null;
  const rel = runDir !== undefined ? relative(runDir, p) : '';
  const shown = runDir !== undefined && rel !== '' && !rel.startsWith('..') && !rel.startsWith(sep) ? rel : p;
  return raw(`<code class="path" title="${esc(p)}">${esc(shown)}</code>`);
}

/** A key/value table: one row per label, one value column per run (1 or 2). */
export function kvTable(rows: readonly [string, ...Cell[]][], headers?: readonly Cell[]): string {
  const head = headers ? `<thead><tr><th></th>${headers.map((h) => `<th>${cell(h)}</th>`).join('')}</tr></thead>` : '';
  const body = rows.map(([label, ...vals]) => `<tr><th>${esc(label)}</th>${vals.map((v) => `<td>${cell(v)}</td>`).join('')}</tr>`).join('');
  return `<table class="kv">${head}<tbody>${body}</tbody></table>`;
}

/** A table with a header row. */
export function table(headers: readonly string[], rows: readonly Cell[][], cls = ''): string {
  const head = `<thead><tr>${headers.map((h) => `<th>${esc(h)}</th>`).join('')}</tr></thead>`;
  const body = rows.map((r) => `<tr>${r.map((v) => `<td${typeof v === 'number' ? ' class="num"' : ''}>${cell(v)}</td>`).join('')}</tr>`).join('');
  return `<table${cls ? ` class="${esc(cls)}"` : ''}>${head}<tbody>${body}</tbody></table>`;
}

/** Run labels for a two-run report ("A", "B"), or none for one run. */
export function runLabels(runs: readonly RunData[]): string[] {
  return runs.length > 1 ? runs.map((_, i) => String.fromCharCode(65 + i)) : [''];
}

/** Column headers naming each run in a two-run report; undefined for one run. */
export function runHeaders(runs: readonly RunData[]): Html[] | undefined {
  if (runs.length < 2) return undefined;
  return runs.map((r, i) => raw(`${badge(String.fromCharCode(65 + i), i === 0 ? 'run-a' : 'run-b').html} <code>${esc(r.record.id)}</code>`));
}

/** Seconds as `12.3 s` or `4 min 05 s`. */
export function duration(s: number | null | undefined): string | null {
  if (s === null || s === undefined || !Number.isFinite(s)) return null;
  if (s < 60) return `${Number(s.toFixed(s < 10 ? 2 : 1))} s`;
  const m = Math.floor(s / 60);
  const h = Math.floor(m / 60);
  const sec = String(Math.round(s % 60)).padStart(2, '0');
  return h > 0 ? `${h} h ${String(m % 60).padStart(2, '0')} min` : `${m} min ${sec} s`;
}
