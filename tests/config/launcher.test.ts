// runtime.launcher / num_processes / accelerate_config: which combinations are accepted, and the
// environment the sidecar gets to start its launcher.
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ACCELERATE_CONFIGS_DIR, BUILTIN_ACCELERATE_CONFIGS } from '../../src/config/accelerate.js';
import { resolveConfig } from '../../src/config/resolve.js';
import { ConfigError } from '../../src/errors.js';
import { launcherEnv } from '../../src/pipeline/sidecar-spec.js';
import { tmp } from '../helpers/cli.js';

const DDP = ['runtime.launcher=accelerate', 'runtime.num_processes=2'];

function issues(set: string[]) {
  try {
    resolveConfig({ preset: 'smoke', set });
  } catch (e) {
    if (e instanceof ConfigError) return e.issues;
    throw e;
  }
  return [];
}

describe('launcher config', () => {
  it('ships every built-in accelerate config', () => {
    for (const name of BUILTIN_ACCELERATE_CONFIGS) expect(existsSync(join(ACCELERATE_CONFIGS_DIR, `${name}.yaml`)), name).toBe(true);
  });

  it('refuses the GPU-only built-ins on CPU, naming the key', () => {
    for (const name of ['fsdp', 'deepspeed-zero2', 'deepspeed-zero3']) {
      const found = issues([...DDP, `runtime.accelerate_config=${name}`]);
      expect(found.map((i) => i.path), name).toEqual(['runtime.accelerate_config']);
      expect(found[0]!.message).toMatch(/runtime\.device is "cpu".*"ddp"/);
    }
    expect(issues([...DDP, 'runtime.accelerate_config=ddp'])).toEqual([]);
  });

  it('wants a built-in name or an existing file', () => {
    const found = issues([...DDP, 'runtime.accelerate_config=./nope.yaml']);
    expect(found.map((i) => i.path)).toEqual(['runtime.accelerate_config']);
    expect(found[0]!.message).toMatch(/neither a built-in \(ddp, fsdp, deepspeed-zero2, deepspeed-zero3\) nor an existing file/);
    const dir = tmp();
    writeFileSync(join(dir, 'mine.yaml'), 'distributed_type: MULTI_GPU\n');
    expect(issues([...DDP, `runtime.accelerate_config=${join(dir, 'mine.yaml')}`])).toEqual([]);
  });

  it('tells the sidecar which launcher, how many ranks and which accelerate file', () => {
    expect(launcherEnv(resolveConfig({ preset: 'smoke' }).config)).toEqual({});
    expect(launcherEnv(resolveConfig({ preset: 'smoke', set: DDP }).config)).toEqual({
      POSTTRAIN_LAUNCHER: 'accelerate',
      POSTTRAIN_NUM_PROCESSES: '2',
      POSTTRAIN_ACCELERATE_CONFIG: join(ACCELERATE_CONFIGS_DIR, 'ddp.yaml'),
    });
    expect(launcherEnv(resolveConfig({ preset: 'smoke', set: ['runtime.launcher=torchrun', 'runtime.num_processes=4'] }).config)).toEqual({
      POSTTRAIN_LAUNCHER: 'torchrun',
      POSTTRAIN_NUM_PROCESSES: '4',
    });
  });
});
