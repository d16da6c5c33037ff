// JSON Schema of the config file, generated from the zod schemas so editors (YAML language
// server, VS Code) complete and check keys. The committed copy is checked for drift by a test.
import { join } from 'node:path';
import { z } from 'zod';
import { PACKAGE_ROOT } from '../paths.js';
import { ConfigSchema } from './schema.js';

export const JSON_SCHEMA_PATH = join(PACKAGE_ROOT, 'data', 'schema', 'config.schema.json');

export function buildJsonSchema(): Record<string, unknown> {
  // io 'input': what a user writes (fields with defaults are optional), not the resolved shape.
  const schema = z.toJSONSchema(ConfigSchema, { io: 'input', target: 'draft-2020-12' }) as Record<string, unknown>;
  return {
    ...schema,
    $id: 'https://posttrain.dev/schema/config.schema.json',
    title: 'posttrain config',
    description: 'A posttrain config file (YAML or JSON). Layers: preset ← this file ← --set overrides.',
  };
}

export const renderJsonSchema = () => `${JSON.stringify(buildJsonSchema(), null, 2)}\n`;
