// The main job's set-up stays inside the project folder; system packages (Chromium for the report's
// browser test) belong to the test command's set-up alone.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { PACKAGE_ROOT } from '../../src/paths.js';

const read = (p: string) => readFileSync(join(PACKAGE_ROOT, p), 'utf8');
const code = (text: string) => text.split('\n').filter((l) => !/^\s*#/.test(l)).join('\n');
/** Commands only: comments and quoted strings (messages that tell the user what to install) removed. */
const commands = (text: string) => code(text).replace(/"(?:[^"\\]|\\.)*"|'[^']*'/g, '""');

describe('set-up scripts', () => {
  it('make smoke runs scripts/setup.sh, which installs nothing outside the folder (no apt-get, no sudo)', () => {
    expect(read('Makefile')).toMatch(/^smoke: setup\n\t@node bin\/posttrain\.js run --preset smoke$/m);
    expect(read('Makefile')).toMatch(/^setup:\n\t@scripts\/setup\.sh$/m);
    expect(commands(read('scripts/setup.sh'))).not.toMatch(/apt-get|sudo|chromium/);
    expect(commands(read('scripts/setup-tests.sh'))).toMatch(/apt-get/); // the check above can see one
  });

  it('make test runs scripts/setup-tests.sh, which announces the chromium install before it happens', () => {
    expect(code(read('scripts/test.sh'))).toMatch(/scripts\/setup\.sh \|\| exit \$\?\nscripts\/setup-tests\.sh \|\| exit \$\?/);
    const tests = code(read('scripts/setup-tests.sh'));
    expect(tests.indexOf('say "installing Debian\'s chromium')).toBeGreaterThan(-1);
    expect(tests.indexOf('say "installing Debian\'s chromium')).toBeLessThan(tests.indexOf('install -y chromium'));
  });
});
