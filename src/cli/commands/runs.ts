import type { Command } from 'commander';
import { listRunsDetailed, loadRun, markInterruptedIfStale, runDir, type RunRecord } from '../../artifacts/index.js';
import { STAGES } from '../../config/schema.js';
import type { CliIO } from '../io.js';
import { staleness } from '../../pipeline/lineage.js';
import { inert } from '../../ui/inert.js';
import { describeRun } from '../../ui/show.js';
import { addConfigOptions, addRunsDirOption, type RunsDirFlags, runsDirFor } from '../options.js';

const stageCell = (r: RunRecord) => {
  const lineage = staleness(r);
  return STAGES.filter((s) => r.stages_selected.includes(s) || r.stages[s])
    .map((s) => `${s}:${r.stages[s]?.status ?? 'pending'}${lineage[s]?.stale ? '(stale)' : ''}`)
    .join(' ');
};

export function registerRuns(program: Command, io: CliIO): void {
  addRunsDirOption(addConfigOptions(program.command('runs')))
    .description('list runs, newest first, with the status of each stage')
    .option('--json', 'print as JSON')
    .action((flags: RunsDirFlags & { json?: boolean }) => {
      const dir = runsDirFor(flags, io.cwd);
      // A run left "running" by a dead process shows as interrupted.
      let { runs, broken } = listRunsDetailed(dir);
      if (runs.some((r) => r.status === 'running' && markInterruptedIfStale(runDir(dir, r.id)))) ({ runs, broken } = listRunsDetailed(dir));
      if (flags.json) return io.out(`${JSON.stringify({ runs: runs.map((r) => ({ ...r, lineage: staleness(r) })), broken }, null, 2)}\n`);
      if (runs.length === 0 && broken.length === 0) return io.out(`no runs in ${dir}\n`);
      // Every string comes from a run.json that may have been shared or downloaded: made inert.
      for (const r of runs) io.out(`${inert(`${r.id}  ${String(r.status).padEnd(11)}  ${(r.preset ?? '-').padEnd(6)}  ${stageCell(r)}`)}\n`);
      for (const b of broken) io.err(`warning: ${inert(`${b.dir}: ${b.reason}`)}\n`);
    });

  addRunsDirOption(addConfigOptions(program.command('show')))
    .description("print one run's summary: config origin, stages, metrics, adapters and lineage")
    .argument('[run]', 'run id or "latest"', 'latest')
    .option('--json', 'print run.json')
    .action((run: string, flags: RunsDirFlags & { json?: boolean }) => {
      const runsDir = runsDirFor(flags, io.cwd);
      const { dir } = loadRun(runsDir, run);
      markInterruptedIfStale(dir);
      const { record } = loadRun(runsDir, run);
      // JSON escapes control characters itself; the text view is made inert line by line.
      io.out(flags.json ? `${JSON.stringify({ ...record, lineage: staleness(record) }, null, 2)}\n` : describeRun(dir, record).split('\n').map(inert).join('\n'));
    });
}
