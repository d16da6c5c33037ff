// A local attacker against the controller's socket. When the sidecar talks over loopback TCP, any
// user on the machine can connect to the port (`ss -ltnp`) and can read the sidecar's pid (`ps`).
// The attack reproduced on the old main: a DEALER with the routing id `sidecar-<pid>` took the
// route over (ROUTER_HANDOVER), the real sidecar's heartbeats stopped reaching the controller and
// the run was killed as hung. The attacker here is a second process, as it would be.
import { execa } from 'execa';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { planTransport } from '../../src/bridge/endpoint.js';
import { DEFAULT_VENV_PYTHON } from '../../src/paths.js';
import { fakeEnv, spawnCli, startFakeSidecar, tmp, waitFor } from '../helpers/cli.js';
import { recordReliability } from '../helpers/reliability.js';

// What an attacker without the run's key can do: connect with every routing id it can guess (the
// old fixed `sidecar-<pid>`, the pid alone, an empty one), send junk, and stay connected. The
// fourth id is the sidecar's real one, handed over by the test: even an attacker who somehow knew
// it must not displace the sidecar without a signature.
const ATTACKER = `
import sys, time, zmq
endpoint, pid, seconds, known = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]
ctx = zmq.Context()
socks = []
for rid in (f"sidecar-{pid}".encode(), pid.encode(), b"sidecar-", bytes.fromhex(known)):
    s = ctx.socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    s.setsockopt(zmq.ROUTING_ID, rid)
    s.connect(endpoint)
    socks.append(s)
print("connected", flush=True)
end = time.monotonic() + seconds
while time.monotonic() < end:
    for s in socks:
        s.send_multipart([b"\\x00" * 32, b"junk"])
    time.sleep(0.1)
print("done", flush=True)
`;

const quickStage = (steps: number) => ({ stages: { '*': { steps, step_time_s: 0.05, save_every: 0 } } });

describe('security: the controller socket against a local attacker', () => {
  it('over TCP, a second process connecting with the sidecar routing ids it can guess does not take the route over', async () => {
    const warnings: string[] = [];
    const steps = 60;
    const s = await startFakeSidecar(quickStage(steps), { heartbeatIntervalS: 0.2, heartbeatTimeoutS: 1.5, transport: 'tcp', onBridgeWarning: (m) => warnings.push(m) });
    try {
      expect(s.endpoint).toMatch(/^tcp:\/\/127\.0\.0\.1:\d+$/);
      const seen: number[] = [];
      const stage = s.runStage({ stage: 'sft', config: { model: { id: 'x' } }, stage_dir: tmp(), data: {}, init_adapter: null, resume_from: null }, { onMetric: (m) => seen.push(m.step) });
      const attacker = execa(DEFAULT_VENV_PYTHON, ['-c', ATTACKER, s.endpoint!, String(s.hello.pid), '3', (s as unknown as { peer: Buffer }).peer.toString('hex')], { reject: false });
      const result = await stage.catch((e: Error) => ({ status: `rejected: ${e.name}: ${e.message}` }));
      const a = await attacker;
      expect(a.stdout, a.stderr).toContain('connected');
      const ok = result.status === 'ok' && seen.length === steps;
      recordReliability({
        fault: 'second local process connects to the loopback TCP port as the sidecar (routing ids sidecar-<pid>, <pid>, sidecar-, and the real one) and sends junk for 3 s',
        stage: 'security',
        injected: 4,
        survived: ok ? 4 : 0,
        lost: steps - seen.length,
        outcome: ok ? 'route not taken (no ROUTER_HANDOVER; a new connection is adopted only on a signed hello); stage ok with every metric; junk dropped and logged' : `run broken: ${result.status}`,
        test: 'tests/hostile/hijack.test.ts',
      });
      expect(result.status).toBe('ok');
      expect(seen).toEqual(Array.from({ length: steps }, (_, i) => i + 1));
      expect(warnings.some((w) => /bad signature/.test(w))).toBe(true);
      expect(await s.ping()).toBeGreaterThan(0);
      expect(s.alive).toBe(true);
    } finally {
      await s.shutdown();
    }
  });

  it('when the sidecar itself reconnects (an oversized message dropped its connection), a signed hello moves the route', async () => {
    const warnings: string[] = [];
    const s = await startFakeSidecar(quickStage(40), { heartbeatIntervalS: 0.2, heartbeatTimeoutS: 5, transport: 'tcp', onBridgeWarning: (m) => warnings.push(m) });
    try {
      const seen: number[] = [];
      // Over the sidecar's MAXMSGSIZE: libzmq drops the connection, the sidecar reconnects.
      const inner = s as unknown as { socket: { send(f: Buffer[]): Promise<void> }; peer: Buffer };
      await inner.socket.send([inner.peer, Buffer.alloc(32), Buffer.alloc(64 * 1024 * 1024 + 16)]);
      // What was queued behind the dropped frame is lost with that connection: wait for the new route.
      await waitFor(() => warnings.some((w) => /reconnected/.test(w)), 10_000, 'the signed hello of the reconnected sidecar');
      const result = await s.runStage({ stage: 'sft', config: { model: { id: 'x' } }, stage_dir: tmp(), data: {}, init_adapter: null, resume_from: null }, { onMetric: (m) => seen.push(m.step) });
      expect(result.status).toBe('ok');
      expect(seen.length).toBe(40);
      expect(await s.ping()).toBeGreaterThan(0);
    } finally {
      await s.shutdown();
    }
  });

  it('the ipc socket lives in a private folder under a short base whatever TMPDIR is (long, missing)', () => {
    const long = join(tmp(), 'x'.repeat(120));
    mkdirSync(long, { recursive: true });
    for (const TMPDIR of [long, join(tmp(), 'does-not-exist')]) {
      const plan = planTransport({ TMPDIR });
      expect(plan.kind, JSON.stringify(plan)).toBe('ipc');
      if (plan.kind === 'ipc') expect(plan.base.length).toBeLessThan(60);
    }
  });

  it('a run with TMPDIR set to a missing folder starts its sidecar (ipc under the next base) and finishes', async () => {
    const cwd = tmp();
    const child = spawnCli(['run', '--preset', 'smoke', '--stages', 'sft'], { cwd, env: { ...fakeEnv({ stages: { '*': { steps: 2, step_time_s: 0, save_every: 0 } } }), TMPDIR: join(cwd, 'gone') } });
    const exit = await child.exit;
    recordReliability({ fault: 'TMPDIR names a folder that does not exist', stage: 'config', injected: 1, survived: exit.code === 0 ? 1 : 0, lost: 0, outcome: exit.code === 0 ? 'sidecar socket made under the next short base (/tmp); run ok' : child.err().slice(-300), test: 'tests/hostile/hijack.test.ts' });
    expect(exit.code, child.err()).toBe(0);
    expect(child.err()).not.toMatch(/internal error|ENOENT/);
  });
});
