import type { Command } from 'commander';
import { resolveConfig } from '../../config/resolve.js';
import { EXIT, PosttrainError } from '../../errors.js';
import { formatPlan, memoryPlan } from '../../pipeline/memory-plan.js';
import type { CliIO } from '../io.js';
import { addConfigOptions, type ConfigFlags, toResolveOptions } from '../options.js';
import { stagesOverride } from './run.js';

export function registerPlan(program: Command, io: CliIO): void {
  addConfigOptions(program.command('plan'))
    .description("estimate each selected stage's peak memory (GPU, or RAM on CPU) from the model config, before anything loads")
    .option('--stages <list>', 'comma-separated subset of stages, e.g. sft,dpo')
    .option('--json', 'print the estimates as JSON')
    .addHelpText(
      'after',
      `
Examples:
  $ posttrain plan --preset gpu
  $ posttrain plan --preset gpu --set stages.sft.batch_size=32 --set data.sft.max_length=2048

Exit code 2 when a stage's estimate exceeds the free memory and runtime.memory_check is error
(the run would be refused the same way); the output names the settings that would make it fit.`,
    )
    .action(async (flags: ConfigFlags & { json?: boolean; stages?: string }) => {
      const opts = toResolveOptions(flags);
      const { config } = resolveConfig({ ...opts, set: [...(opts.set ?? []), ...stagesOverride(flags.stages)], cwd: io.cwd });
      const plan = await memoryPlan(config, config.runtime.stages, { cwd: io.cwd, env: io.env });
      io.out(flags.json ? `${JSON.stringify(plan, null, 2)}\n` : formatPlan(config, plan));
      const refused = plan.problems.filter((p) => p.code === 'memory_exceeds' && p.severity === 'error');
      if (refused.length) {
        throw new PosttrainError(`${refused.length} stage(s) would not fit: ${refused.map((p) => p.stage).join(', ')}.`, {
          exitCode: EXIT.usage,
          hint: 'Change one of the settings named above, or set runtime.memory_check warn to run anyway.',
        });
      }
    });
}
