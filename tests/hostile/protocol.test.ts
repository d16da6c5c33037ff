// Hostile wire traffic, TypeScript side. A second, raw ZeroMQ DEALER connects to a started
// controller (with the fake sidecar running a real stage) and sends garbage, wrong frame counts,
// unsigned and wrongly signed messages, validly signed messages from the wrong peer / for another
// session / of unknown types, and a frame over MAX_MESSAGE_BYTES. The controller drops and logs
// each one (onBridgeWarning) and the stage completes with every metric in order. decode() itself is
// checked with fast-check: whatever the frames, it returns or throws ProtocolError, nothing else.
import { randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { Packr } from 'msgpackr';
import { describe, expect, it } from 'vitest';
import * as zmq from 'zeromq';
import { checkMetric, decode, encode, MAX_MESSAGE_BYTES, MetricBody, ProtocolError, sign } from '../../src/bridge/protocol.js';
import { startFakeSidecar, tmp } from '../helpers/cli.js';
import { recordReliability } from '../helpers/reliability.js';

const packr = new Packr({ useRecords: false, mapsAsObjects: true, encodeUndefinedAsNil: true });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('hostile peer on the controller socket', () => {
  it('garbage, bad signatures, foreign peers/sessions, unknown types and an oversized frame are dropped; the stage completes', async () => {
    const warnings: string[] = [];
    const steps = 60;
    const s = await startFakeSidecar({ stages: { '*': { steps, step_time_s: 0.02, save_every: 0 } } }, { onBridgeWarning: (m) => warnings.push(m) });
    const hostile = new zmq.Dealer({ linger: 0, routingId: 'intruder' });
    const hostile2 = new zmq.Dealer({ linger: 0 });
    try {
      expect(s.endpoint).toMatch(/^(ipc|tcp):\/\//);
      hostile.connect(s.endpoint!);
      hostile2.connect(s.endpoint!);
      const seen: number[] = [];
      const stage = s.runStage({ stage: 'sft', config: { model: { id: 'x' } }, stage_dir: tmp(), data: {}, init_adapter: null, resume_from: null }, { onMetric: (m) => seen.push(m.step) });

      // The key is the run's secret; a test may borrow it to forge messages that pass the HMAC.
      const key = (s as unknown as { key: Buffer }).key;
      const envelope = (type: string, session: string, body: unknown) => packr.pack({ v: 1, id: 'x1', type, re: null, session, ts: 0, body });
      const signed = (payload: Buffer) => [sign(key, payload), payload];
      const injected: { what: string; frames: Buffer[]; warning: RegExp }[] = [
        { what: 'one garbage frame', frames: [Buffer.from('garbage')], warning: /expected 2 frames .*got 1/ },
        { what: 'three frames', frames: [Buffer.alloc(32), Buffer.from('a'), Buffer.from('b')], warning: /expected 2 frames .*got 3/ },
        { what: 'empty frames', frames: [Buffer.alloc(0), Buffer.alloc(0)], warning: /bad signature/ },
        { what: 'unsigned envelope', frames: [Buffer.alloc(0), envelope('stage.result', s.session, { stage: 'sft', status: 'ok' })], warning: /bad signature/ },
        { what: 'wrong key', frames: [sign(randomBytes(32), envelope('event.metric', s.session, {})), envelope('event.metric', s.session, {})], warning: /bad signature/ },
        { what: 'random signature', frames: [randomBytes(32), randomBytes(100)], warning: /bad signature/ },
        { what: 'signed non-msgpack', frames: signed(Buffer.from([0xc1, 0xc1, 0xc1])), warning: /not msgpack|not an envelope/ },
        { what: 'signed non-envelope', frames: signed(packr.pack([1, 2, 3])), warning: /not an envelope/ },
        { what: 'signed, another session', frames: signed(envelope('stage.result', 'other-session', { stage: 'sft', status: 'ok' })), warning: /another session/ },
        { what: 'signed, right session, wrong peer (forged stage.result)', frames: signed(envelope('stage.result', s.session, { stage: 'sft', status: 'error' })), warning: /unknown peer/ },
        { what: 'signed, unknown type, wrong peer', frames: signed(envelope('evil.type', s.session, { a: 1 })), warning: /unknown peer/ },
        { what: 'signed, bad body', frames: signed(envelope('event.metric', s.session, { stage: 1, step: 'x' })), warning: /bad event\.metric body/ },
      ];
      for (const m of injected) {
        await hostile.send(m.frames);
        await hostile2.send(m.frames);
      }
      // Over MAX_MESSAGE_BYTES: libzmq refuses the frame and drops that connection; nothing reaches decode().
      const big = Buffer.alloc(MAX_MESSAGE_BYTES + 1024);
      await hostile2.send([Buffer.alloc(32), big]);

      const result = await stage;
      expect(result.status).toBe('ok');
      expect(seen).toEqual(Array.from({ length: steps }, (_, i) => i + 1));
      // Let the last injected messages drain through the receive loop.
      for (let i = 0; i < 50 && warnings.length < injected.length * 2; i++) await sleep(20);
      let survived = 0;
      for (const m of injected) {
        const hits = warnings.filter((w) => m.warning.test(w)).length;
        expect(hits, `${m.what}: ${JSON.stringify(warnings)}`).toBeGreaterThanOrEqual(1);
        survived += 1;
      }
      expect(warnings.every((w) => !/receive loop ended/.test(w)), JSON.stringify(warnings)).toBe(true);
      expect(warnings.some((w) => /over the .*-byte limit/.test(w))).toBe(false);
      // The controller still talks to the real sidecar, and runs another stage.
      expect(await s.ping()).toBeGreaterThan(0);
      const again = await s.runStage({ stage: 'dpo', config: { model: { id: 'x' } }, stage_dir: tmp(), data: {}, init_adapter: null, resume_from: null });
      expect(again.status).toBe('ok');
      expect(s.alive).toBe(true);
      recordReliability({ fault: 'second raw DEALER on the controller socket: garbage, wrong frame counts, unsigned/wrongly signed, foreign session/peer, unknown type, bad body, 64 MiB+ frame', stage: 'protocol', injected: injected.length * 2 + 1, survived: survived * 2 + 1, lost: 0, outcome: 'each dropped and logged; oversized frame refused by libzmq; stage ok with every metric in order; ping and a second stage ok', test: 'tests/hostile/protocol.test.ts' });
    } finally {
      hostile.close();
      hostile2.close();
      await s.shutdown();
    }
  });
});

describe('decode() on hostile frames (property)', () => {
  const key = randomBytes(32);
  const session = 'sess-1';
  const onlyProtocolErrors = (frames: Buffer[]) => {
    try {
      return decode(key, session, frames);
    } catch (e) {
      if (!(e instanceof ProtocolError)) throw new Error(`decode threw ${(e as Error)?.constructor?.name}: ${String(e)}`);
      return e;
    }
  };

  it('arbitrary frames, arbitrary signed payloads, and signed arbitrary envelopes: returns or throws ProtocolError only', () => {
    let tried = 0;
    const bytes = fc.uint8Array({ maxLength: 300 }).map((b) => Buffer.from(b));
    fc.assert(
      fc.property(fc.array(bytes, { maxLength: 4 }), (frames) => {
        tried += 1;
        const r = onlyProtocolErrors(frames);
        expect(r).toBeInstanceOf(ProtocolError); // unsigned: never accepted
      }),
      { numRuns: 400 },
    );
    fc.assert(
      fc.property(bytes, (payload) => {
        tried += 1;
        onlyProtocolErrors([sign(key, payload), payload]);
      }),
      { numRuns: 400 },
    );
    const anyType = fc.oneof(fc.constantFrom('hello', 'event.state', 'event.metric', 'event.metrics', 'event.log', 'event.checkpoint', 'heartbeat', 'pong', 'stage.result', 'stage.request', '__proto__', 'constructor', 'toString'), fc.string());
    const envelope = fc.record(
      {
        v: fc.oneof(fc.integer(), fc.double(), fc.string(), fc.constant(null)),
        id: fc.oneof(fc.string(), fc.integer()),
        type: anyType,
        re: fc.oneof(fc.string(), fc.constant(null), fc.integer()),
        session: fc.oneof(fc.constant(session), fc.string()),
        ts: fc.oneof(fc.double(), fc.string()),
        body: fc.oneof(fc.anything({ maxDepth: 3 }), fc.dictionary(fc.constantFrom('stage', 'step', 'values', 'status', 'summary', 'error', 'protocol', 'pid', 'level', 'message', 'path', 'items', '__proto__'), fc.anything({ maxDepth: 2 }))),
      },
      { requiredKeys: [] },
    );
    let foreign = 0;
    let unknown = 0;
    fc.assert(
      fc.property(envelope, (env) => {
        tried += 1;
        let payload: Buffer;
        try {
          payload = packr.pack(env);
        } catch {
          return; // not encodable (e.g. a symbol): nothing to send
        }
        const r = onlyProtocolErrors([sign(key, payload), payload]);
        if (r instanceof ProtocolError) {
          if (/another session/.test(r.message)) foreign += 1;
        } else {
          expect(r.envelope.session).toBe(session);
          if (r.type === 'unknown') unknown += 1;
        }
      }),
      { numRuns: 600 },
    );
    // Valid messages with one flipped bit or a foreign session are refused; unknown types pass as 'unknown'.
    fc.assert(
      fc.property(fc.string({ minLength: 1 }), fc.nat(), fc.nat(7), (type, at, bit) => {
        tried += 1;
        const { frames } = encode(key, session, type, { a: 1 });
        const ok = decode(key, session, frames);
        expect(ok.type === 'unknown' || Object.keys(ok.body).length >= 0).toBe(true);
        const tampered = Buffer.from(frames[1]);
        tampered[at % tampered.length]! ^= 1 << bit;
        const bad = onlyProtocolErrors([frames[0], tampered]);
        expect(bad).toBeInstanceOf(ProtocolError);
        expect((bad as ProtocolError).message).toMatch(/bad signature/);
        const other = encode(key, 'another', type, {}).frames;
        expect(() => decode(key, session, other)).toThrow(/another session/);
      }),
      { numRuns: 300 },
    );
    const big = Buffer.alloc(MAX_MESSAGE_BYTES + 1);
    expect(() => decode(key, session, [sign(key, big), big])).toThrow(ProtocolError);
    expect(foreign + unknown).toBeGreaterThan(0);
    recordReliability({ fault: 'decode(): arbitrary frames, signed random payloads, signed random envelopes, bit flips, foreign sessions, oversized', stage: 'protocol', injected: tried + 1, survived: tried + 1, lost: 0, outcome: 'returns a typed message (unknown types as unknown) or throws ProtocolError, never anything else', test: 'tests/hostile/protocol.test.ts' });
  });
});

describe('event.metrics (protocol 1.1): batches of metric events under one signature', () => {
  const key = randomBytes(32);
  const session = 'sess-2';
  const signedEnvelope = (type: string, body: unknown) => {
    const payload = packr.pack({ v: 1, id: 'b1', type, re: null, session, ts: 1, body });
    return [sign(key, payload), payload];
  };
  const item = (step: number) => ({ stage: 'sft', step, values: { 'train/loss': 1 / step, 'train/grad_norm': null, nan: Number.NaN } });

  it('decodes the items in order; a bad item is dropped with a reason and the others are kept', () => {
    const items = [item(1), item(2), { stage: 'sft', step: 'x', values: {} }, item(4), 'junk', { stage: 'sft', step: 6, values: { a: 'str' } }, item(7)];
    const msg = decode(key, session, signedEnvelope('event.metrics', { items }));
    expect(msg.type).toBe('event.metrics');
    if (msg.type !== 'event.metrics') return;
    expect(msg.body.items.map((m) => m.step)).toEqual([1, 2, 4, 7]);
    expect(msg.body.items[0]!.values.nan).toBeNaN();
    expect(msg.body.items[0]!.values['train/grad_norm']).toBeNull();
    expect(msg.body.rejected).toEqual([
      'dropped event.metrics item 2 of 7: step: expected an integer',
      'dropped event.metrics item 4 of 7: not a map',
      'dropped event.metrics item 5 of 7: values.a: expected a number',
    ]);
  });

  it('refuses a batch whose items are not a list, and a tampered batch as a whole', () => {
    expect(() => decode(key, session, signedEnvelope('event.metrics', { items: { 0: item(1) } }))).toThrow(/bad event\.metrics body: items: expected an array/);
    const [sig, payload] = signedEnvelope('event.metrics', { items: [item(1), item(2), item(3)] }) as [Buffer, Buffer];
    const tampered = Buffer.from(payload);
    tampered[tampered.length - 3]! ^= 0x01; // inside the last item's values
    expect(() => decode(key, session, [sig, tampered])).toThrow(/bad signature/);
    expect(() => decode(randomBytes(32), session, [sig, payload])).toThrow(/bad signature/);
  });

  it('single event.metric is still accepted (older sidecars, or a lone event)', () => {
    const msg = decode(key, session, signedEnvelope('event.metric', { ...item(3), extra: 1 }));
    expect(msg).toMatchObject({ type: 'event.metric', body: { stage: 'sft', step: 3 } });
    expect(Object.keys(msg.body)).toEqual(['stage', 'step', 'values']); // extra fields dropped, as zod did
    expect(() => decode(key, session, signedEnvelope('event.metric', { stage: 'sft', step: 1.5, values: {} }))).toThrow(/bad event\.metric body: step/);
  });

  it('checkMetric accepts and rejects exactly what the MetricBody schema does (property)', () => {
    const value = fc.oneof(fc.double(), fc.integer(), fc.constant(null), fc.string(), fc.boolean(), fc.constant(undefined), fc.array(fc.integer(), { maxLength: 2 }));
    const near = fc.record(
      {
        stage: fc.oneof(fc.string(), fc.integer(), fc.constant(null)),
        step: fc.oneof(fc.integer(), fc.double(), fc.constant(2 ** 53), fc.constant(-(2 ** 53)), fc.string(), fc.constant(null)),
        values: fc.oneof(fc.dictionary(fc.string(), value, { maxKeys: 4 }), fc.array(fc.double(), { maxLength: 2 }), fc.constant(null), fc.string()),
        extra: fc.anything({ maxDepth: 1 }),
      },
      { requiredKeys: [] },
    );
    const valid = fc.record({ stage: fc.string(), step: fc.integer(), values: fc.dictionary(fc.string(), fc.oneof(fc.double(), fc.integer(), fc.constant(null)), { maxKeys: 4 }) });
    let accepted = 0;
    fc.assert(
      fc.property(fc.oneof(valid, near, fc.anything({ maxDepth: 2 })), (body) => {
        // What the wire can carry: msgpack round trip (undefined becomes nil, as on the wire).
        let wire: unknown;
        try {
          wire = packr.unpack(packr.pack(body));
        } catch {
          return;
        }
        const z = MetricBody.safeParse(wire);
        const h = checkMetric(wire);
        expect(typeof h !== 'string', `${JSON.stringify(wire)}: zod ${z.success}, hand ${String(h)}`).toBe(z.success);
        if (z.success && typeof h !== 'string') {
          accepted += 1;
          expect(h.stage).toBe(z.data.stage);
          expect(h.step).toBe(z.data.step);
          expect(Object.keys(h.values)).toEqual(Object.keys(z.data.values));
        }
      }),
      { numRuns: 3000 },
    );
    expect(accepted).toBeGreaterThan(50);
  });
});
