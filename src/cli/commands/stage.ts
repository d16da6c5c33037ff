import type { Command } from 'commander';
import { loadRun, stageConfig } from '../../artifacts/index.js';
import type { Plain } from '../../config/layers.js';
import { type ResolvedConfig, resolveConfig } from '../../config/resolve.js';
import { STAGES, type StageName } from '../../config/schema.js';
import { didYouMean } from '../../config/suggest.js';
import { UsageError } from '../../errors.js';
import { Interrupt } from '../../pipeline/interrupt.js';
import { runStage } from '../../pipeline/run.js';
import { addProgressOptions, type ProgressFlags, selectProgress } from '../../ui/select.js';
import type { CliIO } from '../io.js';
import { addConfigOptions, addMonitorOptions, addRunsDirOption, type RunsDirFlags, runsDirFor, runsDirSet, toResolveOptions } from '../options.js';

interface StageFlags extends RunsDirFlags, ProgressFlags {
  run: string;
  resume?: boolean;
}

export function parseStage(name: string): StageName {
  if ((STAGES as readonly string[]).includes(name)) return name as StageName;
  throw new UsageError(`Unknown stage "${name}".${didYouMean(name, STAGES)}`, `Stages: ${STAGES.join(', ')}.`);
}

export function registerStage(program: Command, io: CliIO): void {
  addRunsDirOption(addProgressOptions(addMonitorOptions(addConfigOptions(
    program
      .command('stage')
      .description("run one stage of an existing run (from the previous stage's adapter), or resume it from its newest complete checkpoint")
      .argument('<name>', `stage: ${STAGES.join(', ')}`),
  ))))
    .option('-r, --run <id>', 'run id, or "latest"', 'latest')
    .option('--resume', 'continue from the newest complete checkpoint')
    .addHelpText(
      'after',
      `
Without --preset/--config the stage's own config (the run's, unless an earlier \`stage\` changed it)
is used, with any --set/--stop-on applied over it. With --preset/--config the new config replaces
it for this stage. Either way the change is recorded on the stage in run.json; the run's config
stays as it was. With --resume only changes the
checkpoint survives are accepted (e.g. max_steps).

Examples:
  $ posttrain stage grpo --resume
  $ posttrain stage dpo --run 20261125-101500-3f2a --set stages.dpo.beta=0.2
  $ posttrain stage sft --resume --set stages.sft.max_steps=60`,
    )
    .action(async (name: string, flags: StageFlags) => {
      const stage = parseStage(name);
      // The run is looked up where the config flags put runs (or --runs-dir); a new config then
      // keeps that folder: a stage never trains into a run of another runs folder.
      const runsDir = runsDirFor(flags, io.cwd);
      const opts = toResolveOptions(flags);
      const set = [...(opts.set ?? []), runsDirSet(runsDir)];
      let override: ResolvedConfig | null = null;
      if (flags.preset || flags.config) override = resolveConfig({ ...opts, set, cwd: io.cwd });
      else if ((opts.set ?? []).length > 0) {
        // Only --set / --stop-on: layer them over the run's own config, keeping its provenance.
        const { record } = loadRun(runsDir, flags.run);
        const base = { source: `run ${record.id}`, baseDir: io.cwd, data: stageConfig(record, stage) as unknown as Plain };
        override = { ...resolveConfig({ ...opts, set, base, cwd: io.cwd }), preset: record.preset, configFile: record.config_file };
      }
      // What the user asked for; the runs_dir pin is bookkeeping, not an override.
      if (override) override.overrides = [...(opts.set ?? [])];
      const progress = selectProgress(flags, io);
      const interrupt = new Interrupt();
      // Through the renderer: a live view keeps it above its block, --json makes it an event.
      const stop = interrupt.listen((text) => progress.note(text.trim()));
      try {
        const { runDir } = await runStage({ runsDir, run: flags.run, stage, resume: Boolean(flags.resume), override }, io, interrupt, progress);
        // The run folder for scripts; with --json the run_end event carries it instead.
        if (!flags.json) io.out(`${runDir}\n`);
      } finally {
        stop();
      }
    });
}
