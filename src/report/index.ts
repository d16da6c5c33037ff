// `posttrain report`: one self-contained HTML file per run (or per pair of runs, overlaid).
// collect.ts reads the run folder (leniently), charts.ts picks the charts, svg.ts draws them,
// diff.ts compares configs, stage.ts and page.ts build the HTML.
import { basename, join } from 'node:path';
import { writeFileAtomic } from '../artifacts/index.js';
import { PACKAGE_VERSION } from '../paths.js';
import { collectRun, type RunData } from './collect.js';
import { renderPage } from './page.js';
import type { RunRecord } from '../artifacts/index.js';

export { collectRun, type RunData } from './collect.js';
export { renderPage } from './page.js';

export interface LoadedRun {
  dir: string;
  record: RunRecord;
}

/** Where a report goes by default: `<run>/report.html`, or `<run a>/compare-<run b id>.html`. */
export function defaultReportPath(a: LoadedRun, b?: LoadedRun): string {
  return join(a.dir, b ? `compare-${basename(b.dir)}.html` : 'report.html');
}

/** Build the report HTML for one run or two. */
export function buildReport(runs: readonly LoadedRun[], generated = new Date().toISOString()): { html: string; data: RunData[] } {
  const data = runs.map((r) => collectRun(r.dir, r.record));
  return { html: renderPage(data, { generated, version: PACKAGE_VERSION }), data };
}

/** Build and write atomically (a reader never sees half a report); returns the path. */
export function writeReport(runs: readonly LoadedRun[], out: string): string {
  writeFileAtomic(out, buildReport(runs).html);
  return out;
}
