#!/usr/bin/env node
// Entry point of the `posttrain` bin: the compiled CLI lives in dist/ (built by the set-up).
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const main = new URL('../dist/cli/main.js', import.meta.url);
if (!existsSync(fileURLToPath(main))) {
  process.stderr.write('error: posttrain is not built (dist/ is missing).\nhint: run `make setup` (or `npm run build`) in the posttrain folder.\n');
  process.exit(2);
}
// `posttrain presets | head -1`: the reader left early. Not an error: stop quietly, no EPIPE stack.
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (e) => {
    if (e && e.code === 'EPIPE') process.exit(0);
    throw e;
  });
}
const { runCli } = await import(main.href);
process.exitCode = await runCli(process.argv.slice(2));
