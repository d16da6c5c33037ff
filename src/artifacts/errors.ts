// Errors raised by the artifact store. RunLockedError and RunNotFoundError live next to the code
// that throws them (lock.ts, runs.ts); this file holds the shared one.
import { EXIT, PosttrainError } from '../errors.js';

/** A run folder's files could not be read or written (missing, corrupt, disk full, read-only…). */
export class ArtifactError extends PosttrainError {
  constructor(message: string, hint?: string, cause?: unknown) {
    super(message, { exitCode: EXIT.runFailed, hint, cause });
  }
}
