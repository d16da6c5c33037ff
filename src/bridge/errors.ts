// Typed failures of the sidecar process and of stages it runs. Out-of-band (the process died,
// hung, never started) carry exit code / signal and the stderr tail; in-band carry the
// sidecar's {code, message, traceback, retryable}. The bridge knows no run: the pipeline appends
// the command that continues (PosttrainError.continueWith, pipeline/commands.ts).
import { RunFailedError } from '../errors.js';
import type { StageErrorInfo } from './protocol.js';

const tail = (stderrTail: string) => (stderrTail.trim() ? `\n--- sidecar stderr (last lines) ---\n${stderrTail.trimEnd()}\n---` : '');

export class SidecarStartError extends RunFailedError {
  constructor(message: string, readonly stderrTail = '', hint?: string) {
    super(`${message}${tail(stderrTail)}`, hint ?? 'Run `make setup` to (re)install the Python environment; rerun with --debug for details.');
  }
}

export class SidecarCrashedError extends RunFailedError {
  constructor(
    readonly processExitCode: number | null,
    readonly signal: string | null,
    readonly stderrTail: string,
    readonly stage: string | null,
  ) {
    const how = signal ? `was killed by ${signal}` : `exited with code ${processExitCode ?? '?'}`;
    super(
      `The training sidecar ${how}${stage ? ` during stage ${stage}` : ''}.${tail(stderrTail)}`,
      stage ? 'Metrics and checkpoints written so far are kept.' : undefined,
    );
  }
}

export class SidecarHungError extends RunFailedError {
  constructor(
    readonly silentForS: number,
    readonly stderrTail: string,
    readonly stage: string | null,
  ) {
    super(
      `The training sidecar stopped answering (no heartbeat for ${silentForS.toFixed(1)} s) and was stopped.${tail(stderrTail)}`,
      'If the machine is just very busy, raise runtime.heartbeat_timeout_s.',
    );
  }
}

/** Heartbeats still came (the I/O thread), but the main thread stayed in one place too long. */
export class SidecarStalledError extends SidecarHungError {
  constructor(
    readonly busy: string,
    readonly busyForS: number,
    readonly limitS: number,
    stderrTail: string,
    stage: string | null,
  ) {
    super(busyForS, stderrTail, stage);
    this.message = `The sidecar's main thread has been in ${busy} for ${Math.round(busyForS)} s (runtime.stall_timeout_s is ${limitS}); it was stopped.${tail(stderrTail)}`;
    this.hint = `If that much time is expected there, raise runtime.stall_timeout_s (null: never stop); if it is a reward function, fix it or lower stages.grpo.reward_timeout_s.`;
  }
}

export class ProtocolMismatchError extends RunFailedError {
  constructor(theirs: string, ours: string) {
    super(`The sidecar speaks protocol ${theirs}; this controller speaks ${ours}.`, 'Reinstall so both halves match: `make setup` in the posttrain folder.');
  }
}

export class StageFailedError extends RunFailedError {
  constructor(
    readonly stage: string,
    readonly info: StageErrorInfo,
  ) {
    super(`Stage ${stage} failed: [${info.code}] ${info.message}`, info.retryable ? 'This may be transient.' : 'See sidecar.log in the stage folder for the traceback.');
  }
}
