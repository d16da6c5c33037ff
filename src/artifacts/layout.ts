// Well-known paths inside a run folder (see runs.ts for the folder itself).
import * as path from 'node:path';
import type { StageName } from '../config/schema.js';
import { stageDir } from './runs.js';

/** `data/<target>.jsonl`: canonical rows for one data target, written by the controller. */
export function dataPath(runDir: string, target: string): string {
  return path.join(runDir, 'data', `${target}.jsonl`);
}

export interface StagePaths {
  dir: string;
  adapter: string;
  checkpoints: string;
  metrics: string;
  summary: string;
  log: string;
}

/** Every well-known path inside a stage folder. */
export function stagePaths(runDir: string, stage: StageName): StagePaths {
  const dir = stageDir(runDir, stage);
  return {
    dir,
    adapter: path.join(dir, 'adapter'),
    checkpoints: path.join(dir, 'checkpoints'),
    metrics: path.join(dir, 'metrics.jsonl'),
    summary: path.join(dir, 'summary.json'),
    log: path.join(dir, 'sidecar.log'),
  };
}
