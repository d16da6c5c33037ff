// Flags shared by commands that resolve a config.
import { type Command, Option } from 'commander';
import { resolve } from 'node:path';
import { type ResolveOptions, runsDirOfLayers } from '../config/resolve.js';
import { HEALTH_RULES } from '../config/schema.js';
import { didYouMean } from '../config/suggest.js';
import { UsageError } from '../errors.js';

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

/**
 * A comma-separated list flag (`--stages sft,dpo`, `--stop-on kl_runaway`): the names, each one
 * checked against those the flag accepts; empty or unknown is a usage error naming the flag.
 */
export function namesFlag(flag: string, value: string, known: readonly string[], words: { noun: string; emptyHint: string; hint: string }): string[] {
  const names = value.split(',').map((s) => s.trim()).filter(Boolean);
  if (names.length === 0) throw new UsageError(`${flag} is empty.`, words.emptyHint);
  for (const n of names) {
    if (!known.includes(n)) throw new UsageError(`${flag}: unknown ${words.noun} "${n}".${didYouMean(n, known)}`, words.hint);
  }
  return names;
}

const RULE_LIST = `${HEALTH_RULES.join(', ')}, or all`;

/** `--stop-on <rules>` as a `--set` override: the health rules (or `all`) that stop the stage when they fire. */
export function stopOnOverride(value: string | undefined): string[] {
  if (value === undefined) return [];
  const names = namesFlag('--stop-on', value, [...HEALTH_RULES, 'all'], {
    noun: 'health rule',
    emptyHint: `Pass a comma-separated list of health rules: ${RULE_LIST}.`,
    hint: `Rules: ${RULE_LIST}.`,
  });
  return [`monitor.stop_on=${JSON.stringify([...new Set(names)])}`];
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

/** `--runs-dir` for every command that reads or writes runs. */
export function addRunsDirOption(cmd: Command): Command {
  return cmd.option('--runs-dir <dir>', 'folder holding the runs (default: runtime.runs_dir of --preset/--config/--set, else ./runs)');
}

export interface RunsDirFlags extends ConfigFlags {
  runsDir?: string;
}

/**
 * Where runs are, one precedence for every command: --runs-dir, else runtime.runs_dir of the
 * command's --preset/--config/--set layers, else ./runs. A --runs-dir that contradicts a
 * runs_dir the config flags set is refused with both paths (one of them is a mistake).
 */
export function runsDirFor(flags: RunsDirFlags, cwd: string): string {
  const fromConfig = runsDirOfLayers({ ...toResolveOptions(flags), cwd });
  if (flags.runsDir === undefined) return fromConfig.dir;
  const dir = resolve(cwd, flags.runsDir);
  if (fromConfig.explicit && fromConfig.dir !== dir) {
    throw new UsageError(
      `--runs-dir ${dir} contradicts runtime.runs_dir ${fromConfig.dir} (from ${fromConfig.source}).`,
      'Drop one of the two: --runs-dir alone, or the config that sets runtime.runs_dir alone.',
    );
  }
  return dir;
}

/** The --set that pins runtime.runs_dir to the folder runsDirFor chose (JSON: any path stays a string). */
export const runsDirSet = (dir: string): string => `runtime.runs_dir=${JSON.stringify(dir)}`;
