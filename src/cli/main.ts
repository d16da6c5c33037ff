// The commander program. Each command lives in its own file: parse flags, call one core
// function, print. Errors are mapped to exit codes here and nowhere else.
import { Command, CommanderError } from 'commander';
import { describeFsError, fsErrorCode, writeError } from '../artifacts/atomic.js';
import { EXIT, PosttrainError } from '../errors.js';
import { PACKAGE_VERSION } from '../paths.js';
import { registerConfig } from './commands/config.js';
import { registerDoctor } from './commands/doctor.js';
import { registerPlan } from './commands/plan.js';
import { registerPresets } from './commands/presets.js';
import { registerReport } from './commands/report.js';
import { registerRun } from './commands/run.js';
import { registerRuns } from './commands/runs.js';
import { registerSchema } from './commands/schema.js';
import { registerStage } from './commands/stage.js';
import { registerValidate } from './commands/validate.js';
import { type CliIO, processIO } from './io.js';
import type { ErrorEvent } from '../ui/ndjson.js';
import { inert } from '../ui/inert.js';
import { ndjsonErrorSink } from '../ui/select.js';

export function buildProgram(io: CliIO): Command {
  const program = new Command('posttrain')
    .description('Post-training pipeline for causal language models: SFT → DPO → GRPO → RLHF.')
    .version(PACKAGE_VERSION, '-V, --version')
    .option('--debug', 'show stack traces for errors')
    .showSuggestionAfterError(true)
    .exitOverride()
    .configureOutput({ writeOut: io.out, writeErr: io.err })
    .addHelpText(
      'after',
      `
Examples:
  $ posttrain run --preset smoke                 all four stages on the offline tiny model (CPU)
  $ posttrain config --preset gpu --set stages.sft.learning_rate=1e-4
  $ posttrain validate sft gsm8k.jsonl --map prompt=question --map response=answer

Exit codes: 0 ok, 1 run failed, 2 usage/config/data error, 130 interrupted.`,
    );
  for (const register of [registerRun, registerStage, registerRuns, registerReport, registerConfig, registerPlan, registerPresets, registerValidate, registerSchema, registerDoctor]) {
    register(program, io);
  }
  // Subcommands inherit output routing and exit behaviour.
  for (const c of program.commands) c.exitOverride().configureOutput({ writeOut: io.out, writeErr: io.err }).showSuggestionAfterError(true);
  return program;
}

/** Run the CLI; resolves to the exit code. Never throws for user mistakes. */
export async function runCli(argv: readonly string[], io: CliIO = processIO()): Promise<number> {
  const program = buildProgram(io);
  const debug = argv.includes('--debug');
  try {
    await program.parseAsync([...argv], { from: 'user' });
    return EXIT.ok;
  } catch (e) {
    return reportError(e, io, debug, ndjsonErrorSink(program, io));
  }
}

/** `event`: a command streaming NDJSON (--json) also gets the error as its last event. */
export function reportError(e: unknown, io: CliIO, debug: boolean, event?: (e: ErrorEvent) => void): number {
  if (e instanceof CommanderError) {
    // Commander already printed its message (with "Did you mean …?" where it has one).
    if (e.code === 'commander.helpDisplayed' || e.code === 'commander.version' || e.code === 'commander.help') return EXIT.ok;
    if (e.exitCode === 0) return EXIT.ok;
    io.err(`(see \`posttrain ${'--help'}\`)\n`);
    event?.({ code: 'usage_error', message: e.message, hint: 'see `posttrain --help`', exit_code: EXIT.usage });
    return EXIT.usage;
  }
  if (e instanceof PosttrainError) {
    // Messages can carry text from files and the sidecar (a data row, a reward function's exception).
    io.err(`error: ${inert(e.message)}\n`);
    if (e.hint) io.err(`hint: ${inert(e.hint)}\n`);
    if (debug && e.stack) io.err(`${e.stack}\n`);
    event?.({ code: snakeCase(e.name), message: e.message, hint: e.hint ?? null, exit_code: e.exitCode });
    return e.exitCode;
  }
  // An OS error that reached here unwrapped (a write to a full disk deep in a helper) is the
  // machine's state, not a bug: say what the OS said, in words, with the hint for it.
  const os = e as NodeJS.ErrnoException;
  const code = fsErrorCode(e);
  if (code !== undefined && /^E[A-Z]+$/.test(code) && typeof os.syscall === 'string') {
    const what = `${os.syscall}${os.path ? ` ${os.path}` : ''}`;
    io.err(`error: ${what} failed: ${describeFsError(e)}.\n`);
    const hint = writeError(os.path ?? '', e).hint;
    if (hint) io.err(`hint: ${hint}\n`);
    if (debug && os.stack) io.err(`${os.stack}\n`);
    event?.({ code, message: `${what} failed: ${describeFsError(e)}`, hint: hint ?? null, exit_code: EXIT.runFailed });
    return EXIT.runFailed;
  }
  // Not a user mistake: a bug. Say so plainly; the stack only with --debug.
  const err = e as Error;
  io.err(`error: internal error: ${inert(err?.message ?? String(e))}\n`);
  io.err(debug ? `${err?.stack ?? ''}\n` : 'hint: rerun with --debug for the stack trace, and please report it.\n');
  event?.({ code: 'internal', message: `internal error: ${err?.message ?? String(e)}`, hint: 'rerun with --debug for the stack trace, and please report it', exit_code: EXIT.runFailed });
  return EXIT.runFailed;
}

/** ConfigError → config_error (the class name is the error's kind in --json's error event). */
const snakeCase = (name: string) => name.replace(/([a-z0-9])([A-Z])/g, '$1_$2').toLowerCase();
