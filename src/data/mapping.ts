// Column mapping: where each canonical field (prompt, response, chosen, ...) comes from in a user's
// rows. This is the one place mapping happens; everything downstream sees canonical rows only.
//
// A source expression is
//   - a column name:                 question
//   - a dot path, numeric = index:   instances.0.output
//   - parts joined with `+`:         instruction+instances.0.input
// Joined parts are concatenated with a blank line ("\n\n"); missing, null or empty parts are
// skipped, so `instruction+instances.0.input` gives just the instruction when the input is "".
// A key that literally exists in the row wins over the path reading, so columns whose names
// contain `.` or `+` stay reachable. A field with no mapping reads the column of its own name.
import { DATA_KINDS, type DataKind } from '../config/schema.js';
import { didYouMean } from '../config/suggest.js';
import { UsageError } from '../errors.js';
import { FORMAT_FIELDS } from './types.js';

export const JOIN_SEPARATOR = '\n\n';

interface SourcePart {
  text: string;
  path: string[];
}

export interface SourceExpr {
  text: string;
  parts: SourcePart[];
}

/** What a source expression yields for one row. */
export type Resolved =
  /** No such column/path (or, for a join, every part absent or null). */
  | { state: 'missing' }
  | { state: 'value'; value: unknown }
  /** A part of a `+` join that is not a string: joining would have to invent a rendering. */
  | { state: 'wrong_type'; part: string; actual: string };

/** `['prompt=question', 'response=answer']` → `{prompt: 'question', response: 'answer'}`. */
export function parseMapFlags(flags: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  const example = 'e.g. --map prompt=question or --map prompt=instruction+instances.0.input';
  for (const flag of flags) {
    const eq = flag.indexOf('=');
    if (eq === -1) throw new UsageError(`Bad --map "${flag}": expected field=column.`, example);
    const field = flag.slice(0, eq).trim();
    const source = flag.slice(eq + 1).trim();
    if (field === '') throw new UsageError(`Bad --map "${flag}": the field name before "=" is empty.`, example);
    if (source === '') throw new UsageError(`Bad --map "${flag}": the column after "=" is empty.`, example);
    if (Object.hasOwn(out, field)) {
      throw new UsageError(`Bad --map "${flag}": field "${field}" is already mapped to "${out[field]}".`, 'Map each field once.');
    }
    try {
      parseSourceExpr(source);
    } catch (e) {
      throw new UsageError(`Bad --map "${flag}": ${(e as Error).message}`, example);
    }
    out[field] = source;
  }
  return out;
}

/** Parse `a+b.0.c`; throws a plain Error with a one-line reason when malformed. */
export function parseSourceExpr(text: string): SourceExpr {
  const parts = text.split('+').map((p) => p.trim());
  if (parts.some((p) => p === '')) throw new Error(`"${text}" has an empty part around "+".`);
  return {
    text,
    parts: parts.map((p) => {
      const path = p.split('.');
      if (path.some((s) => s === '')) throw new Error(`"${p}" has an empty step in its dot path.`);
      return { text: p, path };
    }),
  };
}

/**
 * The checked mapping for one data source. Construction throws UsageError for fields the kind
 * (or the chosen format) does not have, so a typo fails before any row is read.
 */
export class ColumnMap {
  private readonly exprs = new Map<string, SourceExpr>();

  constructor(
    kind: DataKind,
    format: string,
    private readonly columns: Readonly<Record<string, string>>,
  ) {
    const known = DATA_KINDS[kind].fields as readonly string[] | null;
    const formatFields = FORMAT_FIELDS[kind][format];
    for (const [field, source] of Object.entries(columns)) {
      if (known !== null && !known.includes(field)) {
        throw new UsageError(
          `Unknown field "${field}" in the column mapping for ${kind} data.${didYouMean(field, known)}`,
          `Valid fields: ${known.join(', ')}. Map them as field=column, e.g. prompt=question.`,
        );
      }
      if (formatFields !== undefined && formatFields !== null && !formatFields.includes(field)) {
        throw new UsageError(
          `The column mapping sets "${field}", which format ${format} does not read (it reads: ${formatFields.join(', ')}).`,
          `Drop the mapping for "${field}" or use format auto.`,
        );
      }
      try {
        this.exprs.set(field, parseSourceExpr(source));
      } catch (e) {
        throw new UsageError(`Bad column mapping ${field}=${source}: ${(e as Error).message}`);
      }
    }
  }

  /** Fields given an explicit mapping. */
  mappedFields(): string[] {
    return [...this.exprs.keys()];
  }

  isMapped(field: string): boolean {
    return this.exprs.has(field);
  }

  /** Where a field is read from, for messages: ` (column "question")`, or '' when unmapped. */
  origin(field: string): string {
    const source = this.columns[field];
    if (source === undefined) return '';
    return this.exprs.get(field)!.parts.length > 1 ? ` (from ${source})` : ` (column "${source}")`;
  }

  get(row: Record<string, unknown>, field: string): Resolved {
    const expr = this.exprs.get(field);
    if (expr === undefined) {
      // Unmapped: the column of the same name, literally (no dot-path reading of field names).
      return Object.hasOwn(row, field) && row[field] !== undefined ? { state: 'value', value: row[field] } : { state: 'missing' };
    }
    return resolveExpr(row, expr);
  }
}

export function resolveExpr(row: Record<string, unknown>, expr: SourceExpr): Resolved {
  if (Object.hasOwn(row, expr.text)) return { state: 'value', value: row[expr.text] };
  if (expr.parts.length === 1) {
    const v = resolvePart(row, expr.parts[0]!);
    return v === undefined ? { state: 'missing' } : { state: 'value', value: v };
  }
  const texts: string[] = [];
  let anyPresent = false;
  for (const part of expr.parts) {
    const v = resolvePart(row, part);
    if (v === undefined || v === null) continue;
    anyPresent = true;
    if (typeof v !== 'string') return { state: 'wrong_type', part: part.text, actual: typeName(v) };
    if (v.trim() !== '') texts.push(v);
  }
  if (!anyPresent) return { state: 'missing' };
  // Every part present but empty: an empty string, reported as empty_field by the caller.
  return { state: 'value', value: texts.join(JOIN_SEPARATOR) };
}

function resolvePart(row: Record<string, unknown>, part: SourcePart): unknown {
  if (Object.hasOwn(row, part.text)) return row[part.text];
  let cur: unknown = row;
  for (const step of part.path) {
    if (Array.isArray(cur)) {
      if (!/^\d+$/.test(step)) return undefined;
      cur = cur[Number(step)];
    } else if (typeof cur === 'object' && cur !== null) {
      // hasOwn: a JSON row must not resolve `constructor` or `__proto__` through its prototype.
      cur = Object.hasOwn(cur, step) ? (cur as Record<string, unknown>)[step] : undefined;
    } else {
      return undefined;
    }
  }
  return cur;
}

/** JSON-flavoured type names for messages: null and array are not "object". */
export function typeName(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  return typeof v;
}
