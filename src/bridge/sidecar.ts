// Supervision of the one Python sidecar process of a run, and the request/response logic on top
// of the ROUTER socket. Knows nothing about what a stage does.
//
// Start: bind, spawn, race `hello` against process exit and a start timeout. Liveness: process
// exit is authoritative (SidecarCrashedError); silence past heartbeat_timeout_s means hung
// (SidecarHungError, the process is killed). Shutdown: `shutdown` message, then SIGTERM, then
// SIGKILL. Every socket is closed with linger 0 and every timer cleared, so Node exits on its own.
import { rmSync } from 'node:fs';
import { execa, type ResultPromise } from 'execa';
import * as zmq from 'zeromq';
import { type BoundPlace, makePlace } from './endpoint.js';
import { ProtocolMismatchError, SidecarCrashedError, SidecarHungError, SidecarStalledError, SidecarStartError } from './errors.js';
import {
  type CheckpointEvent,
  compatible,
  decode,
  encode,
  type Hello,
  type Incoming,
  type LogEvent,
  MAX_MESSAGE_BYTES,
  type MetricEvent,
  newKey,
  OUTGOING,
  type PreflightResult,
  PROTOCOL_VERSION,
  ProtocolError,
  type StageResult,
  type StateEvent,
} from './protocol.js';
import { RingBuffer } from './ring.js';

export interface SidecarSpec {
  python: string;
  /** Python module run with -m: `posttrain_sidecar`, or `posttrain_sidecar.fake` in tests. */
  module: string;
  cwd: string;
  env?: Record<string, string>;
  startTimeoutS: number;
  heartbeatIntervalS: number;
  heartbeatTimeoutS: number;
  /** Stop the sidecar when a heartbeat says its main thread has been in one place longer (null: never). */
  stallTimeoutS?: number | null;
  /** Force a transport (tests, doctor); default: ipc under a short private folder, else loopback TCP. */
  transport?: 'ipc' | 'tcp';
  /** Every stderr line of the sidecar, as it arrives (the stage's sidecar.log). */
  onStderrLine?: (line: string) => void;
  /** Dropped messages and other bridge diagnostics. */
  onBridgeWarning?: (message: string) => void;
}

export interface StageRequest {
  stage: string;
  config: unknown;
  stage_dir: string;
  data: Record<string, string>;
  init_adapter: string | null;
  resume_from: string | null;
}

export interface StageHandlers {
  onMetric?: (e: MetricEvent) => void;
  onLog?: (e: LogEvent) => void;
  onState?: (e: StateEvent) => void;
  onCheckpoint?: (e: CheckpointEvent) => void;
}

interface Pending {
  id: string;
  stage: string;
  handlers: StageHandlers;
  resolve: (r: StageResult) => void;
  reject: (e: Error) => void;
}

type Exit = { exitCode: number | null; signal: string | null };

export class Sidecar {
  readonly session = Buffer.from(crypto.getRandomValues(new Uint8Array(8))).toString('hex');
  private readonly key = newKey();
  // No ROUTER_HANDOVER: with it, any local peer that connects with the sidecar's routing id takes
  // the route over before a single signature is checked (the TCP hijack, tests/hostile/hijack.test.ts).
  // The route moves only on a validly signed hello from a new connection (see pump()).
  private readonly socket = new zmq.Router({ linger: 0, maxMessageSize: MAX_MESSAGE_BYTES });
  private place: BoundPlace | undefined;
  private readonly stderr = new RingBuffer(200);
  private proc: ResultPromise | undefined;
  private exited: Promise<Exit> | undefined;
  private exitInfo: Exit | undefined;
  private peer: Buffer | undefined;
  private helloWaiter: ((h: Hello) => void) | undefined;
  private pending: Pending | undefined;
  private readonly pings = new Map<string, { resolve: () => void; reject: (e: Error) => void; timer: NodeJS.Timeout }>();
  private readonly preflights = new Map<string, { resolve: (r: PreflightResult) => void; reject: (e: Error) => void; timer: NodeJS.Timeout }>();
  private lastSeen = Date.now();
  /** When the watchdog last ran: a long gap means this process was stopped, not the sidecar. */
  private lastTick = Date.now();
  private get watchdogMs(): number {
    return Math.max(100, (this.spec.heartbeatIntervalS * 1000) / 2);
  }
  private watchdog: NodeJS.Timeout | undefined;
  private closing = false;
  private failure: Error | undefined;
  hello!: Hello;
  private boundEndpoint: string | undefined;

  /** The ZeroMQ endpoint the controller's ROUTER is bound to (set once started). */
  get endpoint(): string | undefined {
    return this.boundEndpoint;
  }

  private constructor(private readonly spec: SidecarSpec) {}

  /** Bind, spawn, wait for hello. Throws a typed error (with the stderr tail) if that fails. */
  static async start(spec: SidecarSpec): Promise<Sidecar> {
    const s = new Sidecar(spec);
    try {
      await s.boot();
      return s;
    } catch (e) {
      await s.kill();
      throw e;
    }
  }

  private async boot(): Promise<void> {
    this.place = makePlace(this.spec.transport);
    await this.socket.bind(this.place.bind);
    const endpoint = this.socket.lastEndpoint ?? this.place.bind;
    this.boundEndpoint = endpoint;
    void this.pump();

    const hello = new Promise<Hello>((resolve) => (this.helloWaiter = resolve));
    this.proc = execa(this.spec.python, ['-m', this.spec.module], {
      cwd: this.spec.cwd,
      env: {
        ...this.spec.env,
        POSTTRAIN_ENDPOINT: endpoint,
        POSTTRAIN_SESSION: this.session,
        POSTTRAIN_KEY: this.key.toString('hex'),
        POSTTRAIN_PARENT_PID: String(process.pid),
        POSTTRAIN_WATCH_STDIN: '1',
        PYTHONUNBUFFERED: '1',
      },
      stdin: 'pipe', // its EOF tells the sidecar we died
      stdout: 'pipe',
      stderr: 'pipe',
      buffer: false,
      reject: false,
      cleanup: true,
    });
    this.proc.stderr?.setEncoding('utf8');
    this.proc.stdout?.setEncoding('utf8');
    lines(this.proc.stderr, (l) => {
      this.stderr.push(l);
      this.spec.onStderrLine?.(l);
    });
    // The sidecar never prints to stdout; anything there is a bug worth keeping in the log.
    lines(this.proc.stdout, (l) => this.spec.onStderrLine?.(`[stdout] ${l}`));
    this.exited = this.proc.then((r) => {
      const spawnError = r.failed && r.exitCode === undefined && r.signal === undefined ? r.originalMessage : undefined;
      if (spawnError) this.stderr.push(spawnError);
      this.exitInfo = { exitCode: r.exitCode ?? null, signal: r.signal ?? null };
      this.onExit(this.exitInfo);
      return this.exitInfo;
    });

    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new SidecarStartError(`The sidecar did not say hello within ${this.spec.startTimeoutS} s.`, this.stderrTail(), 'A cold torch import can be slow; raise runtime.start_timeout_s if the machine is busy.')),
        this.spec.startTimeoutS * 1000,
      );
    });
    const died = this.exited.then((x) => {
      const how = x.signal ? `was killed by ${x.signal}` : `exited with code ${x.exitCode ?? '?'}`;
      throw new SidecarStartError(`The sidecar (${this.spec.python} -m ${this.spec.module}) ${how} before saying hello.`, this.stderrTail());
    });
    try {
      this.hello = await Promise.race([hello, died, timeout]);
    } finally {
      clearTimeout(timer);
    }
    if (!compatible(this.hello.protocol)) throw new ProtocolMismatchError(this.hello.protocol, PROTOCOL_VERSION);
    // `protocol` (1.1+) tells the sidecar it may send event.metrics; an older sidecar ignores it.
    await this.send(OUTGOING.helloAck, { heartbeat_interval_s: this.spec.heartbeatIntervalS, protocol: PROTOCOL_VERSION });
    this.lastSeen = Date.now();
    this.lastTick = Date.now();
    this.watchdog = setInterval(() => this.checkHeartbeat(), this.watchdogMs);
  }

  /** Run one stage; resolves with its result (ok, error or cancelled), rejects if the process dies or hangs. */
  runStage(request: StageRequest, handlers: StageHandlers = {}): Promise<StageResult> {
    if (this.failure) return Promise.reject(this.failure);
    if (this.pending) return Promise.reject(new Error(`stage ${this.pending.stage} is still running`));
    return new Promise<StageResult>((resolve, reject) => {
      // Register before sending: the first events can arrive before send() resolves.
      const { frames, id } = encode(this.key, this.session, OUTGOING.stageRequest, { ...request });
      this.pending = { id, stage: request.stage, handlers, resolve, reject };
      this.sendFrames(frames).catch((e: Error) => {
        this.pending = undefined;
        reject(e);
      });
    });
  }

  /**
   * Round trip to the sidecar's I/O thread in ms: `ping` out, `pong` (re = the ping id) back.
   * Works while a stage runs (the main thread is not involved). Rejects on timeout or if the sidecar fails.
   */
  ping(timeoutMs = 5000): Promise<number> {
    if (this.failure) return Promise.reject(this.failure);
    const peer = this.peer;
    if (peer === undefined) return Promise.reject(new Error('sidecar has not said hello'));
    const { frames, id } = encode(this.key, this.session, OUTGOING.ping, {});
    return new Promise<number>((resolve, reject) => {
      const t0 = performance.now();
      const timer = setTimeout(() => {
        this.pings.delete(id);
        reject(new Error(`no pong within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pings.set(id, { resolve: () => resolve(performance.now() - t0), reject, timer });
      this.socket.send([peer, ...frames]).catch((e: Error) => {
        clearTimeout(timer);
        this.pings.delete(id);
        reject(e);
      });
    });
  }

  /**
   * Ask the sidecar to check, without loading weights, what the given stages will need (model
   * config and tokenizer, reward functions, device, vLLM, bitsandbytes, the run's conversational
   * rows through the chat template: `data` is {target: path of the run's copy}): `preflight {config,
   * stages, data}` out, `preflight.result {ok, problems}` (re = its id) back. Rejects when the sidecar
   * fails or closes, or with PreflightTimeoutError after `timeoutMs`.
   */
  preflight(config: unknown, stages: readonly string[], timeoutMs = 180_000, data: Record<string, string> = {}): Promise<PreflightResult> {
    if (this.failure) return Promise.reject(this.failure);
    if (this.peer === undefined) return Promise.reject(new Error('sidecar has not said hello'));
    const { frames, id } = encode(this.key, this.session, OUTGOING.preflight, { config, stages: [...stages], data });
    return new Promise<PreflightResult>((resolve, reject) => {
      // Registered before sending, like a stage request.
      const timer = setTimeout(() => {
        this.preflights.delete(id);
        reject(new PreflightTimeoutError(timeoutMs));
      }, timeoutMs);
      this.preflights.set(id, { resolve, reject, timer });
      this.sendFrames(frames).catch((e: Error) => {
        clearTimeout(timer);
        this.preflights.delete(id);
        reject(e);
      });
    });
  }

  /** Ask the running stage to stop at the next step boundary (it saves a checkpoint). */
  cancel(): void {
    void this.send(OUTGOING.cancel, {}).catch(() => undefined);
  }

  get alive(): boolean {
    return this.exitInfo === undefined && this.failure === undefined;
  }

  stderrTail(lines = 20): string {
    return this.stderr.tail(lines).join('\n');
  }

  /** Clean stop: `shutdown`, wait, then SIGTERM, then SIGKILL. Idempotent. */
  async shutdown(graceS = 10): Promise<void> {
    if (this.closing) return this.finish();
    this.closing = true;
    if (this.alive && this.peer) await this.send(OUTGOING.shutdown, {}).catch(() => undefined);
    await this.stopProcess(graceS);
    await this.finish();
  }

  /** Immediate stop (SIGTERM, then SIGKILL after 3 s). */
  async kill(): Promise<void> {
    this.closing = true;
    await this.stopProcess(0);
    await this.finish();
  }

  private async stopProcess(graceS: number): Promise<void> {
    if (!this.proc || this.exitInfo) return;
    if (graceS > 0 && (await within(this.exited!, graceS * 1000))) return;
    this.proc.kill('SIGTERM');
    if (await within(this.exited!, 3000)) return;
    this.proc.kill('SIGKILL');
    await this.exited;
  }

  private async finish(): Promise<void> {
    if (this.watchdog) clearInterval(this.watchdog);
    this.rejectPings(new Error('sidecar closed'));
    this.rejectPreflights(new Error('sidecar closed'));
    this.watchdog = undefined;
    if (!this.socket.closed) this.socket.close();
    if (this.place?.dir) rmSync(this.place.dir, { recursive: true, force: true });
  }

  private async send(type: string, body: Record<string, unknown>): Promise<string> {
    const { frames, id } = encode(this.key, this.session, type, body);
    await this.sendFrames(frames);
    return id;
  }

  private async sendFrames(frames: Buffer[]): Promise<void> {
    if (this.peer === undefined) throw new Error('sidecar has not said hello');
    await this.socket.send([this.peer, ...frames]);
  }

  private async pump(): Promise<void> {
    try {
      for await (const [identity, ...frames] of this.socket) {
        let msg: Incoming;
        try {
          msg = decode(this.key, this.session, frames);
        } catch (e) {
          if (e instanceof ProtocolError) this.warn(`dropped a message: ${e.message}`);
          continue;
        }
        // Only now, with the signature checked, may the sender's identity count for anything.
        if (!identity) continue;
        if (this.peer === undefined || !this.peer.equals(identity)) {
          if (!this.adopt(identity, msg)) {
            this.warn('dropped a message from an unknown peer');
            continue;
          }
        }
        this.lastSeen = Date.now();
        this.dispatch(msg);
      }
    } catch (e) {
      // The socket was closed under the iterator during shutdown: that is the normal end.
      if (!this.closing) this.warn(`receive loop ended: ${(e as Error).message}`);
    }
  }

  /**
   * A new connection becomes the sidecar's route only with a signed hello: the first one, or,
   * after the sidecar reconnected (libzmq drops a connection that sent an oversized frame), one
   * from the same pid. The sidecar picks a fresh random routing id per connection, so there is no
   * id to guess, and a signature needs the run's key.
   */
  private adopt(identity: Buffer, msg: Incoming): boolean {
    if (msg.type !== 'hello') return false;
    if (this.peer === undefined) {
      this.peer = identity;
      return true;
    }
    if (msg.body.pid !== this.hello?.pid) return false;
    this.peer = identity;
    this.warn('the sidecar reconnected (a new connection with a signed hello); its route moved');
    return true;
  }

  private dispatch(msg: Incoming): void {
    const h = this.pending?.handlers;
    switch (msg.type) {
      case 'hello':
        this.helloWaiter?.(msg.body);
        this.helloWaiter = undefined;
        return;
      case 'heartbeat':
        return this.checkStall(msg.body);
      case 'pong': {
        const re = msg.envelope.re;
        const waiter = re ? this.pings.get(re) : undefined;
        if (!re || !waiter) return; // late (timed out) or unknown: tolerated
        this.pings.delete(re);
        clearTimeout(waiter.timer);
        return waiter.resolve();
      }
      case 'event.metric':
        return h?.onMetric?.(msg.body);
      case 'event.metrics': {
        for (const r of msg.body.rejected) this.warn(r);
        const onMetric = h?.onMetric;
        if (onMetric) for (const m of msg.body.items) onMetric(m);
        return;
      }
      case 'event.log':
        return h?.onLog?.(msg.body);
      case 'event.state':
        return h?.onState?.(msg.body);
      case 'event.checkpoint':
        return h?.onCheckpoint?.(msg.body);
      case 'preflight.result': {
        const re = msg.envelope.re;
        const waiter = re ? this.preflights.get(re) : undefined;
        if (!re || !waiter) return this.warn(`dropped a preflight.result for an unknown request (${re ?? 'none'})`);
        this.preflights.delete(re);
        clearTimeout(waiter.timer);
        return waiter.resolve(msg.body);
      }
      case 'stage.result': {
        const p = this.pending;
        if (!p || msg.envelope.re !== p.id) return this.warn(`dropped a stage.result for an unknown request (${msg.envelope.re ?? 'none'})`);
        this.pending = undefined;
        return p.resolve(msg.body);
      }
      default:
        return; // unknown types are tolerated
    }
  }

  private checkHeartbeat(): void {
    const now = Date.now();
    // This process itself was not running for a while (Ctrl-Z then fg, a suspended laptop): no
    // heartbeat could be read meanwhile, and on waking this timer runs before the socket is read.
    // Give the sidecar a fresh timeout instead of declaring a healthy one hung.
    const stalled = now - this.lastTick > Math.max(2_000, 4 * this.watchdogMs);
    this.lastTick = now;
    if (stalled) {
      this.lastSeen = now;
      return;
    }
    const silent = (now - this.lastSeen) / 1000;
    if (silent <= this.spec.heartbeatTimeoutS || this.failure || !this.alive) return;
    this.fail(new SidecarHungError(silent, this.stderrTail(), this.pending?.stage ?? null));
    void this.kill();
  }

  /** Heartbeats carry `{busy, busy_s}`: what the sidecar's main thread is doing and for how long. */
  private checkStall(body: Record<string, unknown>): void {
    const limit = this.spec.stallTimeoutS;
    const { busy, busy_s: s } = body;
    if (!limit || typeof busy !== 'string' || typeof s !== 'number' || !(s > limit) || this.failure || !this.alive) return;
    this.fail(new SidecarStalledError(busy, s, limit, this.stderrTail(), this.pending?.stage ?? null));
    void this.kill();
  }

  private onExit(x: Exit): void {
    if (this.closing && !this.pending) return;
    this.fail(new SidecarCrashedError(x.exitCode, x.signal, this.stderrTail(), this.pending?.stage ?? null));
  }

  private fail(e: Error): void {
    if (this.failure) return;
    this.failure = e;
    const p = this.pending;
    this.pending = undefined;
    p?.reject(e);
    this.rejectPings(e);
    this.rejectPreflights(e);
  }

  private rejectPreflights(e: Error): void {
    for (const w of this.preflights.values()) {
      clearTimeout(w.timer);
      w.reject(e);
    }
    this.preflights.clear();
  }

  private rejectPings(e: Error): void {
    for (const w of this.pings.values()) {
      clearTimeout(w.timer);
      w.reject(e);
    }
    this.pings.clear();
  }

  private warn(message: string): void {
    this.spec.onBridgeWarning?.(message);
  }
}

/** The sidecar did not answer `preflight` in time (an older sidecar ignores the message type). */
export class PreflightTimeoutError extends Error {
  constructor(readonly timeoutMs: number) {
    super(`no preflight.result within ${timeoutMs / 1000} s`);
  }
}

const MAX_LINE = 16 * 1024;

function lines(stream: NodeJS.ReadableStream | null | undefined, onLine: (l: string) => void): void {
  if (!stream) return;
  let buf = '';
  stream.on('data', (chunk: string) => {
    buf += chunk;
    let nl: number;
    while ((nl = buf.indexOf('\n')) >= 0) {
      onLine(buf.slice(0, nl).replace(/\r$/, ''));
      buf = buf.slice(nl + 1);
    }
    // A progress bar redrawn with \r never ends its line: cut it rather than grow without bound.
    if (buf.length > MAX_LINE) {
      onLine(`${buf.slice(0, MAX_LINE)}…`);
      buf = '';
    }
  });
  stream.on('end', () => buf && onLine(buf));
}

async function within(p: Promise<unknown>, ms: number): Promise<boolean> {
  let t: NodeJS.Timeout | undefined;
  const r = await Promise.race([p.then(() => true), new Promise<boolean>((res) => (t = setTimeout(() => res(false), ms)))]);
  clearTimeout(t);
  return r;
}
