// The data check that runs before any stage starts: every file a selected stage reads is
// streamed once, every bad row reported, and nothing starts unless all of them are clean.
import type { Config, StageName } from '../config/schema.js';
import { DataError } from '../errors.js';
import { formatReport, validateFile } from '../data/validate.js';
import type { ExampleHandler, ValidateOptions, ValidationReport } from '../data/types.js';
import { type DataTarget, requiredFieldsFor, sourceOf, targetsForStage, DATA_TARGETS } from '../data/targets.js';

export interface CheckedData {
  target: DataTarget;
  report: ValidationReport;
}

/** Rows shown per file in the error; `posttrain validate` prints them all. */
const SHOWN_PER_FILE = 20;

/** How a target's source is read, for the run's copy and for finding its rows again. */
function validateOptions(config: Config, target: DataTarget): ValidateOptions {
  const src = sourceOf(config, target);
  return { kind: DATA_TARGETS[target].kind, format: src.format, columns: src.columns, requiredFields: requiredFieldsFor(config, target), maxChars: src.max_chars, limit: src.limit };
}

export async function checkStageData(
  config: Config,
  stages: readonly StageName[],
  onExample?: (target: DataTarget) => ExampleHandler | undefined,
  /** Called for sources with `on_bad_rows: skip` that had bad rows (they are left out). */
  onSkipped?: (target: DataTarget, report: ValidationReport) => void,
): Promise<CheckedData[]> {
  const checked: CheckedData[] = [];
  const failures: string[] = [];
  for (const stage of stages) {
    for (const target of targetsForStage(stage)) {
      const src = sourceOf(config, target);
      if (src.path === null) continue; // config rules already demand paths for selected stages
      const report = await validateFile(src.path, validateOptions(config, target), onExample?.(target));
      checked.push({ target, report });
      if (report.bad === 0) continue;
      if (src.on_bad_rows === 'skip') onSkipped?.(target, report);
      else failures.push(`data.${target} (${src.path}):\n${shorten(report)}`);
    }
  }
  if (failures.length > 0) {
    throw new DataError(
      `Input data has bad rows; nothing was started.\n${failures.join('\n')}`,
      'Fix those rows, map columns with data.<target>.columns, or set data.<target>.on_bad_rows: skip to leave them out; `posttrain validate <target> <file>` lists every problem.',
    );
  }
  return checked;
}

/**
 * The source line of each row of a target's canonical copy (index = row of the copy), read again
 * with the same settings; null when the source's bytes are not those the copy was taken from.
 */
export async function sourceLines(config: Config, target: DataTarget, sha256: string): Promise<number[] | null> {
  const src = sourceOf(config, target);
  if (src.path === null) return null;
  const lines: number[] = [];
  const report = await validateFile(src.path, validateOptions(config, target), (_ex, line) => void lines.push(line));
  return report.sha256 === sha256 ? lines : null;
}

function shorten(report: ValidationReport): string {
  if (report.problems.length <= SHOWN_PER_FILE) return formatReport(report);
  const head = { ...report, problems: report.problems.slice(0, SHOWN_PER_FILE) };
  const lines = formatReport(head).split('\n');
  const summary = lines.pop();
  return [...lines, `  … and ${report.problems.length - SHOWN_PER_FILE} more problems`, summary].join('\n');
}
