// Presets are YAML files in data/presets/: `description:` (one line), `config:` (a partial
// config) and, for a preset whose model folder is made locally, `setup:` (the command that makes
// it, shown when that folder is missing). Adding a preset is adding a file; nothing else changes.
import { readdirSync, readFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { UsageError } from '../errors.js';
import { PACKAGE_ROOT, PRESETS_DIR } from '../paths.js';
import { isPlainObject, type Layer, parseConfigText } from './layers.js';
import { didYouMean } from './suggest.js';

export interface PresetInfo {
  name: string;
  description: string;
  /** The command that makes the local files the preset needs (e.g. `make real-model`), if any. */
  setup?: string;
}

export function listPresets(): PresetInfo[] {
  return readdirSync(PRESETS_DIR)
    .filter((f) => f.endsWith('.yaml'))
    .sort()
    .map((f) => {
      const { description, setup } = readPreset(basename(f, '.yaml'));
      return { name: basename(f, '.yaml'), description, ...(setup !== undefined && { setup }) };
    });
}

function readPreset(name: string): { description: string; setup: string | undefined; config: Record<string, unknown> } {
  const file = join(PRESETS_DIR, `${name}.yaml`);
  const doc = parseConfigText(readFileSync(file, 'utf8'), file);
  const description = typeof doc.description === 'string' ? doc.description : '';
  const setup = typeof doc.setup === 'string' ? doc.setup : undefined;
  const config = isPlainObject(doc.config) ? doc.config : {};
  return { description, setup, config };
}

/** A preset as a config layer. Its relative paths resolve against the posttrain install. */
export function presetLayer(name: string): Layer {
  const names = listPresets().map((p) => p.name);
  if (!names.includes(name)) {
    throw new UsageError(`Unknown preset "${name}".${didYouMean(name, names)}`, `Available presets: ${names.join(', ')} (see \`posttrain presets\`).`);
  }
  const { config, setup } = readPreset(name);
  return { source: `preset ${name}`, baseDir: PACKAGE_ROOT, data: config, ...(setup !== undefined && { setup }) };
}
