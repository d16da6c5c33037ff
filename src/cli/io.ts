// Where commands write. The real CLI uses the process streams; tests pass buffers, so a whole
// command runs in-process and its output and exit code are asserted on directly.
export interface CliIO {
  out: (text: string) => void;
  err: (text: string) => void;
  /** True when stdout is a terminal. */
  isTTY: boolean;
  /** True when stderr is a terminal: progress may redraw in place there (see src/ui/select.ts). */
  errIsTTY: boolean;
  /** stderr's width in columns when it is a terminal (read when used: the terminal may be resized). */
  columns?: number;
  cwd: string;
  env: NodeJS.ProcessEnv;
}

export const processIO = (): CliIO => ({
  out: (t) => process.stdout.write(t),
  err: (t) => process.stderr.write(t),
  isTTY: Boolean(process.stdout.isTTY),
  errIsTTY: Boolean(process.stderr.isTTY),
  get columns() {
    return process.stderr.columns;
  },
  cwd: process.cwd(),
  env: process.env,
});
