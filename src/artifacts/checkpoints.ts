// Resumable checkpoints written by the sidecar: stages/<stage>/checkpoints/checkpoint-<step>/.
// A checkpoint counts only once the sidecar has written its completion marker last: a folder
// without it was cut short (crash mid-save) and must not be resumed from.
import * as fs from 'node:fs';
import * as path from 'node:path';

/** Written by the sidecar as the last file of a checkpoint. */
export const CHECKPOINT_MARKER = 'posttrain-complete.json';

export interface CheckpointInfo {
  step: number;
  path: string;
  /** The marker exists and parses as JSON. */
  complete: boolean;
}

const CHECKPOINT_DIR = /^checkpoint-(\d+)$/;

function markerOk(dir: string): boolean {
  try {
    JSON.parse(fs.readFileSync(path.join(dir, CHECKPOINT_MARKER), 'utf8'));
    return true;
  } catch {
    return false;
  }
}

/** `checkpoints/checkpoint-<int>` folders of a stage, by step ascending; anything else is ignored. */
export function listCheckpoints(stageDir: string): CheckpointInfo[] {
  const root = path.join(stageDir, 'checkpoints');
  let names: string[];
  try {
    names = fs.readdirSync(root);
  } catch {
    return []; // no checkpoints folder (yet)
  }
  const out: CheckpointInfo[] = [];
  for (const name of names) {
    const m = CHECKPOINT_DIR.exec(name);
    if (m === null) continue;
    const step = Number(m[1]);
    if (!Number.isSafeInteger(step)) continue;
    const dir = path.join(root, name);
    try {
      if (!fs.statSync(dir).isDirectory()) continue;
    } catch {
      continue;
    }
    out.push({ step, path: dir, complete: markerOk(dir) });
  }
  return out.sort((a, b) => a.step - b.step);
}

/** The complete checkpoint with the highest step, or null. */
export function newestCompleteCheckpoint(stageDir: string): CheckpointInfo | null {
  const complete = listCheckpoints(stageDir).filter((c) => c.complete);
  return complete[complete.length - 1] ?? null;
}
