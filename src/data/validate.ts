// Streaming validation of one JSONL data file: used by `posttrain validate` and by the pre-run
// check. Reads the file once, with bounded memory, and for every good row hands the canonical
// example to `onExample` (the controller writes those into the run folder, so the sidecar only
// ever reads canonical rows and column mapping lives in this module alone).
//
// File-level trouble (missing, a directory, unreadable, gzip or UTF-16, no rows) throws DataError; row-level
// trouble is collected in the report, every problem with its 1-based physical line number.
import { createHash } from 'node:crypto';
import { stat, open, type FileHandle } from 'node:fs/promises';
import { DATA_KINDS } from '../config/schema.js';
import { didYouMean } from '../config/suggest.js';
import { DataError, UsageError } from '../errors.js';
import { RowChecker } from './formats.js';
import { parseRow } from './json.js';
import { LineReader, type RawLine } from './lines.js';
import { ColumnMap } from './mapping.js';
import {
  DEFAULT_MAX_LINE_BYTES,
  type Example,
  type ExampleHandler,
  type RowProblem,
  type ValidateOptions,
  type ValidationReport,
} from './types.js';

export * from './types.js';
export { formatReport, formatProblem, summaryLine } from './report.js';
export { parseMapFlags } from './mapping.js';
export { splitSharedPrompt, ASSISTANT_MARKER } from './formats.js';

const MAX_DUPLICATE_EXAMPLES = 5;

export async function validateFile(path: string, opts: ValidateOptions, onExample?: ExampleHandler): Promise<ValidationReport> {
  // Configuration first: a typo in a mapping or format fails before any I/O.
  const formats = DATA_KINDS[opts.kind].formats as readonly string[];
  if (!formats.includes(opts.format)) {
    throw new UsageError(`Unknown ${opts.kind} data format "${opts.format}".${didYouMean(opts.format, formats)}`, `Formats: ${formats.join(', ')}.`);
  }
  const maxLineBytes = opts.maxLineBytes ?? DEFAULT_MAX_LINE_BYTES;
  if (!(maxLineBytes >= 1)) throw new UsageError(`maxLineBytes must be at least 1 (got ${maxLineBytes}).`);
  const limit = opts.limit ?? null;
  if (limit !== null && !(Number.isInteger(limit) && limit >= 1)) throw new UsageError(`limit must be a whole number of rows, at least 1 (got ${limit}).`);
  const checker = new RowChecker(
    { kind: opts.kind, format: opts.format, requiredFields: opts.requiredFields ?? [], maxChars: opts.maxChars ?? null },
    new ColumnMap(opts.kind, opts.format, opts.columns),
  );

  const handle = await openDataFile(path);
  const reader = new LineReader(handle, maxLineBytes);
  const lines = reader[Symbol.asyncIterator]();
  const problems: RowProblem[] = [];
  let rows = 0;
  let ok = 0;
  let blank = 0;
  // Exact duplicates of an earlier good row. Memory trap: one 16-character key per distinct row
  // (~80 bytes each, ~80 MB for a million rows) — the only per-row state this reader keeps.
  const firstLineOf = new Map<string, number>();
  const duplicates: ValidationReport['duplicates'] = { rows: 0, examples: [] };
  try {
    while (limit === null || rows < limit) {
      // Only the reader's own errors are file errors; errors from onExample propagate as they are.
      let next: IteratorResult<RawLine>;
      try {
        next = await lines.next();
      } catch (e) {
        throw readError(path, e);
      }
      if (next.done) break;
      const raw = next.value;
      if (raw.kind === 'text' && raw.text.trim() === '') {
        blank += 1;
        continue;
      }
      rows += 1;
      const example = checkLine(raw, checker, problems, maxLineBytes);
      if (example === null) continue;
      ok += 1;
      const key = createHash('sha256').update(JSON.stringify(example)).digest('hex').slice(0, 16);
      const first = firstLineOf.get(key);
      if (first === undefined) firstLineOf.set(key, raw.line);
      else {
        duplicates.rows += 1;
        if (duplicates.examples.length < MAX_DUPLICATE_EXAMPLES) duplicates.examples.push({ line: raw.line, same_as: first });
      }
      if (onExample) await onExample(example, raw.line);
    }
  } finally {
    // Stopped early (limit, or onExample threw): the reader releases its stream before we close.
    await lines.return(undefined);
    await handle.close();
  }

  if (rows === 0) {
    const what = blank === 0 ? 'is empty' : `has only blank lines (${blank})`;
    throw new DataError(`Data file ${path} ${what}: no rows to ${opts.kind === 'prompt' ? 'prompt with' : 'train on'}.`, 'Point the data path at a JSONL file with one JSON object per line.');
  }

  const counts: ValidationReport['counts'] = {};
  for (const p of problems) counts[p.reason] = (counts[p.reason] ?? 0) + 1;
  return {
    file: path,
    kind: opts.kind,
    format: checker.format ?? opts.format,
    rows,
    ok,
    bad: rows - ok,
    blank,
    problems,
    counts,
    duplicates,
    bytes: reader.bytes,
    sha256: reader.digest(),
  };
}

/** One non-blank line → its canonical example, or null with its problems pushed. */
function checkLine(raw: RawLine, checker: RowChecker, problems: RowProblem[], maxLineBytes: number): Example | null {
  switch (raw.kind) {
    case 'too_long':
      problems.push({
        line: raw.line,
        field: null,
        reason: 'line_too_long',
        message: `line is ${raw.bytes.toLocaleString('en-US')} bytes, over the ${describeBytes(maxLineBytes)} limit per line; skipped`,
      });
      return null;
    case 'invalid_utf8':
      problems.push({
        line: raw.line,
        field: null,
        reason: 'invalid_utf8',
        message: `not valid UTF-8${raw.terminated ? '' : ' (and the file ends without a newline: it may have been cut mid-character)'}; save the file as UTF-8 (e.g. iconv -f latin1 -t utf-8)`,
      });
      return null;
    case 'text': {
      const parsed = parseRow(raw.text, raw.terminated);
      if (!parsed.ok) {
        problems.push({ line: raw.line, field: null, reason: parsed.reason, message: parsed.message });
        return null;
      }
      // JSON may spell half a UTF-16 pair ("\ud800"): valid JSON, but no UTF-8 can carry it, and the
      // tokenizer would fail mid-training with UnicodeEncodeError.
      const lone = loneSurrogateAt(parsed.row, '');
      if (lone !== null) {
        problems.push({
          line: raw.line,
          field: lone.path || null,
          reason: 'lone_surrogate',
          message: `holds a lone UTF-16 surrogate (\\u${lone.code.toString(16)}), half of a character that cannot be encoded; fix or drop that escape in the file`,
        });
        return null;
      }
      return checker.check(parsed.row, raw.line, problems);
    }
  }
}

/** 16777216 → "16 MiB", 100 → "100 bytes": the limit as a person would write it. */
function describeBytes(n: number): string {
  if (n >= 1024 * 1024 && n % (1024 * 1024) === 0) return `${n / (1024 * 1024)} MiB`;
  if (n >= 1024 && n % 1024 === 0) return `${n / 1024} KiB`;
  return `${n.toLocaleString('en-US')} bytes`;
}

async function openDataFile(path: string): Promise<FileHandle> {
  let handle: FileHandle;
  try {
    const st = await stat(path);
    if (st.isDirectory()) {
      throw new DataError(`Data path ${path} is a directory, not a JSONL file.`, 'Point it at the .jsonl file itself.');
    }
    handle = await open(path, 'r');
  } catch (e) {
    if (e instanceof DataError) throw e;
    throw readError(path, e);
  }
  try {
    await refuseNonUtf8Text(handle, path);
  } catch (e) {
    await handle.close();
    throw e instanceof DataError ? e : readError(path, e);
  }
  return handle;
}

/**
 * Two encodings users bring by accident would otherwise show up as a wall of per-line problems:
 * a gzip-compressed .jsonl.gz, and UTF-16 text (Windows "Unicode" saves). Say so once instead.
 */
async function refuseNonUtf8Text(handle: FileHandle, path: string): Promise<void> {
  const { buffer, bytesRead } = await handle.read(Buffer.alloc(2), 0, 2, 0);
  if (bytesRead < 2) return;
  const [a, b] = [buffer[0], buffer[1]];
  if (a === 0x1f && b === 0x8b) {
    throw new DataError(`Data file ${path} is gzip-compressed.`, `Decompress it first: gunzip -k ${path}`);
  }
  if ((a === 0xff && b === 0xfe) || (a === 0xfe && b === 0xff)) {
    throw new DataError(`Data file ${path} is UTF-16 text; JSONL must be UTF-8.`, `Convert it: iconv -f UTF-16 -t UTF-8 ${path} > converted.jsonl`);
  }
}

/** fs errors → DataError naming the file and what to do, without a stack trace. */
function readError(path: string, e: unknown): DataError {
  const code = (e as NodeJS.ErrnoException | undefined)?.code;
  switch (code) {
    case 'ENOENT':
      return new DataError(`Data file not found: ${path}`, 'Check the path; relative paths are resolved from the current directory.');
    case 'EACCES':
    case 'EPERM':
      return new DataError(`Cannot read data file ${path}: permission denied.`, 'Make the file readable (e.g. chmod u+r) or copy it somewhere you can read.');
    case 'EISDIR':
      return new DataError(`Data path ${path} is a directory, not a JSONL file.`, 'Point it at the .jsonl file itself.');
    case 'ENOTDIR':
      return new DataError(`Data file not found: ${path} (a part of the path is not a directory).`, 'Check the path.');
    default:
      return new DataError(`Cannot read data file ${path}: ${e instanceof Error ? e.message : String(e)}`, 'Check that the file is readable.');
  }
}

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** The dot path of the first string (or key) holding a lone surrogate, with its code unit; else null. */
function loneSurrogateAt(value: unknown, path: string): { path: string; code: number } | null {
  if (typeof value === 'string') {
    const m = LONE_SURROGATE.exec(value);
    return m ? { path, code: m[0].charCodeAt(0) } : null;
  }
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const hit = loneSurrogateAt(value[i], path ? `${path}.${i}` : String(i));
      if (hit) return hit;
    }
    return null;
  }
  if (value && typeof value === 'object') {
    for (const [k, v] of Object.entries(value)) {
      const keyHit = LONE_SURROGATE.exec(k);
      if (keyHit) return { path: path ? `${path}.${k}` : k, code: keyHit[0].charCodeAt(0) };
      const hit = loneSurrogateAt(v, path ? `${path}.${k}` : k);
      if (hit) return hit;
    }
  }
  return null;
}
