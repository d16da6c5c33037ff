// Presets are YAML files in data/presets/: `description:` (one line) and `config:` (a partial
// config). Adding a preset is adding a file; nothing else changes.
import { readdirSync, readFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { UsageError } from '../errors.js';
import { PACKAGE_ROOT, PRESETS_DIR } from '../paths.js';
import { isPlainObject, type Layer, parseConfigText } from './layers.js';
import { didYouMean } from './suggest.js';

export interface PresetInfo {
  name: string;
  description: string;
}

export function listPresets(): PresetInfo[] {
  return readdirSync(PRESETS_DIR)
    .filter((f) => f.endsWith('.yaml'))
    .sort()
    .map((f) => {
      const { description } = readPreset(basename(f, '.yaml'));
      return { name: basename(f, '.yaml'), description };
    });
}

function readPreset(name: string): { description: string; config: Record<string, unknown> } {
  const file = join(PRESETS_DIR, `${name}.yaml`);
  const doc = parseConfigText(readFileSync(file, 'utf8'), file);
  const description = typeof doc.description === 'string' ? doc.description : '';
  const config = isPlainObject(doc.config) ? doc.config : {};
  return { description, config };
}

/** A preset as a config layer. Its relative paths resolve against the posttrain install. */
export function presetLayer(name: string): Layer {
  const names = listPresets().map((p) => p.name);
  if (!names.includes(name)) {
    throw new UsageError(`Unknown preset "${name}".${didYouMean(name, names)}`, `Available presets: ${names.join(', ')} (see \`posttrain presets\`).`);
  }
  return { source: `preset ${name}`, baseDir: PACKAGE_ROOT, data: readPreset(name).config };
}
