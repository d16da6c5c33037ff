// runtime.accelerate_config: a built-in name (YAML files shipped in data/accelerate/) or a path
// to a user's accelerate config file (made absolute by resolve.ts).
import { join } from 'node:path';
import { PACKAGE_ROOT } from '../paths.js';

export const ACCELERATE_CONFIGS_DIR = join(PACKAGE_ROOT, 'data', 'accelerate');
export const BUILTIN_ACCELERATE_CONFIGS = ['ddp', 'fsdp', 'deepspeed-zero2', 'deepspeed-zero3'] as const;
/** Built-ins that shard across GPUs: nothing to shard on CPU, and DeepSpeed/FSDP need CUDA. */
export const GPU_ONLY_ACCELERATE_CONFIGS: readonly string[] = ['fsdp', 'deepspeed-zero2', 'deepspeed-zero3'];

export const isBuiltinAccelerateConfig = (v: string): boolean => (BUILTIN_ACCELERATE_CONFIGS as readonly string[]).includes(v);

/** The accelerate config file a launch uses: the named built-in, the user's file, or ddp when unset. */
export function accelerateConfigFile(value: string | null): string {
  const v = value ?? 'ddp';
  return isBuiltinAccelerateConfig(v) ? join(ACCELERATE_CONFIGS_DIR, `${v}.yaml`) : v;
}
