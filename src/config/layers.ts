// Config layers: a preset, a config file, `--set` overrides. Each becomes a plain object plus
// where it came from; merge() folds them in order and remembers which layer set which leaf, so
// errors can say "[from my.yaml]" and relative paths resolve against the right folder.
import { readFileSync, statSync } from 'node:fs';
import { dirname, extname, resolve } from 'node:path';
import { parseDocument } from 'yaml';
import { ConfigError, type ConfigIssue, UsageError } from '../errors.js';

export type Plain = Record<string, unknown>;

export interface Layer {
  /** Shown in errors: `preset smoke`, `config.yaml`, `--set`. */
  source: string;
  /** Relative paths set by this layer resolve against this folder. */
  baseDir: string;
  /** A preset's `setup:` line: the command that makes the local files it needs (its model folder). */
  setup?: string;
  data: Plain;
}

export const isPlainObject = (v: unknown): v is Plain =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * Real configs are a few levels deep. Past this, merging, validation and JSON.stringify recurse
 * deep enough to overflow the stack, so such input is refused up front.
 */
export const MAX_CONFIG_DEPTH = 64;

/** True when objects/arrays nest more than `max` levels (iterative: safe on any depth). */
export function nestedDeeperThan(value: unknown, max: number): boolean {
  const stack: [unknown, number][] = [[value, 0]];
  while (stack.length > 0) {
    const [v, depth] = stack.pop()!;
    if (typeof v !== 'object' || v === null || ArrayBuffer.isView(v)) continue;
    if (depth >= max) return true;
    for (const x of Object.values(v)) stack.push([x, depth + 1]);
  }
  return false;
}

/** ` at file:line:col` for a JSON.parse error, when V8 says where (a position, or the end of input). */
function jsonErrorAt(text: string, file: string, message: string): string {
  const m = /at position (\d+)/.exec(message);
  const offset = m ? Number(m[1]) : /Unexpected end of JSON input/.test(message) ? text.length : undefined;
  if (offset === undefined) return ` in ${file}`;
  const before = text.slice(0, offset);
  const line = before.split('\n').length;
  return ` at ${file}:${line}:${offset - before.lastIndexOf('\n')}`;
}

/** Parse YAML or JSON text into a mapping; syntax errors name file:line:col. */
export function parseConfigText(text: string, file: string): Plain {
  const ext = extname(file).toLowerCase();
  let value: unknown;
  if (ext === '.json') {
    try {
      value = JSON.parse(text);
    } catch (e) {
      throw new ConfigError([{ path: '', message: `JSON syntax error${jsonErrorAt(text, file, (e as Error).message)}: ${(e as Error).message.replace(/\s+/g, ' ').slice(0, 200)}`, source: file }]);
    }
  } else {
    const doc = parseDocument(text, { prettyErrors: true, uniqueKeys: true });
    if (doc.errors.length > 0) {
      throw new ConfigError(
        doc.errors.map((e) => {
          const pos = e.linePos?.[0];
          const where = pos ? `${file}:${pos.line}:${pos.col}` : file;
          return { path: '', message: `YAML syntax error at ${where}: ${e.message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, '')}`, source: file };
        }),
      );
    }
    try {
      value = doc.toJS({ maxAliasCount: 100 });
    } catch (e) {
      // yaml refuses alias bombs ("billion laughs") here, before expanding them.
      throw new ConfigError([{ path: '', message: `YAML aliases expand too much in ${file}: ${(e as Error).message}`, source: file }], 'Config files need no more than a few aliases; write the values out.');
    }
  }
  if (nestedDeeperThan(value, MAX_CONFIG_DEPTH)) {
    throw new ConfigError([{ path: '', message: `nested deeper than ${MAX_CONFIG_DEPTH} levels`, source: file }]);
  }
  if (value === null || value === undefined) return {};
  if (!isPlainObject(value)) {
    throw new ConfigError([{ path: '', message: `expected a mapping of sections (runtime, model, data, stages), got ${describe(value)}`, source: file }]);
  }
  return value;
}

export function loadConfigFile(path: string): Layer {
  const abs = resolve(path);
  let text: string;
  try {
    if (!statSync(abs).isFile()) throw new UsageError(`Config file ${path} is not a file.`, 'Pass a .yaml, .yml or .json file to --config.');
    text = readFileSync(abs, 'utf8');
  } catch (e) {
    if (e instanceof UsageError) throw e;
    const code = (e as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'does not exist' : code === 'EACCES' ? 'is not readable (permission denied)' : `cannot be read (${code ?? String(e)})`;
    throw new UsageError(`Config file ${path} ${why}.`, 'Check the path given to --config.');
  }
  const ext = extname(abs).toLowerCase();
  if (!['.yaml', '.yml', '.json'].includes(ext)) {
    throw new UsageError(`Config file ${path} has extension "${ext}".`, 'Use a .yaml, .yml or .json file.');
  }
  return { source: path, baseDir: dirname(abs), data: parseConfigText(text, path) };
}

/** A `--set` value: JSON where it parses (numbers, booleans, null, arrays, objects), else the raw string. */
export function parseSetValue(raw: string): unknown {
  try {
    return JSON.parse(raw);
  } catch {
    return raw;
  }
}

/** `--set a.b.c=value` flags → one layer. Paths are validated later against the schema. */
export function setFlagsLayer(flags: readonly string[], cwd: string): Layer {
  const data: Plain = {};
  const issues: ConfigIssue[] = [];
  for (const flag of flags) {
    const eq = flag.indexOf('=');
    const key = eq < 0 ? flag : flag.slice(0, eq);
    const segments = key.split('.');
    if (eq < 0 || segments.some((s) => s.trim() === '')) {
      issues.push({ path: key, message: `--set "${flag}" must look like key.path=value (e.g. --set stages.sft.learning_rate=1e-4)`, source: '--set' });
      continue;
    }
    const value = parseSetValue(flag.slice(eq + 1));
    if (segments.length > MAX_CONFIG_DEPTH || nestedDeeperThan(value, MAX_CONFIG_DEPTH - segments.length)) {
      issues.push({ path: key.length > 200 ? `${key.slice(0, 200)}…` : key, message: `nested deeper than ${MAX_CONFIG_DEPTH} levels`, source: '--set' });
      continue;
    }
    const problem = setPath(data, segments, value);
    if (problem) issues.push({ path: key, message: problem, source: '--set' });
  }
  if (issues.length > 0) throw new ConfigError(issues);
  return { source: '--set', baseDir: cwd, data };
}

// User keys are data, never prototype access: `__proto__` or `constructor` in a --set path or a
// config file must not reach Object.prototype (read own properties only, write with defineProperty).
// Such keys then fail schema validation as unknown keys, with their dot path.
const own = (o: object, k: string): unknown => (Object.hasOwn(o, k) ? (o as Record<string, unknown>)[k] : undefined);
const put = (o: object, k: string, v: unknown): void => void Object.defineProperty(o, k, { value: v, writable: true, enumerable: true, configurable: true });

function setPath(target: Plain, segments: string[], value: unknown): string | undefined {
  let node: Plain = target;
  for (const [i, seg] of segments.slice(0, -1).entries()) {
    const next = own(node, seg);
    if (next === undefined) put(node, seg, {});
    else if (!isPlainObject(next)) return `conflicts with an earlier --set of ${segments.slice(0, i + 1).join('.')}`;
    node = own(node, seg) as Plain;
  }
  put(node, segments[segments.length - 1]!, value);
  return undefined;
}

/**
 * Deep-merge layers in order. Objects merge key by key; arrays and scalars replace.
 * A numeric key over an array (`stages.grpo.reward_funcs.0.weight`) edits that element.
 * Returns the merged data and, for every leaf, the layer that set it.
 */
export function mergeLayers(layers: readonly Layer[]): { data: Plain; origin: Map<string, Layer> } {
  const origin = new Map<string, Layer>();
  const data: Plain = {};
  for (const layer of layers) mergeInto(data, layer.data, layer, [], origin);
  return { data, origin };
}

function mergeInto(target: Plain | unknown[], src: Plain, layer: Layer, path: string[], origin: Map<string, Layer>): void {
  for (const [k, v] of Object.entries(src)) {
    const p = [...path, k];
    const t = target as Record<string, unknown>;
    const index = Array.isArray(target) && /^\d+$/.test(k);
    // An index far past the end would make a huge sparse array (…reward_funcs.4294967294.weight=1
    // ran the process out of memory): allow editing an element or appending one, no more.
    if (index && Number(k) > (target as unknown[]).length) {
      throw new ConfigError([{ path: p.join('.'), message: `index ${k} is past the end of the list (${(target as unknown[]).length} item(s)); set an existing index or append at ${(target as unknown[]).length}`, source: layer.source }]);
    }
    const cur = index ? (target as unknown[])[Number(k)] : own(t, k);
    if (isPlainObject(v) && (isPlainObject(cur) || (Array.isArray(cur) && Object.keys(v).every((x) => /^\d+$/.test(x))))) {
      mergeInto(cur as Plain, v, layer, p, origin);
    } else {
      const copy = structuredClone(v);
      if (index) (target as unknown[])[Number(k)] = copy;
      else put(t, k, copy);
      // Forget origins below a replaced subtree, then record this one.
      const prefix = p.join('.');
      for (const key of origin.keys()) if (key.startsWith(`${prefix}.`)) origin.delete(key);
      recordOrigins(copy, p, layer, origin);
    }
  }
}

function recordOrigins(v: unknown, path: string[], layer: Layer, origin: Map<string, Layer>): void {
  origin.set(path.join('.'), layer);
  if (isPlainObject(v)) for (const [k, x] of Object.entries(v)) recordOrigins(x, [...path, k], layer, origin);
  else if (Array.isArray(v)) v.forEach((x, i) => recordOrigins(x, [...path, String(i)], layer, origin));
}

/** The layer that set `path` or its nearest ancestor. */
export function originOf(origin: Map<string, Layer>, path: string): Layer | undefined {
  let p = path;
  for (;;) {
    const l = origin.get(p);
    if (l) return l;
    const dot = p.lastIndexOf('.');
    if (dot < 0) return undefined;
    p = p.slice(0, dot);
  }
}

export function describe(v: unknown): string {
  if (v === undefined) return 'nothing';
  if (v === null) return 'null';
  if (Array.isArray(v)) return `an array (${truncate(JSON.stringify(v))})`;
  if (typeof v === 'object') return 'an object';
  if (typeof v === 'string') return `string ${truncate(JSON.stringify(v))}`;
  return `${typeof v} ${String(v)}`;
}

const truncate = (s: string, n = 60) => (s.length > n ? `${s.slice(0, n)}…` : s);
