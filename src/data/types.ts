// Shapes shared by the data modules: options, the row-level report, and the canonical examples
// the rest of the pipeline (run folder, sidecar) consumes. Kept apart from the logic so that the
// line reader, the mapper and the format checks can all import them without import cycles.
import type { DataKind } from '../config/schema.js';

export type { DataKind };

export interface ValidateOptions {
  kind: DataKind;
  /** 'auto' or one of DATA_KINDS[kind].formats. */
  format: string;
  /** Target field → source expression (column, dot path, or parts joined with `+`). */
  columns: Record<string, string>;
  /** Extra fields a prompt file must carry (e.g. ['answer'] for the exact_answer reward). */
  requiredFields?: string[];
  /** Rows whose normalised text exceeds this many characters are reported as over_long. */
  maxChars?: number | null;
  /** Longer lines are reported as line_too_long and never buffered whole. Default 16 MiB. */
  maxLineBytes?: number;
  /** Stop after this many non-blank rows. */
  limit?: number | null;
}

export const DEFAULT_MAX_LINE_BYTES = 16 * 1024 * 1024;

export const REASONS = [
  'bad_json',
  'not_object',
  'missing_field',
  'empty_field',
  'wrong_type',
  'identical_pair',
  'no_shared_prefix',
  'empty_completion',
  'over_long',
  'line_too_long',
  'invalid_utf8',
  'lone_surrogate',
  'bad_messages',
  'format_mismatch',
] as const;
export type Reason = (typeof REASONS)[number];

export interface RowProblem {
  /** 1-based physical line number. */
  line: number;
  /** Target field the problem is about (after mapping), or null for whole-row problems. */
  field: string | null;
  reason: Reason;
  message: string;
}

export interface ValidationReport {
  file: string;
  kind: DataKind;
  /** The concrete format used: the one asked for, or the one detected when 'auto' ('auto' if none could be). */
  format: string;
  /** Non-blank lines read (ok + bad). */
  rows: number;
  ok: number;
  bad: number;
  /** Blank or whitespace-only lines (skipped, not rows). */
  blank: number;
  problems: RowProblem[];
  /** Problems per reason (a row can have more than one problem). */
  counts: Partial<Record<Reason, number>>;
  /**
   * Good rows that repeat an earlier good row exactly (after mapping), and the first few as
   * {line, same_as}. Not bad rows: they train, and the sidecar keeps rows with the same prompt on
   * one side of a held-out split, so a duplicate never scores itself.
   */
  duplicates: { rows: number; examples: { line: number; same_as: number }[] };
  /** Bytes read, and their sha256. With `limit`, both cover exactly the lines read. */
  bytes: number;
  sha256: string;
}

export interface ChatMessage {
  role: string;
  content: string;
}

/** Canonical rows: the only shapes written to the run folder and read by the sidecar. */
export type Example =
  | { prompt: string; completion: string }
  | { messages: ChatMessage[] }
  | { prompt: string; chosen: string; rejected: string }
  | { prompt: string; [extra: string]: unknown };

export type ExampleHandler = (ex: Example, line: number) => void | Promise<void>;

/**
 * The fields each concrete format reads, per kind. A column mapping may only name these fields
 * (prompt files take any field: reward functions may read extra columns).
 */
export const FORMAT_FIELDS: Record<DataKind, Record<string, readonly string[] | null>> = {
  sft: {
    prompt_response: ['prompt', 'response'],
    prompt_completion: ['prompt', 'completion'],
    messages: ['messages'],
  },
  preference: {
    explicit: ['prompt', 'chosen', 'rejected'],
    implicit: ['chosen', 'rejected'],
  },
  prompt: {
    prompt: null,
    implicit: ['chosen', 'rejected'],
  },
};
