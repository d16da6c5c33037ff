import type { Command } from 'commander';
import { resolveConfig } from '../../config/resolve.js';
import { STAGES } from '../../config/schema.js';
import { Interrupt } from '../../pipeline/interrupt.js';
import { resumeRun, startRun } from '../../pipeline/run.js';
import { UsageError } from '../../errors.js';
import { addProgressOptions, type ProgressFlags, selectProgress } from '../../ui/select.js';
import type { CliIO } from '../io.js';
import { addConfigOptions, addMonitorOptions, addRunsDirOption, namesFlag, type RunsDirFlags, runsDirFor, runsDirSet, toResolveOptions } from '../options.js';

interface RunFlags extends RunsDirFlags, ProgressFlags {
  stages?: string;
  resume?: boolean;
  run?: string;
}

/** `--stages sft,dpo` → a runtime.stages override, with unknown names caught at the flag. */
export function stagesOverride(value: string | undefined): string[] {
  if (value === undefined) return [];
  const names = namesFlag('--stages', value, STAGES, {
    noun: 'stage',
    emptyHint: `Pass a comma-separated list of ${STAGES.join(', ')}.`,
    hint: `Stages: ${STAGES.join(', ')}.`,
  });
  return [`runtime.stages=${JSON.stringify(names)}`];
}

export function registerRun(program: Command, io: CliIO): void {
  addRunsDirOption(addProgressOptions(addMonitorOptions(addConfigOptions(program.command('run')))))
    .description('run the selected stages in order (sft → dpo → grpo → rlhf), each from the previous adapter')
    .option('--stages <list>', 'comma-separated subset of stages, e.g. sft,dpo')
    .option('--resume', "continue an existing run with its own config: resume the interrupted stage from its checkpoint, then every remaining or stale stage")
    .option('-r, --run <id>', 'with --resume: run id, or "latest" (default)')
    .addHelpText(
      'after',
      `
Examples:
  $ posttrain run --preset smoke
  $ posttrain run --preset gpu --stages sft,dpo
  $ posttrain run --config mine.yaml --set stages.grpo.max_steps=50
  $ posttrain run --preset gpu --stop-on kl_runaway,reward_std_zero
  $ posttrain run --preset smoke --json | jq -c 'select(.event == "metric")'
  $ posttrain run --resume                    the newest run: finish what is left, re-run what is stale`,
    )
    .action(async (flags: RunFlags) => {
      if (flags.run !== undefined && !flags.resume) throw new UsageError('--run names a run to continue; it goes with --resume.', 'posttrain run --resume --run <id>');
      if (flags.resume) {
        if (flags.preset || flags.config || flags.set?.length || flags.stages || flags.stopOn) {
          throw new UsageError(
            'run --resume continues a run with its own config; it takes no --preset, --config, --set, --stages or --stop-on.',
            'Change one stage with `posttrain stage <name> --run <id> --set …`, then `posttrain run --resume` re-runs what that made stale.',
          );
        }
        const progress = selectProgress(flags, io);
        const interrupt = new Interrupt();
        const stop = interrupt.listen((text) => progress.note(text.trim()));
        try {
          const { runDir } = await resumeRun({ runsDir: runsDirFor(flags, io.cwd), run: flags.run ?? 'latest' }, io, interrupt, progress);
          if (!flags.json) io.out(`${runDir}\n`);
        } finally {
          stop();
        }
        return;
      }
      const opts = toResolveOptions(flags);
      const pin = flags.runsDir === undefined ? [] : [runsDirSet(runsDirFor(flags, io.cwd))];
      const resolved = resolveConfig({ ...opts, set: [...(opts.set ?? []), ...stagesOverride(flags.stages), ...pin], cwd: io.cwd });
      const progress = selectProgress(flags, io);
      const interrupt = new Interrupt();
      // Through the renderer: a live view keeps it above its block, --json makes it an event.
      const stop = interrupt.listen((text) => progress.note(text.trim()));
      try {
        const { runDir } = await startRun(resolved, io, interrupt, progress);
        // The run folder for scripts; with --json the run_end event carries it instead.
        if (!flags.json) io.out(`${runDir}\n`);
      } finally {
        stop();
      }
    });
}
