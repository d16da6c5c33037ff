// The commands that hints print, built in one place so that each runs as printed: the run is
// named by id, and its runs folder by --runs-dir whenever it is not ./runs of the directory the
// hint is read in (a user's own runs_dir, a moved run). Paths are shell-quoted.
import { dirname, resolve } from 'node:path';
import type { StageName } from '../config/schema.js';

/** A word as a POSIX shell reads it back: bare when safe, else single-quoted. */
export function shellWord(s: string): string {
  return /^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

function runArgs(runDir: string, cwd: string): string {
  const runsDir = dirname(runDir);
  const id = runDir.slice(runsDir.length + 1);
  return `--run ${shellWord(id)}${runsDir === resolve(cwd, 'runs') ? '' : ` --runs-dir ${shellWord(runsDir)}`}`;
}

/** `posttrain stage <stage> --run <id> [--resume] [--runs-dir <dir>]`. */
export function stageCommand(stage: StageName | string, runDir: string, o: { resume?: boolean; cwd?: string } = {}): string {
  return `posttrain stage ${stage} ${runArgs(runDir, o.cwd ?? process.cwd())}${o.resume ? ' --resume' : ''}`;
}

/** `posttrain run --resume --run <id> [--runs-dir <dir>]`: what every interrupt and failure hint prints. */
export function resumeRunCommand(runDir: string, o: { cwd?: string } = {}): string {
  return `posttrain run --resume ${runArgs(runDir, o.cwd ?? process.cwd())}`;
}
