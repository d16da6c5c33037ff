// Bridge micro-benchmark: metric events/s and request round-trip latency through the real bridge
// (dist/bridge/sidecar.js ↔ the fake sidecar), against a raw pyzmq DEALER ↔ zeromq.js ROUTER
// baseline measured in the same run on the same machine. See docs/BENCHMARKS.md.
//
//   bench/run-bridge.sh                       # builds, then runs this with the defaults
//   node bench/bridge.mjs [--reps 5] [--events 20000] [--pings 2000] [--out bench/results/bridge.json]
//
// Plain ESM on purpose (no tsx, no extra dependency): it imports the compiled controller from dist/.
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import os from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Packr } from 'msgpackr';
import * as zmq from 'zeromq';
import { Sidecar } from '../dist/bridge/sidecar.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');

// ---------------------------------------------------------------------------------------------
// Options

function parseArgs(argv) {
  const opts = {
    reps: 5,
    events: 20000,
    pings: 2000,
    warmupEvents: 2000,
    warmupPings: 200,
    out: join(ROOT, 'bench/results/bridge.json'),
    python: process.env.POSTTRAIN_PYTHON || join(ROOT, '.venv/bin/python'),
  };
  for (let i = 0; i < argv.length; i++) {
    const [flag, inline] = argv[i].split('=', 2);
    const value = () => inline ?? argv[++i];
    switch (flag) {
      case '--reps': opts.reps = Number(value()); break;
      case '--events': opts.events = Number(value()); break;
      case '--pings': opts.pings = Number(value()); break;
      case '--warmup-events': opts.warmupEvents = Number(value()); break;
      case '--warmup-pings': opts.warmupPings = Number(value()); break;
      case '--out': opts.out = resolve(value()); break;
      case '--python': opts.python = value(); break;
      case '-h': case '--help':
        console.log('node bench/bridge.mjs [--reps 5] [--events 20000] [--pings 2000] [--warmup-events 2000] [--warmup-pings 200] [--out FILE] [--python PATH]');
        process.exit(0);
        break;
      default:
        throw new Error(`unknown option ${argv[i]}`);
    }
  }
  for (const k of ['reps', 'events', 'pings']) if (!Number.isInteger(opts[k]) || opts[k] < 1) throw new Error(`--${k} must be a positive integer`);
  return opts;
}

// ---------------------------------------------------------------------------------------------
// Statistics

const percentile = (sorted, p) => sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))];
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
function rttStats(samples) {
  const s = [...samples].sort((a, b) => a - b);
  return { p50_ms: percentile(s, 50), p99_ms: percentile(s, 99), mean_ms: s.reduce((a, b) => a + b, 0) / s.length, max_ms: s[s.length - 1] };
}
const round = (x, d = 4) => Number(x.toFixed(d));

// CPU time (user + system, all threads) of another process in µs, from /proc (10 ms ticks); null elsewhere.
function procCpuUs(pid) {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
    return (Number(fields[11]) + Number(fields[12])) * 1e4; // assumes CLK_TCK = 100
  } catch {
    return null;
  }
}
/** Run f() and return its result plus the CPU µs per event spent by this Node process and by `pid`. */
async function withCpu(pid, f) {
  const c0 = process.cpuUsage();
  const p0 = procCpuUs(pid);
  const r = await f();
  const c = process.cpuUsage(c0);
  const p1 = procCpuUs(pid);
  const per = (us) => (us === null || !r.count ? null : us / r.count);
  return { ...r, cpu: { node_us_per_event: per(c.user + c.system), python_us_per_event: p0 === null || p1 === null ? null : per(p1 - p0) } };
}

// ---------------------------------------------------------------------------------------------
// Bridge: the real Sidecar class against the fake sidecar

async function bridgeRep(opts, workdir) {
  const warnings = [];
  const sidecar = await Sidecar.start({
    python: opts.python,
    module: 'posttrain_sidecar.fake',
    cwd: ROOT,
    env: {
      // step_time_s 0: no sleep between steps; save_every 0: no checkpoint per step (one at the end).
      POSTTRAIN_FAKE_SCRIPT: JSON.stringify({
        stages: {
          warmup: { steps: opts.warmupEvents, step_time_s: 0, save_every: 0 },
          '*': { steps: opts.events, step_time_s: 0, save_every: 0 },
        },
      }),
    },
    startTimeoutS: 60,
    heartbeatIntervalS: 1,
    heartbeatTimeoutS: 60,
    onBridgeWarning: (m) => warnings.push(m),
  });
  try {
    const stage = async (name, steps) => {
      let count = 0;
      const request = {
        stage: name,
        config: { model: { id: 'fake/bench' } },
        stage_dir: join(workdir, name),
        data: {},
        init_adapter: null,
        resume_from: null,
      };
      const t0 = performance.now();
      const result = await sidecar.runStage(request, { onMetric: () => void count++ });
      const ms = performance.now() - t0;
      if (result.status !== 'ok') throw new Error(`bridge stage ${name}: ${result.status} ${JSON.stringify(result.error)}`);
      return { count, ms, steps };
    };
    await stage('warmup', opts.warmupEvents); // JIT, sockets, page cache
    const tp = await withCpu(sidecar.hello.pid, () => stage('sft', opts.events));
    if (tp.count !== opts.events) throw new Error(`bridge: expected ${opts.events} metric events, got ${tp.count}`);
    for (let i = 0; i < opts.warmupPings; i++) await sidecar.ping();
    const samples = [];
    for (let i = 0; i < opts.pings; i++) samples.push(await sidecar.ping());
    if (warnings.length) console.warn(`bridge warnings: ${warnings.slice(0, 5).join(' | ')}`);
    return { events: tp.count, seconds: tp.ms / 1000, events_per_s: tp.count / (tp.ms / 1000), cpu: tp.cpu, rtt: rttStats(samples), samples };
  } finally {
    await sidecar.shutdown(5);
  }
}

// ---------------------------------------------------------------------------------------------
// Raw: zeromq.js ROUTER ↔ pyzmq DEALER (bench/raw_peer.py), msgpack only

const packr = new Packr({ useRecords: false, mapsAsObjects: true, encodeUndefinedAsNil: true, int64AsType: 'auto' });
const SIG = Buffer.alloc(32);

class RawPeer {
  static async start(opts) {
    const r = new RawPeer();
    await r.boot(opts);
    return r;
  }

  async boot(opts) {
    this.dir = mkdtempSync(join(os.tmpdir(), 'ptb-'));
    this.socket = new zmq.Router({ linger: 0 });
    await this.socket.bind(`ipc://${join(this.dir, 's')}`);
    this.waiter = undefined;
    const hello = new Promise((res) => (this.waiter = (id, msg) => msg.type === 'hello' && res(id)));
    void this.pump();
    this.stderr = '';
    this.proc = spawn(opts.python, [join(ROOT, 'bench/raw_peer.py'), this.socket.lastEndpoint], { stdio: ['ignore', 'ignore', 'pipe'] });
    this.proc.stderr.setEncoding('utf8').on('data', (d) => (this.stderr += d));
    this.exited = new Promise((res) => this.proc.on('exit', res));
    const died = this.exited.then((code) => {
      throw new Error(`raw peer exited with ${code} before hello: ${this.stderr}`);
    });
    this.peer = await Promise.race([hello, died]);
    this.seq = 0;
  }

  async pump() {
    try {
      for await (const [identity, ...frames] of this.socket) {
        const msg = packr.unpack(frames[1]); // unpack every message, as the bridge does
        this.waiter?.(identity, msg);
      }
    } catch {
      /* closed */
    }
  }

  send(type, body) {
    const id = String(++this.seq).padStart(32, '0');
    const payload = packr.pack({ v: 1, id, type, re: null, session: '0123456789abcdef', ts: Date.now() / 1000, body });
    return { id, sent: this.socket.send([this.peer, SIG, payload]) };
  }

  burst(n) {
    let count = 0;
    return new Promise((res, rej) => {
      const t0 = performance.now();
      const { id, sent } = this.send('burst', { n });
      sent.catch(rej);
      this.waiter = (_identity, msg) => {
        if (msg.type === 'event.metric') count++;
        else if (msg.type === 'done' && msg.re === id) res({ count, ms: performance.now() - t0 });
      };
    });
  }

  ping() {
    return new Promise((res, rej) => {
      const t0 = performance.now();
      const { id, sent } = this.send('echo', {});
      sent.catch(rej);
      this.waiter = (_identity, msg) => {
        if (msg.id === id) res(performance.now() - t0);
      };
    });
  }

  async stop() {
    try {
      await this.send('stop', {}).sent;
    } catch {
      /* ignore */
    }
    const t = setTimeout(() => this.proc.kill('SIGKILL'), 3000);
    await this.exited;
    clearTimeout(t);
    this.socket.close();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

async function rawRep(opts) {
  const raw = await RawPeer.start(opts);
  try {
    await raw.burst(opts.warmupEvents);
    const tp = await withCpu(raw.proc.pid, () => raw.burst(opts.events));
    if (tp.count !== opts.events) throw new Error(`raw: expected ${opts.events} events, got ${tp.count}`);
    for (let i = 0; i < opts.warmupPings; i++) await raw.ping();
    const samples = [];
    for (let i = 0; i < opts.pings; i++) samples.push(await raw.ping());
    return { events: tp.count, seconds: tp.ms / 1000, events_per_s: tp.count / (tp.ms / 1000), cpu: tp.cpu, rtt: rttStats(samples), samples };
  } finally {
    await raw.stop();
  }
}

// ---------------------------------------------------------------------------------------------
// Machine and versions

function machine() {
  let cpu = os.cpus()[0]?.model ?? 'unknown';
  try {
    const m = readFileSync('/proc/cpuinfo', 'utf8').match(/^model name\s*:\s*(.+)$/m);
    if (m) cpu = m[1].trim();
  } catch {
    /* not Linux */
  }
  return { nproc: os.availableParallelism(), cpu, platform: `${os.platform()} ${os.release()} ${os.arch()}`, mem_gib: round(os.totalmem() / 2 ** 30, 1) };
}

function versions(opts) {
  const pkg = (name) => JSON.parse(readFileSync(join(ROOT, 'node_modules', name, 'package.json'), 'utf8')).version;
  const py = JSON.parse(
    execFileSync(opts.python, ['-c', 'import json,platform,zmq,msgpack;print(json.dumps({"python":platform.python_version(),"pyzmq":zmq.__version__,"libzmq_py":zmq.zmq_version(),"msgpack_py":".".join(map(str,msgpack.version))}))'], { encoding: 'utf8' }),
  );
  return { node: process.version, zeromq_js: pkg('zeromq'), libzmq_js: zmq.version, msgpackr: pkg('msgpackr'), zod: pkg('zod'), ...py };
}

// ---------------------------------------------------------------------------------------------
// Main

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const info = { machine: machine(), versions: versions(opts) };
  console.log(`machine: ${info.machine.nproc} CPUs, ${info.machine.cpu}, ${info.machine.platform}`);
  console.log(`versions: ${Object.entries(info.versions).map(([k, v]) => `${k} ${v}`).join(', ')}`);
  console.log(`method: ${opts.reps} reps alternating bridge/raw; each ${opts.events} metric events and ${opts.pings} sequential pings (after ${opts.warmupEvents} / ${opts.warmupPings} warm-up)`);

  const workdir = mkdtempSync(join(os.tmpdir(), 'ptb-work-'));
  const reps = [];
  const started = performance.now();
  try {
    for (let i = 0; i < opts.reps; i++) {
      const order = i % 2 === 0 ? ['bridge', 'raw'] : ['raw', 'bridge'];
      const rep = {};
      for (const which of order) {
        rep[which] = which === 'bridge' ? await bridgeRep(opts, join(workdir, `rep${i}`)) : await rawRep(opts);
      }
      reps.push(rep);
      const b = rep.bridge;
      const r = rep.raw;
      console.log(
        `rep ${i + 1}/${opts.reps} (${order.join(' then ')}): events/s bridge ${Math.round(b.events_per_s)} raw ${Math.round(r.events_per_s)}; ` +
          `RTT p50 bridge ${b.rtt.p50_ms.toFixed(3)} raw ${r.rtt.p50_ms.toFixed(3)} ms; p99 bridge ${b.rtt.p99_ms.toFixed(3)} raw ${r.rtt.p99_ms.toFixed(3)} ms`,
      );
    }
  } finally {
    rmSync(workdir, { recursive: true, force: true });
  }

  const med = (which, f) => median(reps.map((r) => f(r[which])));
  const row = (f) => {
    const bridge = med('bridge', f);
    const raw = med('raw', f);
    return { bridge: round(bridge), raw: round(raw), ratio: round(bridge / raw, 3) };
  };
  const summary = {
    events_per_s: row((x) => x.events_per_s),
    rtt_p50_ms: row((x) => x.rtt.p50_ms),
    rtt_p99_ms: row((x) => x.rtt.p99_ms),
  };
  // CPU per metric event while streaming (all threads, libzmq's included), where /proc is there.
  const cpuRow = (k) => (reps.every((r) => r.bridge.cpu[k] !== null && r.raw.cpu[k] !== null) ? row((x) => x.cpu[k]) : null);
  const cpu = { node_us_per_event: cpuRow('node_us_per_event'), python_us_per_event: cpuRow('python_us_per_event') };
  summary.events_per_s.bridge = Math.round(summary.events_per_s.bridge);
  summary.events_per_s.raw = Math.round(summary.events_per_s.raw);
  const targets = {
    throughput_ratio_min: 0.8,
    rtt_p99_ratio_max: 2.0,
    throughput_met: summary.events_per_s.ratio >= 0.8,
    rtt_p99_met: summary.rtt_p99_ms.ratio <= 2.0,
  };

  const pad = (s, n) => String(s).padStart(n);
  console.log('');
  console.log(`median of ${opts.reps} reps          bridge        raw    ratio`);
  console.log(`events/s                  ${pad(summary.events_per_s.bridge, 10)} ${pad(summary.events_per_s.raw, 10)} ${pad(summary.events_per_s.ratio.toFixed(2), 8)}   target >= 0.80: ${targets.throughput_met ? 'met' : 'MISSED'}`);
  console.log(`RTT p50 (ms)              ${pad(summary.rtt_p50_ms.bridge.toFixed(3), 10)} ${pad(summary.rtt_p50_ms.raw.toFixed(3), 10)} ${pad(summary.rtt_p50_ms.ratio.toFixed(2), 8)}`);
  console.log(`RTT p99 (ms)              ${pad(summary.rtt_p99_ms.bridge.toFixed(3), 10)} ${pad(summary.rtt_p99_ms.raw.toFixed(3), 10)} ${pad(summary.rtt_p99_ms.ratio.toFixed(2), 8)}   target <= 2.00: ${targets.rtt_p99_met ? 'met' : 'MISSED'}`);
  for (const [k, label] of [['node_us_per_event', 'Node CPU us/event'], ['python_us_per_event', 'Python CPU us/event']]) {
    const c = cpu[k];
    if (c) console.log(`${label.padEnd(26)}${pad(c.bridge.toFixed(1), 10)} ${pad(c.raw.toFixed(1), 10)} ${pad(c.ratio.toFixed(2), 8)}`);
  }
  console.log(`(wall time ${((performance.now() - started) / 1000).toFixed(1)} s)`);

  const perRep = reps.map((r) =>
    Object.fromEntries(
      Object.entries(r).map(([k, v]) => [k, { events_per_s: Math.round(v.events_per_s), seconds: round(v.seconds), node_cpu_us_per_event: v.cpu.node_us_per_event === null ? null : round(v.cpu.node_us_per_event, 2), python_cpu_us_per_event: v.cpu.python_us_per_event === null ? null : round(v.cpu.python_us_per_event, 2), rtt_p50_ms: round(v.rtt.p50_ms), rtt_p99_ms: round(v.rtt.p99_ms), rtt_max_ms: round(v.rtt.max_ms) }]),
    ),
  );
  const result = {
    benchmark: 'bridge',
    date: new Date().toISOString(),
    ...info,
    params: { reps: opts.reps, events: opts.events, pings: opts.pings, warmup_events: opts.warmupEvents, warmup_pings: opts.warmupPings, transport: 'ipc' },
    summary,
    cpu_while_streaming: cpu,
    targets,
    reps: perRep,
  };
  mkdirSync(dirname(opts.out), { recursive: true });
  writeFileSync(opts.out, `${JSON.stringify(result, null, 2)}\n`);
  // Every RTT sample, for a closer look; *.raw.json is git-ignored.
  const rawOut = opts.out.replace(/\.json$/, '.raw.json');
  if (rawOut !== opts.out) writeFileSync(rawOut, JSON.stringify(reps.map((r) => ({ bridge: r.bridge.samples.map((x) => round(x)), raw: r.raw.samples.map((x) => round(x)) }))));
  console.log(`wrote ${relative(process.cwd(), opts.out) || opts.out}`);
}

main().catch((e) => {
  console.error(e?.stack ?? String(e));
  process.exitCode = 1;
});
