import { writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import type { Command } from 'commander';
import { renderJsonSchema } from '../../config/jsonschema.js';
import type { CliIO } from '../io.js';

export function registerSchema(program: Command, io: CliIO): void {
  program
    .command('schema')
    .description('print the JSON Schema of config files (for editor completion)')
    .option('-o, --out <file>', 'write it to a file instead of stdout')
    .addHelpText('after', '\nIn a YAML config: # yaml-language-server: $schema=<path to config.schema.json>')
    .action((flags: { out?: string }) => {
      if (flags.out) writeFileSync(resolve(io.cwd, flags.out), renderJsonSchema());
      else io.out(renderJsonSchema());
    });
}
