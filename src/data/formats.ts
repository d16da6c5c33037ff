// Per-kind row checks and normalisation into the canonical shapes:
//   sft         {prompt, completion} or {messages}
//   preference  {prompt, chosen, rejected}
//   prompt      {prompt, ...every other column}
// A row is either turned into one canonical example or yields one or more RowProblems; never both.
import type { DataKind } from '../config/schema.js';
import { type ColumnMap, typeName } from './mapping.js';
import { type ChatMessage, type Example, FORMAT_FIELDS, type Reason, type RowProblem } from './types.js';

export const CHAT_ROLES = ['system', 'user', 'assistant'] as const;

/**
 * The HH-style turn marker. When the shared prefix of an implicit pair contains it, the prompt is
 * cut right after the last one, so both completions start at the assistant's turn.
 */
export const ASSISTANT_MARKER = '\n\nAssistant:';

/**
 * Split an implicit preference pair (two whole dialogues) into the shared prompt and the two
 * completions. The rule, in order:
 *  1. Longest common prefix of chosen and rejected (never splitting a UTF-16 surrogate pair).
 *  2. If that prefix contains "\n\nAssistant:" (Anthropic HH), cut back to just after the last
 *     one: the prompt ends with "\n\nAssistant:" and each completion is the assistant's whole
 *     reply (starting with its leading space), not the tail after a few shared words.
 *  3. Otherwise, as TRL's extract_prompt does: if the character before the split is a space,
 *     move the split back by one so the completion keeps its leading space.
 * One of the completions may come out empty (when one dialogue is a prefix of the other without
 * a marker in between); callers report that.
 */
export function splitSharedPrompt(chosen: string, rejected: string): { prompt: string; chosen: string; rejected: string } {
  const max = Math.min(chosen.length, rejected.length);
  let n = 0;
  while (n < max && chosen.charCodeAt(n) === rejected.charCodeAt(n)) n++;
  if (n > 0 && n < chosen.length && isHighSurrogate(chosen.charCodeAt(n - 1))) n--;

  const marker = n >= ASSISTANT_MARKER.length ? chosen.lastIndexOf(ASSISTANT_MARKER, n - ASSISTANT_MARKER.length) : -1;
  if (marker !== -1) n = marker + ASSISTANT_MARKER.length;
  else if (n > 0 && chosen[n - 1] === ' ') n--;

  return { prompt: chosen.slice(0, n), chosen: chosen.slice(n), rejected: rejected.slice(n) };
}

const isHighSurrogate = (c: number) => c >= 0xd800 && c <= 0xdbff;

/** Which format a row looks like, from the fields present after mapping (null: none). */
function detectRow(kind: DataKind, has: (field: string) => boolean): string | null {
  switch (kind) {
    case 'sft':
      if (has('messages')) return 'messages';
      if (has('completion')) return 'prompt_completion';
      if (has('response')) return 'prompt_response';
      return null;
    case 'preference':
      if (has('prompt')) return 'explicit';
      if (has('chosen') || has('rejected')) return 'implicit';
      return null;
    case 'prompt':
      return 'prompt';
  }
}

const FORMAT_HELP: Record<DataKind, string> = {
  sft: 'prompt+response, prompt+completion or messages',
  preference: 'prompt+chosen+rejected (explicit) or chosen+rejected (implicit)',
  prompt: 'prompt',
};

export interface CheckerOptions {
  kind: DataKind;
  format: string;
  requiredFields: readonly string[];
  maxChars: number | null;
}

/**
 * Checks rows one at a time. Holds the one piece of cross-row state: the format detected from
 * the first recognisable row when the format is 'auto', which every later row must then match.
 */
export class RowChecker {
  /** Concrete format in force; null while 'auto' has not seen a recognisable row yet. */
  format: string | null;
  private detectedAt: number | null = null;
  private readonly auto: boolean;

  constructor(
    private readonly opts: CheckerOptions,
    private readonly columns: ColumnMap,
  ) {
    this.auto = opts.format === 'auto';
    // Prompt files have one format, so 'auto' is settled before the first row.
    this.format = this.auto ? (opts.kind === 'prompt' ? 'prompt' : null) : opts.format;
  }

  /** Normalise one parsed JSON object, or push its problems and return null. */
  check(row: Record<string, unknown>, line: number, problems: RowProblem[]): Example | null {
    const p = new RowProblems(line, problems);
    const has = (f: string) => {
      const r = this.columns.get(row, f);
      return r.state !== 'missing' && !(r.state === 'value' && r.value === null);
    };
    const looksLike = detectRow(this.opts.kind, has);

    if (this.format === null) {
      if (looksLike === null) {
        p.add(null, 'missing_field', `no recognised fields: expected ${FORMAT_HELP[this.opts.kind]}; the row has ${describeColumns(row)}`);
        return null;
      }
      this.format = looksLike;
      this.detectedAt = line;
    } else if (looksLike !== null && looksLike !== this.format && !this.tolerates(has)) {
      const why = this.auto
        ? `the file's format is ${this.format} (detected from line ${this.detectedAt})`
        : `the format is set to ${this.format}`;
      p.add(null, 'format_mismatch', `row looks like ${looksLike} but ${why}`);
      return null;
    }

    const before = problems.length;
    const result = this.normalise(this.format, row, p);
    if (result === null || problems.length > before) return null;

    // Characters are UTF-16 code units (String length): a cheap sanity bound, not a token count.
    if (this.opts.maxChars !== null && result.chars > this.opts.maxChars) {
      p.add(null, 'over_long', `${result.chars.toLocaleString('en-US')} characters of text, over max_chars ${this.opts.maxChars.toLocaleString('en-US')}`);
      return null;
    }
    return result.example;
  }

  /**
   * With a format chosen explicitly, a row that also carries another format's fields is fine as
   * long as it has every field of the chosen one (e.g. an implicit pair with a stray `prompt`
   * column). With 'auto', rows must look exactly like the detected format: mixing shapes in one
   * file is almost always a mistake.
   */
  private tolerates(has: (f: string) => boolean): boolean {
    if (this.auto) return false;
    const fields = FORMAT_FIELDS[this.opts.kind][this.format!] ?? ['prompt'];
    return fields.every(has);
  }

  private normalise(format: string, row: Record<string, unknown>, p: RowProblems): { example: Example; chars: number } | null {
    switch (format) {
      case 'prompt_response':
      case 'prompt_completion': {
        const prompt = this.text(row, 'prompt', p);
        const completion = this.text(row, format === 'prompt_response' ? 'response' : 'completion', p);
        if (prompt === undefined || completion === undefined) return null;
        return { example: { prompt, completion }, chars: prompt.length + completion.length };
      }
      case 'messages': {
        const messages = this.messages(row, p);
        if (messages === undefined) return null;
        return { example: { messages }, chars: messages.reduce((n, m) => n + m.content.length, 0) };
      }
      case 'explicit': {
        const prompt = this.text(row, 'prompt', p);
        const chosen = this.text(row, 'chosen', p);
        const rejected = this.text(row, 'rejected', p);
        if (prompt === undefined || chosen === undefined || rejected === undefined) return null;
        if (chosen === rejected) return p.add(null, 'identical_pair', 'chosen and rejected are identical');
        return { example: { prompt, chosen, rejected }, chars: prompt.length + chosen.length + rejected.length };
      }
      case 'implicit':
        return this.opts.kind === 'prompt' ? this.implicitPrompt(row, p) : this.implicit(row, p);
      case 'prompt':
        return this.prompt(row, p);
      default:
        // The format was checked against DATA_KINDS before reading; reaching this is a bug.
        throw new Error(`unhandled data format ${format}`);
    }
  }

  private implicit(row: Record<string, unknown>, p: RowProblems): { example: Example; chars: number } | null {
    const chosenFull = this.text(row, 'chosen', p);
    const rejectedFull = this.text(row, 'rejected', p);
    if (chosenFull === undefined || rejectedFull === undefined) return null;
    if (chosenFull === rejectedFull) return p.add(null, 'identical_pair', 'chosen and rejected are identical');
    const split = splitSharedPrompt(chosenFull, rejectedFull);
    if (split.prompt.trim() === '') {
      return p.add(null, 'no_shared_prefix', 'chosen and rejected share no prefix to use as the prompt (use explicit format with a prompt column)');
    }
    for (const f of ['chosen', 'rejected'] as const) {
      if (split[f].trim() === '') {
        p.add(f, 'empty_completion', `nothing left after the shared prompt (${split.prompt.length.toLocaleString('en-US')} characters): the other side merely extends this one`);
      }
    }
    if (p.count > 0) return null;
    return { example: split, chars: split.prompt.length + split.chosen.length + split.rejected.length };
  }

  /**
   * A prompt file read from preference pairs (RLHF optimises on the prompts its reward model saw):
   * only the shared prefix matters, so a pair whose one side merely extends the other still
   * yields a usable prompt.
   */
  private implicitPrompt(row: Record<string, unknown>, p: RowProblems): { example: Example; chars: number } | null {
    const chosen = this.text(row, 'chosen', p);
    const rejected = this.text(row, 'rejected', p);
    if (chosen === undefined || rejected === undefined) return null;
    const { prompt } = splitSharedPrompt(chosen, rejected);
    if (prompt.trim() === '') return p.add(null, 'no_shared_prefix', 'chosen and rejected share no prefix to use as the prompt');
    return { example: { prompt }, chars: prompt.length };
  }

  private prompt(row: Record<string, unknown>, p: RowProblems): { example: Example; chars: number } | null {
    const prompt = this.text(row, 'prompt', p);
    // Keep every original column (reward functions read them), then lay the mapped and required
    // fields over them. Entries + fromEntries: a user field named "__proto__" stays a plain key.
    const entries = new Map<string, unknown>(Object.entries(row));
    let chars = prompt?.length ?? 0;
    const wanted = new Set([...this.columns.mappedFields(), ...this.opts.requiredFields]);
    wanted.delete('prompt');
    for (const field of wanted) {
      const value = this.present(row, field, p);
      if (value === undefined) continue;
      entries.set(field, value);
      if (typeof value === 'string') chars += value.length;
    }
    if (prompt === undefined || p.count > 0) return null;
    entries.delete('prompt');
    const example = Object.fromEntries([['prompt', prompt], ...entries]) as Example;
    return { example, chars };
  }

  /** A string field that must be non-blank. Pushes a problem and returns undefined otherwise. */
  private text(row: Record<string, unknown>, field: string, p: RowProblems): string | undefined {
    const value = this.value(row, field, p);
    if (value === undefined) return undefined;
    if (typeof value !== 'string') {
      p.add(field, 'wrong_type', `expected a string, got ${typeName(value)}${this.columns.origin(field)}`);
      return undefined;
    }
    if (value.trim() === '') {
      p.add(field, 'empty_field', `${value === '' ? 'is empty' : 'is whitespace only'}${this.columns.origin(field)}`);
      return undefined;
    }
    return value;
  }

  /** A field of any type that must be present and not empty (required prompt-file columns). */
  private present(row: Record<string, unknown>, field: string, p: RowProblems): unknown {
    const value = this.value(row, field, p);
    if (value === undefined) return undefined;
    const empty =
      (typeof value === 'string' && value.trim() === '') ||
      (Array.isArray(value) && value.length === 0) ||
      (typeName(value) === 'object' && Object.keys(value as object).length === 0);
    if (empty) {
      p.add(field, 'empty_field', `is empty${this.columns.origin(field)}`);
      return undefined;
    }
    return value;
  }

  /** The raw mapped value; missing, null and non-string join parts become problems. */
  private value(row: Record<string, unknown>, field: string, p: RowProblems): unknown {
    const r = this.columns.get(row, field);
    if (r.state === 'wrong_type') {
      p.add(field, 'wrong_type', `"${r.part}" is a ${r.actual}; only strings can be joined with +`);
      return undefined;
    }
    if (r.state === 'missing') {
      const hint = this.columns.isMapped(field) ? '' : `; the row has ${describeColumns(row)} (set a column mapping, e.g. --map ${field}=COLUMN)`;
      p.add(field, 'missing_field', `missing${this.columns.origin(field)}${hint}`);
      return undefined;
    }
    if (r.value === null) {
      p.add(field, 'missing_field', `is null${this.columns.origin(field)}`);
      return undefined;
    }
    return r.value;
  }

  private messages(row: Record<string, unknown>, p: RowProblems): ChatMessage[] | undefined {
    const value = this.value(row, 'messages', p);
    if (value === undefined) return undefined;
    if (!Array.isArray(value)) {
      p.add('messages', 'wrong_type', `expected an array of {role, content} messages, got ${typeName(value)}${this.columns.origin('messages')}`);
      return undefined;
    }
    if (value.length === 0) {
      p.add('messages', 'empty_field', 'has no messages');
      return undefined;
    }
    // Report the first bad message only (plus how many more): a long broken conversation
    // should not flood the report with one line per turn.
    const issues: string[] = [];
    const out: ChatMessage[] = [];
    value.forEach((m: unknown, i) => {
      const at = `messages.${i}`;
      if (typeName(m) !== 'object') return void issues.push(`${at} is a ${typeName(m)}, expected {role, content}`);
      const { role, content } = m as Record<string, unknown>;
      if (typeof role !== 'string' || !(CHAT_ROLES as readonly string[]).includes(role)) {
        return void issues.push(`${at}.role is ${role === undefined ? 'missing' : short(role)}, expected one of ${CHAT_ROLES.join(', ')}`);
      }
      if (typeof content !== 'string') return void issues.push(`${at}.content is ${content === undefined ? 'missing' : `a ${typeName(content)}`}, expected a string`);
      if (content.trim() === '') return void issues.push(`${at}.content is empty`);
      out.push({ role, content });
    });
    if (issues.length === 0) {
      if (!out.some((m) => m.role === 'user')) issues.push('has no user message');
      const last = out[out.length - 1]!;
      if (last.role !== 'assistant') issues.push(`the last message is from "${last.role}"; it must be the assistant's reply to train on`);
    }
    if (issues.length > 0) {
      const more = issues.length > 1 ? ` (and ${issues.length - 1} more)` : '';
      p.add('messages', 'bad_messages', `${issues[0]}${more}`);
      return undefined;
    }
    return out;
  }
}

/** Problems of one row. `add` returns null so checks can `return p.add(...)`. */
class RowProblems {
  count = 0;
  constructor(
    private readonly line: number,
    private readonly sink: RowProblem[],
  ) {}

  add(field: string | null, reason: Reason, message: string): null {
    this.sink.push({ line: this.line, field, reason, message });
    this.count += 1;
    return null;
  }
}

/** `columns: a, b, c` for messages, capped so a wide row does not make a huge line. */
function describeColumns(row: Record<string, unknown>): string {
  const keys = Object.keys(row);
  if (keys.length === 0) return 'no columns';
  const shown = keys.slice(0, 8).map((k) => JSON.stringify(k).slice(0, 40));
  return `columns ${shown.join(', ')}${keys.length > 8 ? `, … (${keys.length} in all)` : ''}`;
}

/** A value quoted for a message, cut short: messages must stay one readable line. */
export function short(v: unknown, max = 60): string {
  const s = JSON.stringify(v) ?? String(v);
  return s.length > max ? `${s.slice(0, max)}…` : s;
}
