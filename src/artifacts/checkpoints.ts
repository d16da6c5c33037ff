// Resumable checkpoints written by the sidecar: stages/<stage>/checkpoints/checkpoint-<n>/, or
// for stages with several phases (RLHF: reward model, then policy) one level down,
// checkpoints/<phase>/checkpoint-<n>/. A checkpoint counts only once the sidecar has written its
// completion marker last: a folder without it was cut short (crash mid-save) and is never resumed.
// The marker's `step` is the stage-wide step (a later phase continues the earlier one's count);
// the folder number is only the phase's own trainer step.
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';

/** Written by the sidecar as the last file of a checkpoint. */
export const CHECKPOINT_MARKER = 'posttrain-complete.json';

export interface CheckpointInfo {
  /** Stage-wide step: the marker's `step` when it has one, else the folder's number. */
  step: number;
  path: string;
  /** The marker exists and parses as JSON. */
  complete: boolean;
  /** The phase sub-folder, for multi-phase stages. */
  phase: string | null;
  /** Processes that wrote it: the marker's `world_size`; markers from before distributed runs
   * carry none and were written by one process. */
  worldSize: number;
}

const CHECKPOINT_DIR = /^checkpoint-(\d+)$/;

/** The parsed marker, or null when it is missing or unreadable (an incomplete checkpoint). */
function readMarker(dir: string): { step?: unknown; world_size?: unknown } | null {
  try {
    const m = JSON.parse(fs.readFileSync(path.join(dir, CHECKPOINT_MARKER), 'utf8')) as unknown;
    return typeof m === 'object' && m !== null ? (m as { step?: unknown; world_size?: unknown }) : {};
  } catch {
    return null;
  }
}

const isDir = (p: string) => {
  try {
    return fs.statSync(p).isDirectory();
  } catch {
    return false;
  }
};

function scan(root: string, phase: string | null, out: CheckpointInfo[]): void {
  let names: string[];
  try {
    names = fs.readdirSync(root);
  } catch {
    return; // no checkpoints folder (yet)
  }
  for (const name of names) {
    const dir = path.join(root, name);
    const m = CHECKPOINT_DIR.exec(name);
    if (m === null) {
      if (phase === null && /^[a-z][a-z0-9_]*$/.test(name) && isDir(dir)) scan(dir, name, out);
      continue;
    }
    const own = Number(m[1]);
    if (!Number.isSafeInteger(own) || !isDir(dir)) continue;
    const marker = readMarker(dir);
    const step = marker !== null && Number.isSafeInteger(marker.step) ? (marker.step as number) : own;
    const ws = marker?.world_size;
    const worldSize = Number.isSafeInteger(ws) && (ws as number) > 0 ? (ws as number) : 1;
    out.push({ step, path: dir, complete: marker !== null, phase, worldSize });
  }
}

/** Checkpoint folders of a stage (phase sub-folders included), by step ascending; anything else is ignored. */
export function listCheckpoints(stageDir: string): CheckpointInfo[] {
  const out: CheckpointInfo[] = [];
  scan(path.join(stageDir, 'checkpoints'), null, out);
  return out.sort((a, b) => a.step - b.step || a.path.localeCompare(b.path));
}

/** The complete checkpoint with the highest step, or null. */
export function newestCompleteCheckpoint(stageDir: string): CheckpointInfo | null {
  const complete = listCheckpoints(stageDir).filter((c) => c.complete);
  return complete[complete.length - 1] ?? null;
}

/**
 * Why a complete checkpoint cannot be resumed from, or null when every file its marker lists
 * still has the recorded sha256 (markers written before digests were recorded pass as they are).
 */
export function damageOf(ckpt: CheckpointInfo): string | null {
  let digests: unknown;
  try {
    digests = (JSON.parse(fs.readFileSync(path.join(ckpt.path, CHECKPOINT_MARKER), 'utf8')) as { sha256?: unknown }).sha256;
  } catch {
    return `${CHECKPOINT_MARKER} is unreadable`;
  }
  if (typeof digests !== 'object' || digests === null) return null;
  for (const [name, want] of Object.entries(digests as Record<string, unknown>)) {
    const file = path.join(ckpt.path, name);
    let got: string;
    try {
      got = createHash('sha256').update(fs.readFileSync(file)).digest('hex');
    } catch {
      return `${name} is missing`;
    }
    if (got !== want) return `${name} changed since it was written (damaged)`;
  }
  return null;
}

/** The newest complete checkpoint whose files are intact; each damaged newer one is reported and skipped. */
export function newestUsableCheckpoint(stageDir: string, onDamaged: (ckpt: CheckpointInfo, why: string) => void): CheckpointInfo | null {
  const complete = listCheckpoints(stageDir).filter((c) => c.complete);
  for (let i = complete.length - 1; i >= 0; i--) {
    const why = damageOf(complete[i]!);
    if (why === null) return complete[i]!;
    onDamaged(complete[i]!, why);
  }
  return null;
}
