// Best-effort log files for sidecar output.
import { appendFileSync } from 'node:fs';
import type { Progress } from '../ui/progress.js';

/**
 * Appends lines to a log file; a failed write (disk full, folder gone) is reported once and
 * dropped. These calls run inside stream handlers, where a throw would crash the CLI.
 */
export function logAppender(file: string, progress: Progress): (line: string) => void {
  let warned = false;
  return (line) => {
    try {
      appendFileSync(file, `${line}\n`);
    } catch (e) {
      if (!warned) progress.note(`warning: cannot write ${file} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}); its lines are dropped`);
      warned = true;
    }
  };
}
