// Where commands write. The real CLI uses the process streams; tests pass buffers, so a whole
// command runs in-process and its output and exit code are asserted on directly.
export interface CliIO {
  out: (text: string) => void;
  err: (text: string) => void;
  /** True when stdout is a terminal (progress redraws in place). */
  isTTY: boolean;
  cwd: string;
  env: NodeJS.ProcessEnv;
}

export const processIO = (): CliIO => ({
  out: (t) => process.stdout.write(t),
  err: (t) => process.stderr.write(t),
  isTTY: Boolean(process.stdout.isTTY),
  cwd: process.cwd(),
  env: process.env,
});
