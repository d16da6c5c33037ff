// The bridge on its own: start a fake sidecar, round-trip pings, stream a burst of metrics in
// order, shut down cleanly. At step_time_s 0 the sidecar coalesces waiting metric events into
// event.metrics envelopes (protocol 1.1): order across batch boundaries and around checkpoints
// must survive that.
import { statSync } from 'node:fs';
import { dirname } from 'node:path';
import { describe, expect, it } from 'vitest';
import { startFakeSidecar, tmp } from '../helpers/cli.js';

const start = (script: unknown, warnings: string[] = []) => startFakeSidecar(script, { onBridgeWarning: (m: string) => warnings.push(m) });

describe('Sidecar bridge', () => {
  it('pings, streams 2,000 metrics in order, and shuts down with exit 0', async () => {
    const s = await start({ stages: { '*': { steps: 2000, step_time_s: 0, save_every: 0 } } });
    expect(s.hello).toMatchObject({ protocol: '1.1', fake: true });
    // Reachable by this user only: an ipc socket inside a 0700 folder (or loopback tcp).
    if (s.endpoint.startsWith('ipc://')) expect(statSync(dirname(s.endpoint.slice('ipc://'.length))).mode & 0o777).toBe(0o700);
    else expect(s.endpoint).toMatch(/^tcp:\/\/127\.0\.0\.1:/);
    const rtt = await s.ping();
    expect(rtt).toBeGreaterThan(0);
    expect(rtt).toBeLessThan(1000);
    const seen: number[] = [];
    const dir = tmp();
    const result = await s.runStage({ stage: 'sft', config: { model: { id: 'x' } }, stage_dir: dir, data: {}, init_adapter: null, resume_from: null }, { onMetric: (m) => seen.push(m.step) });
    expect(result.status).toBe('ok');
    expect(seen).toEqual(Array.from({ length: 2000 }, (_, i) => i + 1));
    await s.shutdown();
    expect(s.alive).toBe(false);
  });

  it('batched metrics keep their order across batches, around checkpoints, and all arrive before the result', async () => {
    const warnings: string[] = [];
    const steps = 3000;
    const s = await start({ stages: { '*': { steps, step_time_s: 0, save_every: 250, metrics_per_step: 2 } } }, warnings);
    try {
      const seq: string[] = [];
      let metrics = 0;
      const result = await s.runStage(
        { stage: 'sft', config: { model: { id: 'x' } }, stage_dir: tmp(), data: {}, init_adapter: null, resume_from: null },
        {
          onMetric: (m) => {
            metrics += 1;
            seq.push(`m${m.step}${m.values['train/substep'] === undefined ? '' : 's'}`);
          },
          onCheckpoint: (c) => seq.push(`c${c.step}`),
        },
      );
      const atResult = metrics;
      expect(result.status).toBe('ok');
      expect(atResult).toBe(steps * 2);
      const expected: string[] = [];
      for (let i = 1; i <= steps; i++) {
        expected.push(`m${i}`, `m${i}s`);
        if (i % 250 === 0) expected.push(`c${i}`);
      }
      expect(seq).toEqual(expected);
      expect(warnings).toEqual([]);
      expect(await s.ping()).toBeGreaterThan(0);
    } finally {
      await s.shutdown();
    }
  });
});
