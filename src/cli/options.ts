// Flags shared by commands that resolve a config.
import { type Command, Option } from 'commander';
import type { ResolveOptions } from '../config/resolve.js';

const collect = (value: string, previous: string[] = []) => [...previous, value];

export function addConfigOptions(cmd: Command): Command {
  return cmd
    .option('-p, --preset <name>', 'start from a preset (see `posttrain presets`)')
    .option('-c, --config <file>', 'YAML or JSON config file, applied over the preset')
    .addOption(new Option('-s, --set <key=value>', 'override one value by dot path; repeatable; values parse as JSON, else string').argParser(collect));
}

export interface ConfigFlags {
  preset?: string;
  config?: string;
  set?: string[];
}

export const toResolveOptions = (flags: ConfigFlags): ResolveOptions => ({
  preset: flags.preset,
  configFile: flags.config,
  set: flags.set ?? [],
});
