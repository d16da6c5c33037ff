// The data check that runs before any stage starts: every file a selected stage reads is
// streamed once, every bad row reported, and nothing starts unless all of them are clean.
import type { Config, StageName } from '../config/schema.js';
import { DataError } from '../errors.js';
import { formatReport, validateFile } from '../data/validate.js';
import type { ExampleHandler, ValidationReport } from '../data/types.js';
import { type DataTarget, requiredFieldsFor, sourceOf, targetsForStage, DATA_TARGETS } from '../data/targets.js';

export interface CheckedData {
  target: DataTarget;
  report: ValidationReport;
}

/** Rows shown per file in the error; `posttrain validate` prints them all. */
const SHOWN_PER_FILE = 20;

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
      const report = await validateFile(
        src.path,
        {
          kind: DATA_TARGETS[target].kind,
          format: src.format,
          columns: src.columns,
          requiredFields: requiredFieldsFor(config, target),
          maxChars: src.max_chars,
          limit: src.limit,
        },
        onExample?.(target),
      );
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

function shorten(report: ValidationReport): string {
  if (report.problems.length <= SHOWN_PER_FILE) return formatReport(report);
  const head = { ...report, problems: report.problems.slice(0, SHOWN_PER_FILE) };
  const lines = formatReport(head).split('\n');
  const summary = lines.pop();
  return [...lines, `  … and ${report.problems.length - SHOWN_PER_FILE} more problems`, summary].join('\n');
}
