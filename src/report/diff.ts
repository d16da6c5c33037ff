// "What did this run change?": the run's resolved config against the preset it started from,
// resolved alone with the same resolver (so defaults, path resolution and all). Without a preset,
// or when the preset no longer resolves, the baseline is the schema's defaults. Listed as dot
// paths, `stages.sft.max_steps: 30 → 60`. Also used to compare two runs' configs.
import { dirname, join } from 'node:path';
import type { RunRecord } from '../artifacts/index.js';
import { isPlainObject } from '../config/layers.js';
import { resolveConfig } from '../config/resolve.js';
import { ConfigSchema } from '../config/schema.js';

export interface ConfigChange {
  path: string;
  /** undefined: the key is absent on that side. */
  from: unknown;
  to: unknown;
}

export interface ConfigBaseline {
  /** `preset smoke`, or `schema defaults`. */
  label: string;
  config: unknown;
  /** Why the baseline is not the run's preset, when it is not. */
  note: string | null;
}

/**
 * Leaf-by-leaf differences between two plain JSON values. Objects recurse; arrays and scalars are
 * compared whole (a list of reward functions is one setting), by their JSON text.
 */
export function diffValues(from: unknown, to: unknown, prefix = ''): ConfigChange[] {
  if (isPlainObject(from) && isPlainObject(to)) {
    const keys = [...new Set([...Object.keys(from), ...Object.keys(to)])];
    return keys.flatMap((k) => diffValues(from[k], to[k], prefix === '' ? k : `${prefix}.${k}`));
  }
  if (JSON.stringify(from) === JSON.stringify(to)) return [];
  // An object on one side only: list its leaves, so each added setting gets its own line.
  if (isPlainObject(to) && from === undefined) return diffValues({}, to, prefix);
  if (isPlainObject(from) && to === undefined) return diffValues(from, {}, prefix);
  return [{ path: prefix, from, to }];
}

/**
 * The config a run would have had with nothing but its preset. runs_dir defaults to `runs` in the
 * cwd the run was started from, which run.json does not record; resolving in the runs folder's
 * parent makes the default `runs` match, so runs_dir shows up only when it was set.
 */
export function baselineFor(record: RunRecord): ConfigBaseline {
  const runsDir = record.config?.runtime?.runs_dir;
  const cwd = typeof runsDir === 'string' ? dirname(runsDir) : process.cwd();
  let note: string | null = null;
  if (record.preset) {
    try {
      return { label: `preset ${record.preset}`, config: resolveConfig({ preset: record.preset, cwd }).config, note: null };
    } catch (err) {
      note = `preset "${record.preset}" no longer resolves here (${err instanceof Error ? err.message.split('\n')[0] : String(err)}); compared with the schema defaults instead`;
    }
  }
  return { label: 'schema defaults', config: schemaDefaults(cwd), note };
}

/** Every default of the schema. model.id has none (it is required), so it stays absent. */
function schemaDefaults(cwd: string): unknown {
  const parsed = ConfigSchema.parse({ model: { id: '-' }, runtime: { runs_dir: join(cwd, 'runs') } });
  const { id: _required, ...model } = parsed.model;
  return { ...parsed, model };
}

/**
 * The run's config against its baseline. Settings the baseline has and the run lacks entirely were
 * added to posttrain after the run was made (its run.json predates them): they are counted in
 * `newer`, not listed as changes the user made.
 */
export function configChanges(record: RunRecord): { baseline: ConfigBaseline; changes: ConfigChange[]; newer: number } {
  const baseline = baselineFor(record);
  const all = diffValues(baseline.config, record.config);
  const changes = all.filter((c) => c.to !== undefined);
  return { baseline, changes, newer: all.length - changes.length };
}

/** A value as one short line for a table cell: JSON, cut at `max` characters; absent → "—". */
export function showValue(v: unknown, max = 160): string {
  if (v === undefined) return '—';
  const s = typeof v === 'string' ? v : JSON.stringify(v);
  return s.length > max ? `${s.slice(0, max)}…` : s;
}
