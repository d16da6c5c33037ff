// Which progress renderer a command gets. `--json`: NDJSON events on stdout (and, only if
// --progress is also given, that view on stderr too). Otherwise `--progress`: `tty` redraws in
// place, `plain` writes log lines, `none` only what needs a reader (notes, warnings, alerts);
// `auto` (the default) is tty when stderr is an interactive terminal and plain otherwise.
import { type Command, Option } from 'commander';
import type { CliIO } from '../cli/io.js';
import { ndjsonLine, ndjsonProgress, type ErrorEvent } from './ndjson.js';
import { plainProgress, type Progress, quietProgress } from './progress.js';
import { SHOW_CURSOR, ttyProgress } from './tty.js';

export const PROGRESS_MODES = ['auto', 'tty', 'plain', 'none'] as const;
export type ProgressMode = (typeof PROGRESS_MODES)[number];

export interface ProgressFlags {
  json?: boolean;
  progress?: ProgressMode;
}

/** Commands whose --json is an NDJSON event stream (and so end with an `error` event on failure). */
const ndjsonCommands = new WeakSet<Command>();

export function addProgressOptions(cmd: Command): Command {
  ndjsonCommands.add(cmd);
  return cmd
    .option('--json', 'stream progress as NDJSON events on stdout (one JSON object a line; see docs/PROGRESS.md)')
    .addOption(
      new Option('--progress <mode>', 'progress on stderr: tty (redraw in place), plain (log lines), none, or auto (tty on a terminal, else plain)').choices(
        PROGRESS_MODES,
      ),
    );
}

/** The `error` event writer when the command that failed was streaming NDJSON, else undefined. */
export function ndjsonErrorSink(program: Command, io: CliIO): ((e: ErrorEvent) => void) | undefined {
  const streaming = program.commands.some((c) => ndjsonCommands.has(c) && c.opts().json === true);
  return streaming ? (e) => io.out(ndjsonLine('error', { ...e })) : undefined;
}

const isCI = (env: NodeJS.ProcessEnv) => Boolean(env.CI) && env.CI !== 'false' && env.CI !== '0';

/** auto → tty only on an interactive, capable terminal: never in CI logs or on TERM=dumb. */
export function resolveMode(mode: ProgressMode, io: Pick<CliIO, 'errIsTTY' | 'env'>): Exclude<ProgressMode, 'auto'> {
  if (mode !== 'auto') return mode;
  return io.errIsTTY && io.env.TERM !== 'dumb' && !isCI(io.env) ? 'tty' : 'plain';
}

/** no-color.org: NO_COLOR present and not empty turns colour off. */
export const colorAllowed = (env: NodeJS.ProcessEnv) => !env.NO_COLOR;

export function selectProgress(flags: ProgressFlags, io: CliIO): Progress {
  const human = flags.json && flags.progress === undefined ? null : humanProgress(resolveMode(flags.progress ?? 'auto', io), io);
  if (!flags.json) return human!;
  const events = ndjsonProgress(io.out);
  return human ? tee(events, human) : events;
}

function humanProgress(mode: Exclude<ProgressMode, 'auto'>, io: CliIO): Progress {
  if (mode === 'plain') return plainProgress(io.err);
  if (mode === 'none') return quietProgress(io.err);
  const view = ttyProgress({ write: io.err, columns: () => io.columns, color: colorAllowed(io.env) });
  // The view hides the cursor while it draws and shows it at runEnd; should the process end
  // without a runEnd (a throw between runStart and the pipeline's finally), show it on exit.
  const restore = () => io.err(SHOW_CURSOR);
  return {
    ...view,
    runStart(info) {
      process.once('exit', restore);
      view.runStart(info);
    },
    runEnd(info) {
      view.runEnd(info);
      process.off('exit', restore);
    },
  };
}

const METHODS = ['runStart', 'sidecarState', 'stageStart', 'state', 'metric', 'log', 'alert', 'stageEnd', 'note', 'runEnd'] as const satisfies readonly (keyof Progress)[];

/** Both renderers see every event, in order. */
function tee(a: Progress, b: Progress): Progress {
  const both = {} as Record<(typeof METHODS)[number], (...args: unknown[]) => void>;
  for (const m of METHODS) {
    both[m] = (...args: unknown[]) => {
      (a[m] as (...x: unknown[]) => void)(...args);
      (b[m] as (...x: unknown[]) => void)(...args);
    };
  }
  return both as unknown as Progress;
}
