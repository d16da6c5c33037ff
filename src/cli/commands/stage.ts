import { resolve } from 'node:path';
import type { Command } from 'commander';
import { resolveConfig } from '../../config/resolve.js';
import { STAGES, type StageName } from '../../config/schema.js';
import { didYouMean } from '../../config/suggest.js';
import { UsageError } from '../../errors.js';
import { Interrupt } from '../../pipeline/interrupt.js';
import { runStage } from '../../pipeline/run.js';
import type { CliIO } from '../io.js';
import { addConfigOptions, type ConfigFlags, toResolveOptions } from '../options.js';

interface StageFlags extends ConfigFlags {
  run: string;
  resume?: boolean;
  runsDir: string;
}

export function parseStage(name: string): StageName {
  if ((STAGES as readonly string[]).includes(name)) return name as StageName;
  throw new UsageError(`Unknown stage "${name}".${didYouMean(name, STAGES)}`, `Stages: ${STAGES.join(', ')}.`);
}

export function registerStage(program: Command, io: CliIO): void {
  addConfigOptions(
    program
      .command('stage')
      .description("run one stage of an existing run (from the previous stage's adapter), or resume it from its newest complete checkpoint")
      .argument('<name>', `stage: ${STAGES.join(', ')}`),
  )
    .option('-r, --run <id>', 'run id, or "latest"', 'latest')
    .option('--resume', 'continue from the newest complete checkpoint')
    .option('--runs-dir <dir>', 'folder holding the runs', 'runs')
    .addHelpText(
      'after',
      `
Without --preset/--config/--set the run's own resolved config is used. With them, the new config
replaces the run's; with --resume only changes the checkpoint survives are accepted (e.g. max_steps).

Examples:
  $ posttrain stage grpo --resume
  $ posttrain stage dpo --run 20261125-101500-3f2a --set stages.dpo.beta=0.2
  $ posttrain stage sft --resume --set stages.sft.max_steps=60`,
    )
    .action(async (name: string, flags: StageFlags) => {
      const stage = parseStage(name);
      const hasConfigFlags = Boolean(flags.preset || flags.config || (flags.set ?? []).length > 0);
      const override = hasConfigFlags ? resolveConfig({ ...toResolveOptions(flags), cwd: io.cwd }) : null;
      const interrupt = new Interrupt();
      const stop = interrupt.listen(io.err);
      try {
        const { runDir } = await runStage({ runsDir: resolve(io.cwd, flags.runsDir), run: flags.run, stage, resume: Boolean(flags.resume), override }, io, interrupt);
        io.out(`${runDir}\n`);
      } finally {
        stop();
      }
    });
}
