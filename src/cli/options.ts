// Flags shared by commands that resolve a config.
import { type Command, Option } from 'commander';
import type { ResolveOptions } from '../config/resolve.js';
import { HEALTH_RULES } from '../config/schema.js';
import { stopOnOverride } from '../pipeline/health.js';

const collect = (value: string, previous: string[] = []) => [...previous, value];

export function addConfigOptions(cmd: Command): Command {
  return cmd
    .option('-p, --preset <name>', 'start from a preset (see `posttrain presets`)')
    .option('-c, --config <file>', 'YAML or JSON config file, applied over the preset')
    .addOption(new Option('-s, --set <key=value>', 'override one value by dot path; repeatable; values parse as JSON, else string').argParser(collect));
}

/** `--stop-on` for the commands that train: makes health alerts fatal (monitor.stop_on). */
export function addMonitorOptions(cmd: Command): Command {
  return cmd.option('--stop-on <rules>', `health alerts that stop the stage (checkpoint kept, exit 1): comma list of ${HEALTH_RULES.join(', ')}, or all`);
}

export interface ConfigFlags {
  preset?: string;
  config?: string;
  set?: string[];
  stopOn?: string;
}

/** Flags → resolver input; --stop-on becomes one more --set (monitor.stop_on=[…]) after the user's. */
export const toResolveOptions = (flags: ConfigFlags): ResolveOptions => ({
  preset: flags.preset,
  configFile: flags.config,
  set: [...(flags.set ?? []), ...stopOnOverride(flags.stopOn)],
});
