import type { Command } from 'commander';
import { Option } from 'commander';
import { resolveConfig } from '../../config/resolve.js';
import { GrpoStageSchema, PreferenceDataSchema, PromptDataSchema, SftDataSchema } from '../../config/schema.js';
import { didYouMean } from '../../config/suggest.js';
import { DATA_TARGET_NAMES, DATA_TARGETS, type DataTarget, isDataTarget, requiredFieldsFor, rewardColumns, sourceOf } from '../../data/targets.js';
import { formatReport, parseMapFlags, validateFile } from '../../data/validate.js';
import { DataError, UsageError } from '../../errors.js';
import type { CliIO } from '../io.js';
import { addConfigOptions, type ConfigFlags, toResolveOptions } from '../options.js';

interface ValidateFlags extends ConfigFlags {
  map?: string[];
  format?: string;
  require?: string[];
  maxChars?: number;
  limit?: number;
  json?: boolean;
}

const collect = (value: string, previous: string[] = []) => [...previous, value];
const positiveInt = (flag: string) => (v: string) => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new UsageError(`${flag} expects a positive integer, got "${v}".`);
  return n;
};

export function registerValidate(program: Command, io: CliIO): void {
  addConfigOptions(
    program
      .command('validate')
      .description('stream a JSONL file and report every bad row (file:line, field, reason) for one data target')
      .argument('<target>', `what the file is for: ${DATA_TARGET_NAMES.join(', ')}`)
      .argument('[file]', "JSONL file; defaults to the target's data path in the resolved config"),
  )
    .addOption(new Option('-m, --map <field=column>', 'read a field from another column (dot paths and a+b joins allowed); repeatable').argParser(collect))
    .option('-f, --format <format>', 'force a format instead of auto-detecting (e.g. implicit, messages)')
    .addOption(new Option('-r, --require <column>', 'a column every row must carry (e.g. answer); repeatable').argParser(collect))
    .addOption(new Option('--max-chars <n>', 'report rows whose text is longer than this').argParser(positiveInt('--max-chars')))
    .addOption(new Option('--limit <n>', 'check only the first n rows').argParser(positiveInt('--limit')))
    .option('--json', 'print the report as JSON')
    .addHelpText(
      'after',
      `
Examples:
  $ posttrain validate sft gsm8k.jsonl --map prompt=question --map response=answer
  $ posttrain validate sft seed_tasks.jsonl --map prompt=instruction+instances.0.input --map response=instances.0.output
  $ posttrain validate dpo hh-harmless.jsonl --format implicit
  $ posttrain validate grpo gsm8k.jsonl --map prompt=question --require answer
  $ posttrain validate rlhf.preferences --preset gpu

Exit code 0 when every row is good, 2 otherwise.`,
    )
    .action(async (target: string, file: string | undefined, flags: ValidateFlags) => {
      if (!isDataTarget(target)) {
        throw new UsageError(`Unknown data target "${target}".${didYouMean(target, DATA_TARGET_NAMES)}`, `Targets: ${DATA_TARGET_NAMES.join(', ')}.`);
      }
      const base = baseSource(target, flags, io);
      const path = file ?? base.path;
      if (!path) throw new UsageError(`No file given for ${target}.`, `Pass a file, or --preset/--config with data.${target}.path set.`);
      const report = await validateFile(path, {
        kind: DATA_TARGETS[target].kind,
        format: flags.format ?? base.format,
        columns: { ...base.columns, ...parseMapFlags(flags.map ?? []) },
        requiredFields: [...new Set([...base.required, ...(flags.require ?? [])])],
        maxChars: flags.maxChars ?? base.maxChars,
        limit: flags.limit ?? base.limit,
      });
      io.out(flags.json ? `${JSON.stringify(report, null, 2)}\n` : `${formatReport(report)}\n`);
      if (report.bad > 0) {
        throw new DataError(`${report.bad} of ${report.rows} rows in ${path} are bad.`, 'Fix the rows listed above, or map columns with --map field=column.');
      }
    });
}

interface BaseSource {
  path: string | null;
  format: string;
  columns: Record<string, string>;
  required: string[];
  maxChars: number | null;
  limit: number | null;
}

/** Settings from the resolved config when one is given, else the schema defaults for the target. */
function baseSource(target: DataTarget, flags: ValidateFlags, io: CliIO): BaseSource {
  if (flags.preset || flags.config || (flags.set ?? []).length > 0) {
    const { config } = resolveConfig({ ...toResolveOptions(flags), cwd: io.cwd });
    const s = sourceOf(config, target);
    return { path: s.path, format: s.format, columns: s.columns, required: requiredFieldsFor(config, target), maxChars: s.max_chars, limit: s.limit };
  }
  const kind = DATA_TARGETS[target].kind;
  const s = (kind === 'sft' ? SftDataSchema : kind === 'preference' ? PreferenceDataSchema : PromptDataSchema).parse({});
  const required = target === 'grpo' ? rewardColumns(GrpoStageSchema.parse({}).reward_funcs) : [];
  return { path: null, format: s.format, columns: s.columns, required, maxChars: s.max_chars, limit: s.limit };
}
