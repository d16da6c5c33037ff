import type { Command } from 'commander';
import { listPresets } from '../../config/presets.js';
import type { CliIO } from '../io.js';

export function registerPresets(program: Command, io: CliIO): void {
  program
    .command('presets')
    .description('list the built-in presets, one line each')
    .option('--json', 'print as JSON')
    .action((flags: { json?: boolean }) => {
      const presets = listPresets();
      if (flags.json) return io.out(`${JSON.stringify(presets, null, 2)}\n`);
      const width = Math.max(...presets.map((p) => p.name.length));
      for (const p of presets) io.out(`${p.name.padEnd(width)}  ${p.description}\n`);
    });
}
