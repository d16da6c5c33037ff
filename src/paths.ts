// Where posttrain's own files live, independent of the user's working directory.
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

function findPackageRoot(): string {
  // Works from src/ (vitest) and from dist/ (the built CLI): walk up to our package.json.
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const pkg = join(dir, 'package.json');
    if (existsSync(pkg)) {
      try {
        if ((JSON.parse(readFileSync(pkg, 'utf8')) as { name?: string }).name === 'posttrain') return dir;
      } catch {
        // not ours; keep walking
      }
    }
    const up = dirname(dir);
    if (up === dir) throw new Error('posttrain: cannot find the package root (package.json named "posttrain")');
    dir = up;
  }
}

export const PACKAGE_ROOT = findPackageRoot();
export const PRESETS_DIR = join(PACKAGE_ROOT, 'data', 'presets');
export const DEFAULT_VENV_PYTHON = join(PACKAGE_ROOT, '.venv', 'bin', 'python');
export const PACKAGE_VERSION: string = (
  JSON.parse(readFileSync(join(PACKAGE_ROOT, 'package.json'), 'utf8')) as { version: string }
).version;
