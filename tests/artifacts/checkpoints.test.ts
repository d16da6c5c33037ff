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
      { step: 5, path: c5, complete: true },
      { step: 10, path: c10, complete: true },
      { step: 20, path: c20, complete: false },
      { step: 40, path: c40, complete: false },
    ]);
    expect(newestCompleteCheckpoint(stage)).toEqual({ step: 10, path: c10, complete: true });
  });

  it('no checkpoints folder, or only incomplete checkpoints: nothing to resume from', () => {
    const stage = tempDir();
    expect(listCheckpoints(stage)).toEqual([]);
    expect(newestCompleteCheckpoint(stage)).toBeNull();
    checkpoint(stage, 'checkpoint-3', null);
    expect(newestCompleteCheckpoint(stage)).toBeNull();
  });
});
