import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { JSON_SCHEMA_PATH, buildJsonSchema, renderJsonSchema } from '../../src/config/jsonschema.js';

describe('JSON Schema for editors', () => {
  it('the committed data/schema/config.schema.json matches the zod schemas (UPDATE_SCHEMA=1 rewrites it)', () => {
    const fresh = renderJsonSchema();
    if (process.env.UPDATE_SCHEMA === '1') writeFileSync(JSON_SCHEMA_PATH, fresh);
    expect(existsSync(JSON_SCHEMA_PATH), 'run: UPDATE_SCHEMA=1 npx vitest run tests/config/jsonschema.test.ts').toBe(true);
    expect(readFileSync(JSON_SCHEMA_PATH, 'utf8'), 'schema drifted; run: UPDATE_SCHEMA=1 npx vitest run tests/config/jsonschema.test.ts').toBe(fresh);
  });

  it('describes the four sections, rejects unknown keys and carries defaults', () => {
    const s = buildJsonSchema() as { properties: Record<string, any>; additionalProperties: boolean; required: string[] };
    expect(Object.keys(s.properties)).toEqual(expect.arrayContaining(['runtime', 'model', 'data', 'stages']));
    expect(s.additionalProperties).toBe(false);
    expect(s.required).toEqual(['model']);
    const grpo = s.properties.stages.properties.grpo;
    expect(grpo.properties.num_generations).toMatchObject({ type: 'integer', minimum: 2, default: 8 });
    expect(grpo.properties.loss_type.enum).toContain('dapo');
  });
});
