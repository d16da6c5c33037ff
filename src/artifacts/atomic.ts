// Atomic file writes: JSON state files (run.json, summary.json, .lock takeovers) are never found
// half-written. Data goes to a temp file in the same folder, is fsynced, then renamed over the
// target (rename is atomic within one file system); the folder is fsynced too, best effort, so
// the rename itself survives a power cut. On any failure the temp file is removed and the
// previous content of the target stays exactly as it was.
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ArtifactError } from './errors.js';

/** OS error codes in plain words. */
const REASONS: Readonly<Record<string, string>> = {
  ENOSPC: 'disk full',
  EDQUOT: 'disk quota exceeded',
  EACCES: 'not writable',
  EPERM: 'not writable',
  EROFS: 'not writable, read-only file system',
  ENOENT: 'no such file or folder',
  ENOTDIR: 'a parent of the path is not a folder',
  EISDIR: 'it is a folder',
  EFBIG: 'file-size limit reached',
  EMFILE: 'too many open files',
  ENFILE: 'too many open files',
  EIO: 'I/O error',
  ENAMETOOLONG: 'the path is too long',
};

const HINTS: Readonly<Record<string, string>> = {
  ENOSPC: 'free some disk space (or set runtime.runs_dir to a folder on a bigger disk) and try again',
  EDQUOT: 'free some space within your quota (or set runtime.runs_dir elsewhere) and try again',
  EACCES: "check the folder's permissions, or set runtime.runs_dir to a folder you can write to",
  EPERM: "check the folder's permissions, or set runtime.runs_dir to a folder you can write to",
  EROFS: 'set runtime.runs_dir to a folder on a writable file system',
  EFBIG: 'raise the file-size limit (ulimit -f) or use a file system that allows larger files',
  EMFILE: 'raise the open-file limit (ulimit -n) and try again',
  ENFILE: 'close some programs (the system ran out of file handles) and try again',
};

/** The `code` of a Node.js system error (`ENOSPC`, …), if it has one. */
export function fsErrorCode(err: unknown): string | undefined {
  if (typeof err === 'object' && err !== null && 'code' in err) {
    const code = (err as { code: unknown }).code;
    if (typeof code === 'string') return code;
  }
  return undefined;
}

/** A short reason for an OS error: `disk full (ENOSPC)`, `not writable (EACCES)`. */
export function describeFsError(err: unknown): string {
  const code = fsErrorCode(err);
  const reason = code === undefined ? undefined : REASONS[code];
  if (code !== undefined && reason !== undefined) return `${reason} (${code})`;
  if (err instanceof Error) return err.message;
  return String(err);
}

/** An ArtifactError for a failed write of `file`, naming the path and the OS reason. */
export function writeError(file: string, err: unknown): ArtifactError {
  if (err instanceof ArtifactError) return err;
  const code = fsErrorCode(err);
  const hint = code === undefined ? undefined : HINTS[code];
  return new ArtifactError(`Could not write ${file}: ${describeFsError(err)}.`, hint, err);
}

/**
 * mkdir that names the real reason. Node's recursive mkdir reports ENOENT when a missing parent
 * cannot be created (a read-only file system, a folder without write permission): that sent users
 * looking for a missing folder. On ENOENT the first missing folder is created alone, whose error
 * is the true one (EROFS, EACCES…). `mode` is applied exactly (mkdir's is masked by the umask) to
 * `dir` itself. Throws ArtifactError naming the path; EEXIST (non-recursive) is rethrown as is.
 */
export function makeDir(dir: string, o: { recursive?: boolean; mode?: number } = {}): void {
  const recursive = o.recursive ?? true;
  try {
    fs.mkdirSync(dir, { recursive, ...(o.mode === undefined ? {} : { mode: o.mode }) });
    if (o.mode !== undefined) fs.chmodSync(dir, o.mode);
  } catch (err) {
    if (fsErrorCode(err) === 'EEXIST') throw err;
    if (fsErrorCode(err) === 'ENOENT') {
      let first = path.resolve(dir);
      while (!fs.existsSync(path.dirname(first)) && path.dirname(first) !== first) first = path.dirname(first);
      try {
        fs.mkdirSync(first);
      } catch (inner) {
        if (fsErrorCode(inner) !== 'EEXIST') throw writeError(first, inner);
      }
      if (recursive) return makeDir(dir, o);
    }
    throw writeError(dir, err);
  }
}

/** fsync a folder so a rename inside it is durable. Not supported everywhere (Windows): ignored. */
export function fsyncDir(dir: string): void {
  let fd: number | undefined;
  try {
    fd = fs.openSync(dir, 'r');
    fs.fsyncSync(fd);
  } catch {
    // best effort
  } finally {
    if (fd !== undefined) {
      try {
        fs.closeSync(fd);
      } catch {
        // ignore
      }
    }
  }
}

/** Write all of `buf` to `fd` (writeSync may write less than asked). */
export function writeAllSync(fd: number, buf: Uint8Array): void {
  let off = 0;
  while (off < buf.length) off += fs.writeSync(fd, buf, off, buf.length - off);
}

/**
 * Replace `file` with `data` atomically: readers see either the old content or the new one,
 * never a mix. Throws ArtifactError (naming the path and the reason) on failure, leaving the
 * old content intact and no temp file behind.
 */
export function writeFileAtomic(file: string, data: string | Uint8Array): void {
  const dir = path.dirname(file);
  const tmp = path.join(dir, `.${path.basename(file)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
  const buf = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
  let fd: number | undefined;
  try {
    fd = fs.openSync(tmp, 'wx');
    writeAllSync(fd, buf);
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    fd = undefined;
    fs.renameSync(tmp, file);
  } catch (err) {
    if (fd !== undefined) {
      try {
        fs.closeSync(fd);
      } catch {
        // already failing; the original error is the one to report
      }
    }
    try {
      fs.unlinkSync(tmp);
    } catch {
      // never created, or already renamed
    }
    throw writeError(file, err);
  }
  fsyncDir(dir);
}

/** Write `value` as pretty JSON (2-space indent) plus a trailing newline, atomically. */
export function writeJsonAtomic(file: string, value: unknown): void {
  writeFileAtomic(file, `${JSON.stringify(value, null, 2)}\n`);
}

/** Read and parse a JSON file. Missing, unreadable or corrupt files give an ArtifactError naming the path. */
export function readJson<T>(file: string): T {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    const code = fsErrorCode(err);
    if (code === 'ENOENT') throw new ArtifactError(`${file} does not exist.`, undefined, err);
    throw new ArtifactError(`Could not read ${file}: ${describeFsError(err)}.`, undefined, err);
  }
  if (text.trim() === '') {
    throw new ArtifactError(`${file} is empty.`, 'the file was cut short (crash or full disk); restore it or remove it', undefined);
  }
  try {
    return JSON.parse(text) as T;
  } catch (err) {
    const why = err instanceof Error ? err.message : String(err);
    throw new ArtifactError(`${file} is not valid JSON (${why}).`, 'the file is damaged; restore it or remove it', err);
  }
}
