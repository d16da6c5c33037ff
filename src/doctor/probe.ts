// Runs sidecar/posttrain_sidecar/doctor_probe.py with the sidecar's Python and parses its one
// JSON line. The probe is a script run by path, not `-m posttrain_sidecar…`, so a broken or
// missing sidecar install is reported rather than making the probe itself fail.
import { join } from 'node:path';
import { execa } from 'execa';
import { PACKAGE_ROOT } from '../paths.js';

export const PROBE_SCRIPT = join(PACKAGE_ROOT, 'sidecar', 'posttrain_sidecar', 'doctor_probe.py');

export interface PackageInfo {
  installed: boolean;
  version: string | null;
  /** The import failed (installed or not): the exception, one line. */
  error: string | null;
}

export interface ProbeResult {
  python: { version: string; executable: string; prefix: string; base_prefix: string };
  packages: Record<string, PackageInfo>;
  optional: Record<string, PackageInfo>;
  torch: {
    version: string;
    cuda_build: string | null;
    cuda_available: boolean;
    devices: { index: number; name: string; total_bytes: number; free_bytes: number }[];
    threads: number;
    error: string | null;
  } | null;
  sidecar: { importable: boolean; location: string | null; error: string | null };
  cpu: { count: number | null; usable: number | null };
}

/** Why the probe gave no result: the interpreter is missing, timed out, or crashed. */
export interface ProbeFailure {
  kind: 'missing' | 'timeout' | 'crashed';
  message: string;
}

export async function runProbe(
  python: string,
  opts: { cwd: string; env: NodeJS.ProcessEnv; timeoutMs: number },
): Promise<ProbeResult | ProbeFailure> {
  const r = await execa(python, [PROBE_SCRIPT], {
    cwd: opts.cwd,
    // Same import path as the sidecar: the working folder is not on it (sidecar-spec.ts).
    env: { ...opts.env, PYTHONSAFEPATH: '1' },
    extendEnv: false,
    timeout: opts.timeoutMs,
    reject: false,
    stdin: 'ignore',
  });
  if (r.timedOut) return { kind: 'timeout', message: `${python} did not answer within ${Math.round(opts.timeoutMs / 1000)} s` };
  const code = (r as { code?: string }).code;
  if (code === 'ENOENT' || code === 'EACCES') {
    return { kind: 'missing', message: code === 'ENOENT' ? `${python} does not exist` : `${python} is not executable` };
  }
  const line = String(r.stdout ?? '').trim().split('\n').pop() ?? '';
  try {
    const parsed = JSON.parse(line) as ProbeResult;
    if (parsed && typeof parsed === 'object' && parsed.python && parsed.packages) return parsed;
  } catch {
    // fall through: say what the interpreter printed instead
  }
  const tail = String(r.stderr ?? '').trim().split('\n').slice(-3).join(' | ') || `exit code ${r.exitCode ?? '?'}`;
  return { kind: 'crashed', message: `${python} could not run the probe: ${tail}` };
}

export const isProbeFailure = (r: ProbeResult | ProbeFailure): r is ProbeFailure => 'kind' in r;
