import type { Command } from 'commander';
import { formatDoctor, runDoctor } from '../../doctor/index.js';
import { RunFailedError } from '../../errors.js';
import type { CliIO } from '../io.js';

export function registerDoctor(program: Command, io: CliIO): void {
  program
    .command('doctor')
    .description("check this machine: node, the build, the sidecar's Python and packages, GPU, disk; each problem with its fix")
    .option('--python <path>', "the sidecar's Python to check (default: POSTTRAIN_PYTHON, else the project .venv)")
    .option('--runs-dir <dir>', 'where runs go (for the free-disk check)', 'runs')
    .option('--json', 'print the checks as JSON')
    .addHelpText(
      'after',
      `
Examples:
  $ posttrain doctor
  $ posttrain doctor --python /opt/conda/bin/python --json

Exit code 0 when nothing failed (warnings allowed), 1 when any check failed.`,
    )
    .action(async (flags: { python?: string; runsDir: string; json?: boolean }) => {
      const report = await runDoctor({ python: flags.python, runsDir: flags.runsDir, cwd: io.cwd, env: io.env });
      io.out(flags.json ? `${JSON.stringify(report, null, 2)}\n` : formatDoctor(report));
      const failed = report.checks.filter((c) => c.status === 'fail');
      if (failed.length) {
        throw new RunFailedError(`${failed.length} check(s) failed: ${failed.map((c) => c.name).join(', ')}.`, 'Run the fix commands above, then `posttrain doctor` again.');
      }
    });
}
