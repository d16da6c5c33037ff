// The human form of a ValidationReport (the JSON form is the report object itself).
//
//   data/train.jsonl:3: prompt: expected a string, got number
//   data/train.jsonl:7: not valid JSON: Unexpected end of JSON input
//   10 rows: 8 ok, 2 bad (bad_json ×1, wrong_type ×1)
//
// `file:line:` first so editors and terminals can jump to the row.
import type { Reason, RowProblem, ValidationReport } from './types.js';

export function formatReport(r: ValidationReport): string {
  const lines = r.problems.map((p) => formatProblem(r.file, p));
  lines.push(summaryLine(r));
  const dup = duplicatesLine(r);
  if (dup) lines.push(dup);
  return lines.join('\n');
}

/** `note: 3 rows repeat an earlier row (line 9 = line 2, …); …`, or null without duplicates. */
export function duplicatesLine(r: ValidationReport): string | null {
  const d = r.duplicates;
  if (!d || d.rows === 0) return null;
  const shown = d.examples.map((e) => `line ${e.line} = line ${e.same_as}`).join(', ');
  return (
    `note: ${d.rows} ${d.rows === 1 ? 'row repeats' : 'rows repeat'} an earlier row exactly (${shown}${d.rows > d.examples.length ? ', …' : ''}); ` +
    'they train as often as they appear, and a held-out split keeps rows with the same prompt on one side, so they never score themselves'
  );
}

export function formatProblem(file: string, p: RowProblem): string {
  return p.field === null ? `${file}:${p.line}: ${p.message}` : `${file}:${p.line}: ${p.field}: ${p.message}`;
}

/** `N rows: X ok, Y bad (reason ×n, ...)`, most frequent reason first. */
export function summaryLine(r: ValidationReport): string {
  const reasons = (Object.entries(r.counts) as [Reason, number][])
    .sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]))
    .map(([reason, n]) => `${reason} ×${n}`);
  const tail = reasons.length > 0 ? ` (${reasons.join(', ')})` : '';
  return `${r.rows} ${r.rows === 1 ? 'row' : 'rows'}: ${r.ok} ok, ${r.bad} bad${tail}`;
}
