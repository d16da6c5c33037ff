// Where the controller's ROUTER listens. One definition, read by the bridge and by `doctor`.
//
// Invariant: only this user's processes can reach the socket, or, where that cannot be had, no one
// without the run's key can speak as the sidecar or take its route.
// - ipc (preferred): a Unix socket inside a fresh mkdtemp folder (0700), so the kernel refuses any
//   other user's connect(). A Unix socket path is limited to 107 bytes (sun_path), so the folder is
//   made under the first SHORT base that exists and is writable: $TMPDIR, $XDG_RUNTIME_DIR, /tmp,
//   /dev/shm. A long or missing $TMPDIR (a deep CI workspace, a stale export) therefore no longer
//   decides the transport. Never the abstract namespace (`ipc://@…`): it has no permissions at all.
// - tcp://127.0.0.1:* when no base is short and writable: any local user can connect. What keeps
//   the run safe then is in the protocol, not here: every message is HMAC-signed with the run's key,
//   the sidecar's routing id is random per connection (not the guessable `sidecar-<pid>`), and the
//   controller has no ROUTER_HANDOVER: a second connection cannot take an id that is in use, and the
//   route moves to a new connection only on a validly signed hello (src/bridge/sidecar.ts).
// Known limit: someone with this user's uid (or root) can read the key from /proc/<pid>/environ.
import { accessSync, constants, mkdtempSync, statSync } from 'node:fs';
import { join } from 'node:path';

/** sun_path is 108 bytes with its NUL; libzmq takes the path after `ipc://`. */
const MAX_SOCKET_PATH = 107;
/** mkdtemp's suffix and the socket's own name: `/pt-XXXXXX/s`. */
const SUFFIX = '/pt-XXXXXX/s'.length;

export type TransportPlan =
  | { kind: 'ipc'; base: string; skipped: string[] }
  | { kind: 'tcp'; reason: string };

/** Candidate bases in order, without duplicates. `env` is process.env unless a test passes its own. */
export function ipcBases(env: NodeJS.ProcessEnv = process.env): string[] {
  const bases = [env.TMPDIR, env.XDG_RUNTIME_DIR, '/tmp', '/dev/shm'].filter((b): b is string => !!b && b.startsWith('/'));
  return [...new Set(bases.map((b) => b.replace(/\/+$/, '') || '/'))];
}

/** Which transport a sidecar started now would use, and why the bases before it were passed over. */
export function planTransport(env: NodeJS.ProcessEnv = process.env, force?: 'ipc' | 'tcp'): TransportPlan {
  if (force === 'tcp') return { kind: 'tcp', reason: 'asked for' };
  const skipped: string[] = [];
  for (const base of ipcBases(env)) {
    const why = unusable(base);
    if (why) skipped.push(`${base}: ${why}`);
    else return { kind: 'ipc', base, skipped };
  }
  return { kind: 'tcp', reason: skipped.length ? `no short private folder for a socket (${skipped.join('; ')})` : 'no base folder for a socket' };
}

function unusable(base: string): string | undefined {
  if (base.length + SUFFIX > MAX_SOCKET_PATH) return `path too long for a socket (${base.length} characters)`;
  try {
    if (!statSync(base).isDirectory()) return 'not a folder';
    accessSync(base, constants.W_OK | constants.X_OK);
  } catch (e) {
    return (e as NodeJS.ErrnoException).code ?? String(e);
  }
  return undefined;
}

export interface BoundPlace {
  /** What to bind: `ipc://<private folder>/s` or `tcp://127.0.0.1:*`. */
  bind: string;
  /** The private folder to remove at the end (ipc only). */
  dir?: string;
  plan: TransportPlan;
}

/** Make the private folder (ipc) and return what to bind. */
export function makePlace(force?: 'ipc' | 'tcp'): BoundPlace {
  const plan = planTransport(process.env, force);
  if (plan.kind === 'tcp') return { bind: 'tcp://127.0.0.1:*', plan };
  const dir = mkdtempSync(join(plan.base, 'pt-')); // mkdtemp makes it 0700: only this user can connect
  return { bind: `ipc://${join(dir, 's')}`, dir, plan };
}

/** One line for `doctor` and logs. */
export function describeTransport(plan: TransportPlan): string {
  if (plan.kind === 'ipc') {
    const passed = plan.skipped.length ? ` (passed over ${plan.skipped.join('; ')})` : '';
    return `ipc socket in a private 0700 folder under ${plan.base}${passed}`;
  }
  return `loopback TCP 127.0.0.1 (${plan.reason}); messages are signed and the route cannot be taken over`;
}
