import type { Command } from 'commander';
import { resolveConfig } from '../../config/resolve.js';
import type { CliIO } from '../io.js';
import { addConfigOptions, type ConfigFlags, toResolveOptions } from '../options.js';

export function registerConfig(program: Command, io: CliIO): void {
  addConfigOptions(program.command('config'))
    .description('print the resolved config (preset ← file ← --set) as JSON, after every check')
    .addHelpText(
      'after',
      `
Examples:
  $ posttrain config --preset smoke
  $ posttrain config --preset gpu --config mine.yaml --set stages.grpo.num_generations=4`,
    )
    .action((flags: ConfigFlags) => {
      const { config } = resolveConfig({ ...toResolveOptions(flags), cwd: io.cwd });
      io.out(`${JSON.stringify(config, null, 2)}\n`);
    });
}
