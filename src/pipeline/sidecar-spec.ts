// How a run's sidecar is started: which interpreter, which module, which timeouts.
import { existsSync } from 'node:fs';
import type { Config } from '../config/schema.js';
import { SidecarStartError } from '../bridge/errors.js';
import { accelerateConfigFile } from '../config/accelerate.js';
import type { SidecarSpec } from '../bridge/sidecar.js';
import { DEFAULT_VENV_PYTHON, PACKAGE_ROOT } from '../paths.js';

/**
 * Test hook: POSTTRAIN_SIDECAR_MODULE=posttrain_sidecar.fake runs the fake sidecar (a real
 * process speaking the real protocol, without torch). Runs made that way are marked
 * `fake_sidecar: true` in run.json and announced on stderr.
 */
export const sidecarModule = (env: NodeJS.ProcessEnv): string => env.POSTTRAIN_SIDECAR_MODULE || 'posttrain_sidecar';

/** The sidecar's interpreter: runtime.python, else POSTTRAIN_PYTHON, else the project virtualenv
 * (`posttrain doctor` checks the same one). */
export const sidecarPython = (configured: string | null | undefined, env: NodeJS.ProcessEnv): string =>
  configured ?? (env.POSTTRAIN_PYTHON || undefined) ?? DEFAULT_VENV_PYTHON;

/**
 * runtime.launcher accelerate/torchrun: the spawned `python -m posttrain_sidecar` reads these and
 * replaces itself (same pid) with the launcher, which starts num_processes ranks; rank 0 speaks
 * the protocol (sidecar/posttrain_sidecar/distributed.py). Killing the spawned pid kills the ranks.
 */
export function launcherEnv(config: Config): Record<string, string> {
  const { launcher, num_processes: n, accelerate_config: ac } = config.runtime;
  if (launcher === 'local') return {};
  return {
    POSTTRAIN_LAUNCHER: launcher,
    POSTTRAIN_NUM_PROCESSES: String(n),
    ...(launcher === 'accelerate' ? { POSTTRAIN_ACCELERATE_CONFIG: accelerateConfigFile(ac) } : {}),
  };
}

export function sidecarSpec(config: Config, env: NodeJS.ProcessEnv, cwd: string): Omit<SidecarSpec, 'onStderrLine' | 'onBridgeWarning'> {
  const python = sidecarPython(config.runtime.python, env);
  if (python.includes('/') && !existsSync(python)) {
    throw new SidecarStartError(
      `The sidecar's Python (${python}) does not exist.`,
      '',
      python === DEFAULT_VENV_PYTHON ? `Run \`make setup\` in ${PACKAGE_ROOT} to create the virtualenv.` : 'Fix runtime.python (or POSTTRAIN_PYTHON).',
    );
  }
  return {
    python,
    module: sidecarModule(env),
    cwd,
    env: {
      // The working folder is NOT on the sidecar's import path (a user's datasets.py or trl.py would
      // replace the library): -m would put it first, PYTHONSAFEPATH stops that (inherited by the
      // launcher's ranks). Reward modules named in the config import from it (rewards.py).
      PYTHONSAFEPATH: '1',
      ...(env.PYTHONPATH ? { PYTHONPATH: env.PYTHONPATH } : {}),
      ...(config.runtime.threads ? { OMP_NUM_THREADS: String(config.runtime.threads) } : {}),
      // The fake sidecar's script travels with the caller's environment (in-process tests pass io.env).
      ...(env.POSTTRAIN_FAKE_SCRIPT ? { POSTTRAIN_FAKE_SCRIPT: env.POSTTRAIN_FAKE_SCRIPT } : {}),
      ...launcherEnv(config),
    },
    startTimeoutS: config.runtime.start_timeout_s,
    heartbeatIntervalS: config.runtime.heartbeat_interval_s,
    heartbeatTimeoutS: config.runtime.heartbeat_timeout_s,
    stallTimeoutS: config.runtime.stall_timeout_s,
  };
}
