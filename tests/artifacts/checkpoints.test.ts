// Checkpoint discovery: only checkpoint-<int> folders count; only marked ones are resumable.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { CHECKPOINT_MARKER, listCheckpoints, newestCompleteCheckpoint } from '../../src/artifacts/index.js';
import { tempDir } from './helpers.js';

function checkpoint(stage: string, name: string, marker: string | null): string {
  const dir = path.join(stage, 'checkpoints', name);
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'adapter_model.safetensors'), 'x');
  if (marker !== null) fs.writeFileSync(path.join(dir, CHECKPOINT_MARKER), marker);
  return dir;
}

describe('checkpoints', () => {
  it('lists checkpoint-<int> folders by numeric step; ignores other names and plain files', () => {
    const stage = tempDir();
    const c10 = checkpoint(stage, 'checkpoint-10', '{"step": 10}');
    const c5 = checkpoint(stage, 'checkpoint-5', '{"step": 5}');
    const c20 = checkpoint(stage, 'checkpoint-20', null); // save cut short
    const c40 = checkpoint(stage, 'checkpoint-40', '{"step": 4'); // marker cut short
    for (const junk of ['checkpoint-abc', 'checkpoint-', 'checkpoint-3.5', 'checkpoint--1', 'tmp-checkpoint-7', 'runs']) checkpoint(stage, junk, '{}');
    fs.writeFileSync(path.join(stage, 'checkpoints', 'checkpoint-30'), 'a file, not a folder');
    expect(listCheckpoints(stage)).toEqual([
      { step: 5, path: c5, complete: true, phase: null, worldSize: 1 },
      { step: 10, path: c10, complete: true, phase: null, worldSize: 1 },
      { step: 20, path: c20, complete: false, phase: null, worldSize: 1 },
      { step: 40, path: c40, complete: false, phase: null, worldSize: 1 },
    ]);
    expect(newestCompleteCheckpoint(stage)).toEqual({ step: 10, path: c10, complete: true, phase: null, worldSize: 1 });
  });

  it('no checkpoints folder, or only incomplete checkpoints: nothing to resume from', () => {
    const stage = tempDir();
    expect(listCheckpoints(stage)).toEqual([]);
    expect(newestCompleteCheckpoint(stage)).toBeNull();
    checkpoint(stage, 'checkpoint-3', null);
    expect(newestCompleteCheckpoint(stage)).toBeNull();
  });
});

describe('multi-phase stages (RLHF)', () => {
  it('finds checkpoints one phase folder down and orders them by the stage-wide step in the marker', async () => {
    const { mkdtempSync, mkdirSync, writeFileSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const { listCheckpoints, newestCompleteCheckpoint } = await import('../../src/artifacts/checkpoints.js');
    const stage = mkdtempSync(join(tmpdir(), 'ckpt-phase-'));
    const mk = (rel: string, marker?: object) => {
      const d = join(stage, 'checkpoints', rel);
      mkdirSync(d, { recursive: true });
      if (marker) writeFileSync(join(d, 'posttrain-complete.json'), JSON.stringify(marker));
      return d;
    };
    mk('reward_model/checkpoint-10', { step: 10, phase: 'reward_model' });
    mk('reward_model/checkpoint-20', { step: 20, phase: 'reward_model' });
    const policy5 = mk('policy/checkpoint-5', { step: 25, phase: 'policy' });
    mk('policy/checkpoint-10'); // incomplete
    const list = listCheckpoints(stage);
    expect(list.map((c) => [c.phase, c.step, c.complete])).toEqual([
      ['policy', 10, false], // same step: ordered by path
      ['reward_model', 10, true],
      ['reward_model', 20, true],
      ['policy', 25, true],
    ]);
    expect(newestCompleteCheckpoint(stage)).toMatchObject({ path: policy5, step: 25, phase: 'policy' });
  });
});
