// A checkpoint resumes only under the number of processes that wrote it (its marker's world_size).
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { resolveConfig } from '../../src/config/resolve.js';
import { UsageError } from '../../src/errors.js';
import { newestCompleteCheckpoint } from '../../src/artifacts/checkpoints.js';
import { checkResumeWorldSize } from '../../src/pipeline/resume.js';
import { tmp } from '../helpers/cli.js';

function stageWithCheckpoint(marker: Record<string, unknown>): string {
  const stage = tmp();
  const ckpt = join(stage, 'checkpoints', 'checkpoint-20');
  mkdirSync(ckpt, { recursive: true });
  writeFileSync(join(ckpt, 'posttrain-complete.json'), JSON.stringify({ complete: true, step: 20, ...marker }));
  return stage;
}

const config = (n: number) =>
  resolveConfig({ preset: 'smoke', set: n > 1 ? ['runtime.launcher=accelerate', `runtime.num_processes=${n}`] : [] }).config;

describe('resume and world size', () => {
  it('reads world_size from the marker; markers without one were written by one process', () => {
    expect(newestCompleteCheckpoint(stageWithCheckpoint({ world_size: 2 }))?.worldSize).toBe(2);
    expect(newestCompleteCheckpoint(stageWithCheckpoint({}))?.worldSize).toBe(1);
  });

  it('allows the same world size and refuses another, naming both numbers and the fix', () => {
    const two = stageWithCheckpoint({ world_size: 2 });
    expect(() => checkResumeWorldSize(two, config(2), 'sft')).not.toThrow();
    let err: unknown;
    try {
      checkResumeWorldSize(two, config(1), 'sft');
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(UsageError);
    expect((err as UsageError).message).toMatch(/step 20\) was written by 2 processes, but runtime\.num_processes is 1/);
    expect((err as UsageError).hint).toMatch(/--set runtime\.num_processes=2/);
    expect(() => checkResumeWorldSize(stageWithCheckpoint({}), config(4), 'sft')).toThrow(/written by 1 process, but runtime\.num_processes is 4/);
  });

  it('says nothing when there is no checkpoint (the stage reports that itself)', () => {
    expect(() => checkResumeWorldSize(tmp(), config(2), 'sft')).not.toThrow();
  });
});
