// The wire protocol, TypeScript side (the Python side is sidecar/posttrain_sidecar/protocol.py).
//
// Frames: [signature, payload] from the sidecar's DEALER (the ROUTER prepends the peer identity).
// payload = msgpack map {v, id, type, re?, session, ts, body}; signature = HMAC-SHA256(key, payload)
// with a per-run key passed by environment, as Jupyter does. Unsigned, wrongly signed, undecodable
// or foreign-session messages are dropped and logged; unknown types and extra fields are ignored.
//
// 1.1 adds `event.metrics {items: [{stage, step, values}, ...]}`: the metric events that were
// already queued together in the sidecar, in order, under one envelope and one HMAC. The sidecar
// sends it only after a hello.ack that announces `protocol` >= 1.1; single `event.metric` stays valid.
import { createHmac, randomBytes, randomUUID, timingSafeEqual } from 'node:crypto';
import { Packr } from 'msgpackr';
import { z } from 'zod';

export const PROTOCOL_MAJOR = 1;
export const PROTOCOL_VERSION = '1.1';
/** Larger messages are refused by the socket and by decode(). */
export const MAX_MESSAGE_BYTES = 64 * 1024 * 1024;

// Options for exact interop with Python msgpack: plain maps (no msgpackr records), undefined as
// nil, and 64-bit ints as numbers when they fit ('auto' is supported at runtime, not in the types).
const packr = new Packr({
  useRecords: false,
  mapsAsObjects: true,
  encodeUndefinedAsNil: true,
  int64AsType: 'auto' as 'number',
});

// ---------------------------------------------------------------------------------------------
// Envelope and bodies

export const EnvelopeSchema = z.object({
  v: z.number().int(),
  id: z.string().min(1),
  type: z.string().min(1),
  re: z.string().nullish(),
  session: z.string(),
  ts: z.number(),
  body: z.record(z.string(), z.unknown()),
});
export type Envelope = z.infer<typeof EnvelopeSchema>;

// NaN/inf arrive as numbers and must get through: a diverging loss is what the health monitor
// looks for (zod 4's z.number() rejects both, which dropped the whole event). null when the
// sidecar had nothing.
const num = z.custom<number>((v) => typeof v === 'number', 'expected a number').nullable();

export const HelloBody = z.object({
  protocol: z.string(),
  pid: z.number().int(),
  versions: z.record(z.string(), z.string()).default({}),
  device: z.object({ type: z.string(), count: z.number().int().optional(), probe: z.boolean().optional() }).loose().nullish(),
  capabilities: z.array(z.string()).default([]),
  fake: z.boolean().default(false),
});
export const StateBody = z.object({ stage: z.string().nullish(), state: z.string(), message: z.string().nullish() });
/** The shape of a metric event (the spec; decode() applies it with checkMetric, see there). */
export const MetricBody = z.object({ stage: z.string(), step: z.number().int(), values: z.record(z.string(), num) });
export const LogBody = z.object({ level: z.enum(['debug', 'info', 'warning', 'error']).catch('info'), message: z.string(), stage: z.string().nullish() });
export const CheckpointBody = z.object({ stage: z.string(), path: z.string(), step: z.number().int() });
export const StageErrorBody = z.object({
  code: z.string(),
  message: z.string(),
  traceback: z.string().nullish(),
  retryable: z.boolean().default(false),
});
export const StageResultBody = z.object({
  stage: z.string(),
  status: z.enum(['ok', 'error', 'cancelled']),
  summary: z.record(z.string(), z.unknown()).nullish(),
  error: StageErrorBody.nullish(),
});

/**
 * Preflight (protocol 1.x addition): the controller sends `preflight {config, stages}` before the
 * first stage; the sidecar answers `preflight.result {ok, problems}` (re = the request id).
 * `stage` null means every stage (model, device). Severity "error" makes ok false.
 */
export const PreflightProblemBody = z.object({
  stage: z.string().nullish().transform((s) => s ?? null),
  code: z.string(),
  message: z.string(),
  severity: z.enum(['error', 'warning', 'info']).catch('error').default('error'),
  fix: z.string().nullish().transform((s) => s ?? null),
  /** Structured detail, e.g. a memory_estimate's parts in GiB; kept in run.json. */
  data: z.record(z.string(), z.unknown()).optional(),
});
export const PreflightResultBody = z.object({ ok: z.boolean(), problems: z.array(PreflightProblemBody).default([]) });

/** Incoming (sidecar → controller) types we act on. */
export const INCOMING = {
  hello: HelloBody,
  'event.state': StateBody,
  'event.metric': MetricBody,
  'event.log': LogBody,
  'event.checkpoint': CheckpointBody,
  heartbeat: z.object({}).loose(),
  /** Answer to the controller's `ping` (re = the ping id), sent by the sidecar's I/O thread. */
  pong: z.object({}).loose(),
  'stage.result': StageResultBody,
  'preflight.result': PreflightResultBody,
} as const;
export type IncomingType = keyof typeof INCOMING;

/** Everything the sidecar may send: INCOMING plus `event.metrics` (decoded by hand, see decode()).
 * The sidecar's twin is SIDECAR_SENDS in sidecar/posttrain_sidecar/protocol.py; a test compares them. */
export const SIDECAR_SENDS: readonly string[] = [...Object.keys(INCOMING), 'event.metrics'];

/** Message types the controller sends (the sidecar's CONTROLLER_SENDS). */
export const OUTGOING = {
  helloAck: 'hello.ack',
  stageRequest: 'stage.request',
  cancel: 'cancel',
  shutdown: 'shutdown',
  ping: 'ping',
  preflight: 'preflight',
} as const;

export type Hello = z.infer<typeof HelloBody>;
export type StateEvent = z.infer<typeof StateBody>;
export type MetricEvent = z.infer<typeof MetricBody>;
export type LogEvent = z.infer<typeof LogBody>;
export type CheckpointEvent = z.infer<typeof CheckpointBody>;
export type StageResult = z.infer<typeof StageResultBody>;
export type StageErrorInfo = z.infer<typeof StageErrorBody>;
export type PreflightProblem = z.infer<typeof PreflightProblemBody>;
export type PreflightResult = z.infer<typeof PreflightResultBody>;

/**
 * `event.metrics` after decode(): the items that passed checkMetric, in order, and why the others
 * were dropped (`rejected`, one line each, for a bridge warning). One bad item does not cost the
 * rest of the batch: the envelope's HMAC already vouched for the sender, so a bad item is a sidecar
 * bug in that one event, exactly as a bad single event.metric drops only itself.
 */
export interface MetricBatch {
  items: MetricEvent[];
  rejected: string[];
}

/** A decoded, validated incoming message. Unknown types carry their raw body. */
export type Incoming =
  | { [K in IncomingType]: { envelope: Envelope; type: K; body: z.infer<(typeof INCOMING)[K]> } }[IncomingType]
  | { envelope: Envelope; type: 'event.metrics'; body: MetricBatch }
  | { envelope: Envelope; type: 'unknown'; body: Record<string, unknown> };

// ---------------------------------------------------------------------------------------------
// Encoding

export const newKey = (): Buffer => randomBytes(32);

export function sign(key: Buffer, payload: Uint8Array): Buffer {
  return createHmac('sha256', key).update(payload).digest();
}

export function encode(key: Buffer, session: string, type: string, body: Record<string, unknown>, re?: string): { frames: [Buffer, Buffer]; id: string } {
  const id = randomUUID().replaceAll('-', '');
  const envelope: Envelope = { v: PROTOCOL_MAJOR, id, type, re: re ?? null, session, ts: Date.now() / 1000, body };
  const payload = packr.pack(envelope);
  return { frames: [sign(key, payload), payload], id };
}

export class ProtocolError extends Error {}

/** Verify and decode one message's frames (without the ROUTER identity). Throws ProtocolError. */
export function decode(key: Buffer, session: string, frames: readonly Buffer[]): Incoming {
  if (frames.length !== 2) throw new ProtocolError(`expected 2 frames (signature, payload), got ${frames.length}`);
  const [sig, payload] = frames as [Buffer, Buffer];
  if (payload.length > MAX_MESSAGE_BYTES) throw new ProtocolError(`message of ${payload.length} bytes is over the ${MAX_MESSAGE_BYTES}-byte limit`);
  const expected = sign(key, payload);
  if (sig.length !== expected.length || !timingSafeEqual(sig, expected)) throw new ProtocolError('bad signature (wrong key or tampered message)');
  let raw: unknown;
  try {
    raw = packr.unpack(payload);
  } catch (e) {
    throw new ProtocolError(`payload is not msgpack: ${(e as Error).message}`);
  }
  const env = EnvelopeSchema.safeParse(raw);
  if (!env.success) throw new ProtocolError(`not an envelope: ${env.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  const envelope = env.data;
  if (envelope.session !== session) throw new ProtocolError(`message for another session (${envelope.session})`);
  // Metric events, the one per-step message, skip zod (~0.4 µs each, a tenth of decode()).
  if (envelope.type === 'event.metric') {
    const m = checkMetric(envelope.body);
    if (typeof m === 'string') throw new ProtocolError(`bad event.metric body: ${m}`);
    return { envelope, type: 'event.metric', body: m };
  }
  if (envelope.type === 'event.metrics') return { envelope, type: 'event.metrics', body: checkMetricBatch(envelope.body) };
  if (!Object.hasOwn(INCOMING, envelope.type)) return { envelope, type: 'unknown', body: envelope.body };
  const type = envelope.type as IncomingType;
  const body = INCOMING[type].safeParse(envelope.body);
  if (!body.success) throw new ProtocolError(`bad ${type} body: ${body.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  return { envelope, type, body: body.data } as Incoming;
}

/**
 * MetricBody.safeParse by hand: the event (extra fields dropped, values kept as unpacked) or why
 * it is invalid. Same rules as the schema (tests/hostile/protocol.test.ts checks that they agree on
 * arbitrary input): stage a string, step a safe integer, values a map of numbers (NaN/inf
 * included: the health monitor needs them) or null.
 */
export function checkMetric(body: unknown): MetricEvent | string {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) return 'not a map';
  const { stage, step, values } = body as Record<string, unknown>;
  if (typeof stage !== 'string') return 'stage: expected a string';
  if (!Number.isSafeInteger(step)) return 'step: expected an integer';
  if (typeof values !== 'object' || values === null || Array.isArray(values)) return 'values: expected a map';
  for (const k in values) {
    const v = (values as Record<string, unknown>)[k];
    if (v !== null && typeof v !== 'number') return `values.${k}: expected a number`;
  }
  return { stage, step: step as number, values: values as Record<string, number | null> };
}

function checkMetricBatch(body: Record<string, unknown>): MetricBatch {
  const raw = body.items;
  if (!Array.isArray(raw)) throw new ProtocolError('bad event.metrics body: items: expected an array');
  const items: MetricEvent[] = [];
  const rejected: string[] = [];
  for (let i = 0; i < raw.length; i++) {
    const m = checkMetric(raw[i]);
    if (typeof m === 'string') rejected.push(`dropped event.metrics item ${i} of ${raw.length}: ${m}`);
    else items.push(m);
  }
  return { items, rejected };
}

/** Protocol majors must match; minors may differ (both sides ignore what they don't know). */
export function compatible(version: string): boolean {
  return Number.parseInt(version.split('.')[0] ?? '', 10) === PROTOCOL_MAJOR;
}
