// Parsing one JSONL line into a row, with the failure modes named.
//
// Nesting depth is checked before JSON.parse. V8 parses 200k nested `[` without trouble, but the
// result cannot be walked by JSON.stringify (RangeError when the run folder's rows are written)
// nor by Python's json module (RecursionError near depth 1000 in the sidecar). Real rows are a
// few levels deep, so anything past MAX_JSON_DEPTH is reported as bad JSON here, once.

export const MAX_JSON_DEPTH = 512;

export type ParsedLine =
  | { ok: true; row: Record<string, unknown> }
  | { ok: false; reason: 'bad_json' | 'not_object'; message: string };

export function parseRow(text: string, terminated: boolean): ParsedLine {
  if (depthExceeds(text, MAX_JSON_DEPTH)) {
    return { ok: false, reason: 'bad_json', message: `JSON nested deeper than ${MAX_JSON_DEPTH} levels` };
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    const detail = capped(e instanceof Error ? e.message : String(e));
    if (!terminated) {
      return { ok: false, reason: 'bad_json', message: `the file seems to end mid-line (no newline after the last line, and it is not valid JSON): ${detail}` };
    }
    const lone = text.trim();
    if (lone === '[' || lone === '{') {
      return { ok: false, reason: 'bad_json', message: `not valid JSON: ${detail} (this looks like a pretty-printed JSON file; JSONL needs one object per line, e.g. jq -c '.[]' in.json > out.jsonl)` };
    }
    return { ok: false, reason: 'bad_json', message: `not valid JSON: ${detail}` };
  }
  if (typeof value === 'object' && value !== null && !Array.isArray(value)) {
    return { ok: true, row: value as Record<string, unknown> };
  }
  if (Array.isArray(value)) {
    return { ok: false, reason: 'not_object', message: 'expected a JSON object per line, got an array (a JSON array file converts to JSONL with jq -c \'.[]\')' };
  }
  return { ok: false, reason: 'not_object', message: `expected a JSON object per line, got ${value === null ? 'null' : typeof value}` };
}

/**
 * True when brackets nest deeper than `max`, ignoring brackets inside strings. Malformed input
 * (unbalanced, unterminated strings) is left for JSON.parse to describe. Strings are skipped with
 * indexOf, so text-heavy rows cost little more than a native scan.
 */
export function depthExceeds(text: string, max: number): boolean {
  let depth = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22 /* " */) {
      let j = i + 1;
      for (;;) {
        j = text.indexOf('"', j);
        if (j === -1) return false;
        let backslashes = 0;
        while (text.charCodeAt(j - 1 - backslashes) === 0x5c /* \ */) backslashes++;
        if (backslashes % 2 === 0) break;
        j++;
      }
      i = j;
    } else if (c === 0x5b /* [ */ || c === 0x7b /* { */) {
      if (++depth > max) return true;
    } else if (c === 0x5d /* ] */ || c === 0x7d /* } */) {
      depth--;
    }
  }
  return false;
}

/** Parser messages can quote the input; keep them to one short line. */
function capped(message: string, max = 200): string {
  const one = message.replace(/\s+/g, ' ');
  return one.length > max ? `${one.slice(0, max)}…` : one;
}
