// Typed errors. Core code throws these; exactly one place (src/cli/main.ts) maps them to
// exit codes and prints them. Anything that is not a PosttrainError is a bug and gets a
// stack trace only under --debug.

export const EXIT = {
  ok: 0,
  runFailed: 1,
  usage: 2,
  interrupted: 130,
} as const;

export type ExitCode = (typeof EXIT)[keyof typeof EXIT];

export class PosttrainError extends Error {
  readonly exitCode: ExitCode;
  /** One line telling the user what to do about it. */
  hint: string | undefined;

  constructor(message: string, opts: { exitCode: ExitCode; hint?: string; cause?: unknown }) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = new.target.name;
    this.exitCode = opts.exitCode;
    this.hint = opts.hint;
  }

  /** Adds what to run next: the layer that knows the run (not the bridge) appends the command. */
  continueWith(command: string, verb = 'Continue with'): this {
    this.hint = `${this.hint ? `${this.hint} ` : ''}${verb} \`${command}\`.`;
    return this;
  }
}

/** Bad flags or arguments. */
export class UsageError extends PosttrainError {
  constructor(message: string, hint?: string) {
    super(message, { exitCode: EXIT.usage, hint });
  }
}

/** One problem found in a config, located by its dot path. */
export interface ConfigIssue {
  /** Dot path into the config, e.g. `stages.grpo.num_generations` ("" for the root). */
  path: string;
  message: string;
  /** Where the offending value came from: `preset smoke`, a file path, `--set`. */
  source?: string;
}

/** The config could not be read or does not validate. Carries every issue at once. */
export class ConfigError extends PosttrainError {
  readonly issues: ConfigIssue[];

  constructor(issues: ConfigIssue[], hint?: string) {
    super(ConfigError.format(issues), { exitCode: EXIT.usage, hint });
    this.issues = issues;
  }

  static format(issues: ConfigIssue[]): string {
    const head = issues.length === 1 ? 'Invalid config:' : `Invalid config (${issues.length} problems):`;
    const lines = issues.map((i) => {
      const where = i.path === '' ? '(root)' : i.path;
      const from = i.source ? ` [from ${i.source}]` : '';
      return `  - ${where}: ${i.message}${from}`;
    });
    return [head, ...lines].join('\n');
  }
}

/** Input data is unusable (missing file, bad rows). `message` already lists the rows. */
export class DataError extends PosttrainError {
  constructor(message: string, hint?: string) {
    super(message, { exitCode: EXIT.usage, hint });
  }
}

/** A run or stage failed while executing (after its inputs were accepted). */
export class RunFailedError extends PosttrainError {
  constructor(message: string, hint?: string, cause?: unknown) {
    super(message, { exitCode: EXIT.runFailed, hint, cause });
  }
}

/** The user interrupted (Ctrl-C / SIGTERM); work was stopped cleanly. */
export class InterruptedError extends PosttrainError {
  constructor(message = 'Interrupted.', hint?: string) {
    super(message, { exitCode: EXIT.interrupted, hint });
  }
}
