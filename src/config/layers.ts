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
  data: Plain;
}

export const isPlainObject = (v: unknown): v is Plain =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

/** Parse YAML or JSON text into a mapping; syntax errors name file:line:col. */
export function parseConfigText(text: string, file: string): Plain {
  const ext = extname(file).toLowerCase();
  let value: unknown;
  if (ext === '.json') {
    try {
      value = JSON.parse(text);
    } catch (e) {
      throw new ConfigError([{ path: '', message: `not valid JSON: ${(e as Error).message}`, source: file }]);
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
    value = doc.toJS({ maxAliasCount: 100 });
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
    const problem = setPath(data, segments, parseSetValue(flag.slice(eq + 1)));
    if (problem) issues.push({ path: key, message: problem, source: '--set' });
  }
  if (issues.length > 0) throw new ConfigError(issues);
  return { source: '--set', baseDir: cwd, data };
}

function setPath(target: Plain, segments: string[], value: unknown): string | undefined {
  let node: Plain = target;
  for (const [i, seg] of segments.slice(0, -1).entries()) {
    const next = node[seg];
    if (next === undefined) node[seg] = {};
    else if (!isPlainObject(next)) return `conflicts with an earlier --set of ${segments.slice(0, i + 1).join('.')}`;
    node = node[seg] as Plain;
  }
  node[segments[segments.length - 1]!] = value;
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
    const cur = Array.isArray(target) && /^\d+$/.test(k) ? target[Number(k)] : t[k];
    if (isPlainObject(v) && (isPlainObject(cur) || (Array.isArray(cur) && Object.keys(v).every((x) => /^\d+$/.test(x))))) {
      mergeInto(cur as Plain, v, layer, p, origin);
    } else {
      const copy = structuredClone(v);
      if (Array.isArray(target) && /^\d+$/.test(k)) target[Number(k)] = copy;
      else t[k] = copy;
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
