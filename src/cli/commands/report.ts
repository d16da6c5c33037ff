import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Command } from 'commander';
import { loadRun } from '../../artifacts/index.js';
import { defaultReportPath, writeReport } from '../../report/index.js';
import type { CliIO } from '../io.js';
import { addConfigOptions, addRunsDirOption, type RunsDirFlags, runsDirFor } from '../options.js';

export function registerReport(program: Command, io: CliIO): void {
  addRunsDirOption(addConfigOptions(program.command('report')))
    .description('write a self-contained HTML report of a run (metric charts, config changes, lineage, timings, samples); two runs: overlaid')
    .argument('[run]', 'run id or "latest"', 'latest')
    .argument('[run-b]', 'a second run to overlay on the first')
    .option('-o, --out <file>', 'where to write the HTML (default: <run>/report.html, or <run>/compare-<run-b>.html)')
    .option('--open', 'print the file:// URL to open as well as the path')
    .addHelpText(
      'after',
      `
Examples:
  $ posttrain report                         the newest run → runs/<id>/report.html
  $ posttrain report 20260101-120000-ab12 latest --out compare.html
The file needs no network and runs no scripts; open it in any browser. Works on a run that is
still going or failed (it reports what was recorded); it never changes the run.`,
    )
    .action((run: string, runB: string | undefined, flags: RunsDirFlags & { out?: string; open?: boolean }) => {
      const runsDir = runsDirFor(flags, io.cwd);
      // Read-only: no lock, no "mark interrupted"; a running run is reported as it stands.
      const a = loadRun(runsDir, run);
      const b = runB === undefined ? undefined : loadRun(runsDir, runB);
      const out = flags.out ? resolve(io.cwd, flags.out) : defaultReportPath(a, b);
      writeReport(b ? [a, b] : [a], out);
      io.out(`${out}\n`);
      if (flags.open) io.out(`${pathToFileURL(out).href}\n`);
    });
}
