// Config resolution: preset ← config file ← --set overrides, then schema, then cross-field
// rules. Every problem from every layer is reported in one ConfigError.
import { homedir } from 'node:os';
import { isAbsolute, resolve } from 'node:path';
import { ConfigError } from '../errors.js';
import { zodIssuesToConfigIssues } from './issues.js';
import { type Layer, loadConfigFile, mergeLayers, originOf, type Plain, setFlagsLayer } from './layers.js';
import { presetLayer } from './presets.js';
import { checkRules } from './rules.js';
import { DATA_TARGET_NAMES, sourceOf } from '../data/targets.js';
import { type Config, ConfigSchema } from './schema.js';

export interface ResolveOptions {
  /** A layer under everything else: `stage --set …` layers over the run's own resolved config. */
  base?: Layer | undefined;
  preset?: string | undefined;
  configFile?: string | undefined;
  set?: readonly string[] | undefined;
  /** Folder that --set and default relative paths resolve against. */
  cwd?: string;
}

export interface ResolvedConfig {
  config: Config;
  preset: string | null;
  configFile: string | null;
  overrides: string[];
}

export function resolveConfig(opts: ResolveOptions): ResolvedConfig {
  const cwd = opts.cwd ?? process.cwd();
  const layers: Layer[] = [];
  if (opts.base) layers.push(opts.base);
  if (opts.preset) layers.push(presetLayer(opts.preset));
  if (opts.configFile) layers.push(loadConfigFile(resolve(cwd, opts.configFile)));
  if (opts.set && opts.set.length > 0) layers.push(setFlagsLayer(opts.set, cwd));
  return {
    config: resolveLayers(layers, cwd),
    preset: opts.preset ?? null,
    configFile: opts.configFile ? resolve(cwd, opts.configFile) : null,
    overrides: [...(opts.set ?? [])],
  };
}

/**
 * runtime.runs_dir of the given layers (preset ← config file ← --set), absolute by the same rule
 * as a full resolution, without validating anything else: commands that only find runs (runs,
 * show, report, stage) must not fail on, say, a model folder that is not there. `explicit` is
 * false when no layer sets it (then it is `runs` of the cwd, the schema default).
 */
export function runsDirOfLayers(opts: ResolveOptions): { dir: string; explicit: boolean; source: string | null } {
  const cwd = opts.cwd ?? process.cwd();
  const layers: Layer[] = [];
  if (opts.preset) layers.push(presetLayer(opts.preset));
  if (opts.configFile) layers.push(loadConfigFile(resolve(cwd, opts.configFile)));
  if (opts.set && opts.set.length > 0) layers.push(setFlagsLayer(opts.set, cwd));
  const { data, origin } = mergeLayers(layers);
  const value = (data.runtime as Plain | undefined)?.runs_dir;
  if (typeof value !== 'string' || value === '') return { dir: resolve(cwd, 'runs'), explicit: false, source: null };
  const layer = originOf(origin, 'runtime.runs_dir');
  const base = layer?.baseDir ?? cwd;
  const dir = value.startsWith('~/') ? resolve(homedir(), value.slice(2)) : isAbsolute(value) ? value : resolve(base, value);
  return { dir, explicit: true, source: layer?.source ?? null };
}

/** Merge, validate, check rules, make paths absolute. Throws ConfigError with every issue. */
export function resolveLayers(layers: readonly Layer[], cwd: string): Config {
  const { data, origin } = mergeLayers(layers);
  if (!layers.some((l) => l.source.startsWith('preset')) && data.model === undefined) {
    throw new ConfigError([{ path: 'model', message: 'is required: no preset and no model section were given.' }], 'Pass --preset smoke (or another preset from `posttrain presets`), or --config with a model.id.');
  }
  const parsed = ConfigSchema.safeParse(data);
  if (!parsed.success) throw new ConfigError(zodIssuesToConfigIssues(parsed.error.issues, ConfigSchema, data, origin));
  const config = absolutisePaths(parsed.data, origin, cwd);
  const issues = checkRules(config);
  for (const i of issues) i.source ??= originOf(origin, i.path)?.source;
  // A preset whose model folder is made locally (`setup:`) says how to make it.
  const setup = issues.some((i) => i.path === 'model.id') ? originOf(origin, 'model.id')?.setup : undefined;
  if (issues.length > 0) throw new ConfigError(issues, setup ? `This preset's model folder is made by \`${setup}\` (it downloads once, then works offline); run it, then rerun.` : undefined);
  return config;
}

// Relative paths resolve against the layer that set them: a preset → the posttrain install,
// a config file → its folder, --set and defaults → the current directory.
function absolutisePaths(config: Config, origin: Map<string, Layer>, cwd: string): Config {
  const out = structuredClone(config);
  // Exact leaf only: a default inside a section that a preset touched still belongs to the cwd.
  const base = (path: string) => origin.get(path)?.baseDir ?? cwd;
  const abs = (path: string, p: string) => (p.startsWith('~/') ? resolve(homedir(), p.slice(2)) : isAbsolute(p) ? p : resolve(base(path), p));

  out.runtime.runs_dir = abs('runtime.runs_dir', out.runtime.runs_dir);
  if (out.runtime.python !== null && out.runtime.python.includes('/')) out.runtime.python = abs('runtime.python', out.runtime.python);
  const ac = out.runtime.accelerate_config;
  if (ac !== null && /[/\\]|\.(ya?ml|json)$/.test(ac)) out.runtime.accelerate_config = abs('runtime.accelerate_config', ac);
  if (isLocalModelPath(out.model.id)) out.model.id = abs('model.id', out.model.id);

  // Every data target of every stage (the catalogue's, through data/targets.ts).
  for (const target of DATA_TARGET_NAMES) {
    const s = sourceOf(out, target);
    if (s.path !== null) s.path = abs(`data.${target}.path`, s.path);
  }
  return out;
}

/** Hub ids look like `org/name`; local folders are spelled as paths. */
export function isLocalModelPath(id: string): boolean {
  return id.startsWith('./') || id.startsWith('../') || id.startsWith('/') || id.startsWith('~') || id === '.';
}

export type { Plain };
