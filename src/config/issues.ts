// Turn zod issues into ConfigIssues a person can act on: the dot path, the value that was
// given, what was expected, and for unknown keys the closest known key.
import type { z } from 'zod';
import type { ConfigIssue } from '../errors.js';
import { describe, isPlainObject, type Layer, originOf } from './layers.js';
import { didYouMean } from './suggest.js';

type AnySchema = z.ZodType;
type Def = { type: string; innerType?: AnySchema; shape?: Record<string, AnySchema>; element?: AnySchema; valueType?: AnySchema; options?: AnySchema[] };

const defOf = (s: AnySchema): Def => (s as unknown as { _zod: { def: Def } })._zod.def;

/** Strip default/prefault/optional/nullable wrappers. */
function unwrap(s: AnySchema): AnySchema {
  let cur = s;
  for (;;) {
    const d = defOf(cur);
    if (d.innerType && ['default', 'prefault', 'optional', 'nullable', 'readonly', 'catch', 'pipe'].includes(d.type)) cur = d.innerType;
    else return cur;
  }
}

/** The schema found at a path, or undefined when the path leaves the schema. */
export function schemaAt(root: AnySchema, path: readonly PropertyKey[]): AnySchema | undefined {
  let cur: AnySchema | undefined = root;
  for (const seg of path) {
    if (!cur) return undefined;
    const d = defOf(unwrap(cur));
    if (d.type === 'object') cur = (unwrap(cur) as unknown as { shape: Record<string, AnySchema> }).shape[String(seg)];
    else if (d.type === 'array') cur = d.element;
    else if (d.type === 'record') cur = d.valueType;
    else if (d.type === 'union') cur = d.options?.map((o) => schemaAt(o, [seg])).find((x) => x !== undefined);
    else return undefined;
  }
  return cur;
}

export function objectKeysAt(root: AnySchema, path: readonly PropertyKey[]): string[] {
  const s = schemaAt(root, path);
  if (!s) return [];
  const u = unwrap(s) as unknown as { shape?: Record<string, AnySchema> };
  return u.shape ? Object.keys(u.shape) : [];
}

function valueAt(data: unknown, path: readonly PropertyKey[]): unknown {
  let cur = data;
  for (const seg of path) {
    if (Array.isArray(cur)) cur = cur[Number(seg)];
    else if (isPlainObject(cur)) cur = cur[String(seg)];
    else return undefined;
  }
  return cur;
}

const join = (path: readonly PropertyKey[]) => path.map(String).join('.');

export function zodIssuesToConfigIssues(
  issues: readonly z.core.$ZodIssue[],
  schema: AnySchema,
  data: unknown,
  origin: Map<string, Layer>,
): ConfigIssue[] {
  const out: ConfigIssue[] = [];
  const sourceOf = (p: string) => originOf(origin, p)?.source;
  for (const issue of issues) {
    const path = issue.path;
    const value = valueAt(data, path);
    if (issue.code === 'unrecognized_keys') {
      const known = objectKeysAt(schema, path);
      for (const key of issue.keys) {
        const p = join([...path, key]);
        out.push({
          path: p,
          message: `unknown key "${key}".${didYouMean(key, known)} Known keys here: ${known.join(', ')}.`,
          source: sourceOf(p),
        });
      }
      continue;
    }
    const p = join(path);
    out.push({ path: p, message: explain(issue, value), source: value === undefined ? undefined : sourceOf(p) });
  }
  return out;
}

function explain(issue: z.core.$ZodIssue, value: unknown): string {
  switch (issue.code) {
    case 'invalid_type':
      if (value === undefined) return `is required (expected ${issue.expected})`;
      return `expected ${issue.expected === 'int' ? 'an integer' : issue.expected}, got ${describe(value)}`;
    case 'invalid_value': {
      const allowed = issue.values.map((v) => JSON.stringify(v));
      const hint = typeof value === 'string' ? didYouMean(value, issue.values.map(String)) : '';
      return `expected one of ${allowed.join(', ')}, got ${describe(value)}.${hint}`.replace('..', '.');
    }
    case 'too_small': {
      if (issue.origin === 'array') return `needs at least ${String(issue.minimum)} item(s), got ${Array.isArray(value) ? value.length : 0}`;
      if (issue.origin === 'string') return `must not be empty`;
      return `must be ${issue.inclusive ? '>=' : '>'} ${String(issue.minimum)}, got ${describe(value)}`;
    }
    case 'too_big':
      if (issue.origin === 'array' || issue.origin === 'string') return `is too long (at most ${String(issue.maximum)})`;
      return `must be ${issue.inclusive ? '<=' : '<'} ${String(issue.maximum)}, got ${describe(value)}`;
    case 'invalid_format':
      return `${issue.message}; got ${describe(value)}`;
    case 'invalid_union': {
      // Our unions are small: list what each branch wanted.
      const wants = issue.errors.map((branch) => branch[0]).filter((x) => x !== undefined).map((x) => explain(x, value).replace(/, got .*$/, ''));
      return `${[...new Set(wants)].join(' or ')}; got ${describe(value)}`;
    }
    default:
      return `${issue.message}${value === undefined ? '' : `; got ${describe(value)}`}`;
  }
}
