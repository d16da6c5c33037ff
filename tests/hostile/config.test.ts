// Hostile config input: random and adversarial YAML/JSON files and `--set` flags, through the
// real CLI (runCli in-process). Whatever comes in, the answer is exit 0 or a structured
// ConfigError (exit 2) naming a dot path or file:line:col, never the "internal error" path, never
// a stack trace, and Object.prototype is never touched.
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { ConfigSchema } from '../../src/config/schema.js';
import { cli, type CliResult, tmp } from '../helpers/cli.js';
import { recordReliability } from '../helpers/reliability.js';

const PROTO_KEYS = Object.getOwnPropertyNames(Object.prototype).sort();
const protoClean = () =>
  Object.getOwnPropertyNames(Object.prototype).sort().join() === PROTO_KEYS.join() &&
  ({} as Record<string, unknown>).polluted === undefined &&
  ({} as Record<string, unknown>).x === undefined;

afterEach(() => {
  // A polluted prototype would poison every later test in this worker: fail loudly and clean up.
  const extra = Object.getOwnPropertyNames(Object.prototype).filter((k) => !PROTO_KEYS.includes(k));
  for (const k of extra) delete (Object.prototype as Record<string, unknown>)[k];
  expect(extra).toEqual([]);
});

const STACK = /^\s+at .+(:\d+:\d+\)?|\(native\))$/m;
// A dot path ("(root)" for the whole file). User keys may hold any character (" !", a tab), so
// only the shape "  - <path>: <message>" is required here; the named cases below pin exact paths.
const ISSUE = /^ {2}- .+?: ./s;

/** The contract for any config input: 0, or 2 with every issue located. Returns a reason when broken. */
function broken(r: CliResult): string | null {
  if (r.err.includes('internal error')) return `internal error: ${r.err}`;
  if (STACK.test(r.err)) return `stack trace: ${r.err}`;
  if (r.code === 0) return null;
  if (r.code !== 2) return `exit ${r.code}: ${r.err}`;
  if (!r.err.startsWith('error: ')) return `unstructured: ${r.err}`;
  const lines = r.err.split('\n');
  if (lines[0]!.startsWith('error: Invalid config')) {
    const issues = r.err.split(/\n(?= {2}- )/).slice(1);
    if (issues.length === 0) return `no issues listed: ${r.err}`;
    for (const l of issues) if (!ISSUE.test(l)) return `issue without a path: ${l}`;
    // A file-level problem (root) must say which file, and syntax errors where in it.
    for (const l of issues.filter((x) => x.startsWith('  - (root)'))) {
      if (!/\[from .+\]|--set|no preset/.test(l)) return `root issue without its source: ${l}`;
      if (/YAML syntax error/.test(l) && !/:\d+:\d+: /.test(l)) return `YAML syntax error without line:col: ${l}`;
    }
    return null;
  }
  // Other usage errors (a missing --config file, a bad extension) are one message and a hint.
  return /^error: .+/.test(lines[0]!) ? null : `unstructured: ${r.err}`;
}

const FRAGMENTS = [
  'model:', 'model: {id: x}\n', ' id: ', 'runtime:', 'stages:', 'sft:', 'data:', 'seed: ', '\n', '  ', '- ', '&a ', '*a', '&b [*a, *a]', '{', '}', '[', ']',
  ':', ',', '"', "'", '__proto__', 'constructor', 'prototype', '<<: ', '!!str ', '!!binary ', '!!js/function ', '.nan', '.inf', '-.inf', 'NaN', 'Infinity',
  '1e999', '-1e-999', '99999999999999999999999', '0x1F', '0o17', 'null', '~', 'true', 'yes', '#', '|', '>', '%YAML 1.1\n', '---\n', '...\n', '\t', '\r\n', '\u0000', '\uFEFF', '\uD800',
];
const yamlish = fc.array(fc.constantFrom(...FRAGMENTS), { maxLength: 40 }).map((xs) => xs.join(''));
const fileText = fc.oneof(yamlish, fc.string({ maxLength: 200 }), fc.string({ unit: 'binary', maxLength: 200 }), fc.json({ maxDepth: 4 }));

describe('hostile config files', () => {
  it('random and adversarial YAML/JSON contents: exit 0 or a located ConfigError, never a crash (property)', async () => {
    const dir = tmp('posttrain-hostile-config-');
    let tried = 0;
    let ok = 0;
    for (const ext of ['yaml', 'json'] as const) {
      await fc.assert(
        fc.asyncProperty(fileText, async (text) => {
          const file = join(dir, `c.${ext}`);
          writeFileSync(file, text);
          const r = await cli(['config', '--config', file], { cwd: dir });
          tried += 1;
          const why = broken(r);
          expect(why, `input ${JSON.stringify(text)}`).toBeNull();
          expect(protoClean()).toBe(true);
          ok += 1;
        }),
        { numRuns: 120 },
      );
    }
    recordReliability({ fault: 'random/adversarial config file contents (YAML and JSON)', stage: 'config', injected: tried, survived: ok, lost: 0, outcome: 'exit 0 or 2 with dot-path / file:line:col issues; no internal error, no stack', test: 'tests/hostile/config.test.ts' });
  });

  it('named hostile files: alias bomb, deep nesting, huge numbers, NaN/Infinity, prototype keys', async () => {
    const dir = tmp('posttrain-hostile-config-');
    const laughs = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]', ...Array.from({ length: 9 }, (_, i) => {
      const p = String.fromCharCode(97 + i);
      return `${String.fromCharCode(98 + i)}: &${String.fromCharCode(98 + i)} [${Array(9).fill(`*${p}`).join(',')}]`;
    })].join('\n');
    const cases: { name: string; text: string; expect: RegExp }[] = [
      { name: 'laughs.yaml', text: laughs, expect: /\(root\): YAML aliases expand too much/ },
      { name: 'deep.json', text: `{"model":${'['.repeat(100_000)}${']'.repeat(100_000)}}`, expect: /\(root\): nested deeper than 64 levels/ },
      { name: 'deepargs.json', text: `{"model":{"id":"x"},"stages":{"grpo":{"reward_funcs":[{"name":"format","args":${'{"a":'.repeat(20_000)}1${'}'.repeat(20_000)}}]}}}`, expect: /nested deeper than 64 levels/ },
      { name: 'deep.yaml', text: `model: ${'['.repeat(50_000)}${']'.repeat(50_000)}\n`, expect: /\(root\): (YAML syntax error at .*deep\.yaml:\d+:\d+|nested deeper)/ },
      { name: 'huge.json', text: '{"model":{"id":"x"},"runtime":{"seed":1e400,"threads":-0,"num_processes":99999999999999999999}}', expect: /runtime\.seed: expected number, got number Infinity/ },
      { name: 'nan.yaml', text: 'model: {id: x}\nruntime: {heartbeat_interval_s: .nan, heartbeat_timeout_s: .inf, start_timeout_s: -.Inf}\nstages: {sft: {learning_rate: .NaN}}\n', expect: /runtime\.heartbeat_interval_s: expected number, got number NaN/ },
      { name: 'nanstr.yaml', text: 'model: {id: x}\nruntime: {seed: NaN, threads: Infinity, start_timeout_s: -Infinity}\n', expect: /runtime\.seed: expected number, got string "NaN"/ },
      { name: 'proto.yaml', text: '__proto__:\n  polluted: 1\nmodel:\n  id: x\n  __proto__: {polluted: 1}\n', expect: /- __proto__: unknown key "__proto__"/ },
      { name: 'proto.json', text: '{"__proto__":{"polluted":1},"constructor":{"prototype":{"polluted":1}},"model":{"id":"x"}}', expect: /- constructor: unknown key "constructor"/ },
      { name: 'syntax.json', text: '{\n  "model": {"id": "x"},\n  "runtime": {"seed": 1,}\n}', expect: /\(root\): JSON syntax error/ },
      { name: 'syntax.yaml', text: 'model:\n  id: x\n   bad: [\n', expect: /YAML syntax error at .*syntax\.yaml:2:\d+/ },
      { name: 'scalar.yaml', text: '42\n', expect: /expected a mapping of sections/ },
    ];
    let ok = 0;
    for (const c of cases) {
      const file = join(dir, c.name);
      writeFileSync(file, c.text);
      const t0 = performance.now();
      const r = await cli(['config', '--config', file], { cwd: dir });
      const ms = performance.now() - t0;
      expect(broken(r), c.name).toBeNull();
      expect(r.code, `${c.name}: ${r.err}`).toBe(2);
      expect(r.err, c.name).toMatch(c.expect);
      expect(ms, `${c.name} took ${ms} ms`).toBeLessThan(3000); // refused quickly, not expanded
      expect(protoClean(), c.name).toBe(true);
      ok += 1;
    }
    recordReliability({ fault: 'alias bomb, 100k-deep nesting, 1e400, NaN/Infinity spellings, __proto__/constructor keys in config files', stage: 'config', injected: cases.length, survived: ok, lost: 0, outcome: 'each refused in < 3 s with a located ConfigError; Object.prototype untouched', test: 'tests/hostile/config.test.ts' });
  });
});

/** Every leaf of the resolved config (objects descend, arrays and scalars are leaves). */
function leafPaths(v: unknown, prefix: string[] = []): string[] {
  if (typeof v === 'object' && v !== null && !Array.isArray(v)) {
    const entries = Object.entries(v);
    if (entries.length === 0) return []; // free-form records (columns, args)
    return entries.flatMap(([k, x]) => leafPaths(x, [...prefix, k]));
  }
  return [prefix.join('.')];
}

describe('hostile --set flags', () => {
  const defaults = ConfigSchema.parse({ model: { id: 'x' } });
  const leaves = leafPaths(defaults).filter((p) => p !== '$schema');

  it('a value of the wrong type at every key of the schema is refused with that dot path (property)', async () => {
    // An object is the wrong type for every leaf (no leaf is a free-form record).
    const wrong = fc.oneof(
      fc.dictionary(fc.constantFrom('a', 'b', '__proto__'), fc.integer(), { minKeys: 1, maxKeys: 2 }).map((o) => JSON.stringify(o)),
      fc.constant('{"x":{"y":[1,{"z":null}]}}'),
    );
    let tried = 0;
    let ok = 0;
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...leaves), wrong, async (path, value) => {
        const r = await cli(['config', '--preset', 'smoke', `--set=${path}=${value}`]);
        tried += 1;
        expect(broken(r), `${path}=${value}`).toBeNull();
        expect(r.code, `${path}=${value}: ${r.err}`).toBe(2);
        expect(r.err).toContain(`  - ${path}`);
        expect(protoClean()).toBe(true);
        ok += 1;
      }),
      { numRuns: Math.max(2 * leaves.length, 100) },
    );
    // And every leaf once with a value of a random JSON type: 0 or a located error.
    for (const path of leaves) {
      for (const value of ['"str"', '-1', '1e999', 'NaN', 'null', '[]', 'true']) {
        const r = await cli(['config', '--preset', 'smoke', `--set=${path}=${value}`]);
        tried += 1;
        expect(broken(r), `${path}=${value}`).toBeNull();
        if (r.code === 2 && r.err.startsWith('error: Invalid config')) expect(r.err, `${path}=${value}`).toMatch(/ {2}- [\w.$]+: /);
        ok += 1;
      }
    }
    recordReliability({ fault: 'wrong-typed value at every config key via --set', stage: 'config', injected: tried, survived: ok, lost: 0, outcome: 'exit 0 or 2 naming the dot path; no internal error', test: 'tests/hostile/config.test.ts' });
  });

  it('random --set strings never crash (property)', async () => {
    const seg = fc.oneof(fc.constantFrom('runtime', 'model', 'stages', 'sft', 'grpo', 'reward_funcs', '0', '1', '7', '__proto__', 'constructor', 'prototype', 'id', 'seed', ''), fc.string({ maxLength: 6 }));
    const key = fc.array(seg, { minLength: 1, maxLength: 6 }).map((s) => s.join('.'));
    const value = fc.oneof(fc.string({ maxLength: 30 }), fc.json({ maxDepth: 3 }), fc.constantFrom('1e999', 'NaN', '-Infinity', '{"__proto__":{"polluted":1}}', '[' .repeat(3000)));
    const flag = fc.oneof(fc.tuple(key, value).map(([k, v]) => `${k}=${v}`), fc.string({ maxLength: 40 }), fc.string({ unit: 'binary', maxLength: 40 }));
    let tried = 0;
    let ok = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(flag, { minLength: 1, maxLength: 3 }), async (flags) => {
        const r = await cli(['config', '--preset', 'smoke', ...flags.map((f) => `--set=${f}`)]);
        tried += 1;
        expect(broken(r), JSON.stringify(flags)).toBeNull();
        expect(protoClean(), JSON.stringify(flags)).toBe(true);
        ok += 1;
      }),
      { numRuns: 200 },
    );
    recordReliability({ fault: 'random --set strings (keys, values, binary)', stage: 'config', injected: tried, survived: ok, lost: 0, outcome: 'exit 0 or 2 with located issues; no internal error, no stack', test: 'tests/hostile/config.test.ts' });
  });

  it('prototype pollution, deep paths and huge list indices via --set are refused', async () => {
    const cases: [string, RegExp][] = [
      ['__proto__.polluted=1', /- __proto__: unknown key "__proto__"/],
      ['runtime.__proto__.polluted=1', /- runtime\.__proto__: unknown key "__proto__"/],
      ['constructor.prototype.polluted=1', /- constructor: unknown key "constructor"/],
      ['model.constructor=1', /- model\.constructor: unknown key "constructor"/],
      ['stages.grpo.reward_funcs.0.args.__proto__.polluted=1', /^(?![\s\S]*internal error)/],
      ['stages.grpo.reward_funcs.4294967294.weight=1', /- stages\.grpo\.reward_funcs\.4294967294: index 4294967294 is past the end of the list/],
      [`${'a.'.repeat(20_000)}b=1`, /nested deeper than 64 levels/],
      [`stages.grpo.reward_funcs.0.args.x=${'['.repeat(20_000)}${']'.repeat(20_000)}`, /- stages\.grpo\.reward_funcs\.0\.args\.x: nested deeper than 64 levels/],
    ];
    let ok = 0;
    for (const [flag, want] of cases) {
      const t0 = performance.now();
      const r = await cli(['config', '--preset', 'smoke', `--set=${flag}`]);
      expect(broken(r), flag.slice(0, 80)).toBeNull();
      expect(r.err, flag.slice(0, 80)).toMatch(want);
      expect(performance.now() - t0).toBeLessThan(3000);
      expect(({} as Record<string, unknown>).polluted).toBeUndefined();
      ok += 1;
    }
    recordReliability({ fault: '--set __proto__/constructor paths, 20k-deep paths/values, list index 4294967294', stage: 'config', injected: cases.length, survived: ok, lost: 0, outcome: 'located ConfigError in < 3 s; ({}).polluted stays undefined; no OOM', test: 'tests/hostile/config.test.ts' });
  });
});

describe('a NUL byte in any config string', () => {
  it('is a config error at its dot path (flag and file), before any run folder exists', async () => {
    const cwd = tmp('posttrain-nul-');
    writeFileSync(join(cwd, 'nul.yaml'), 'runtime:\n  runs_dir: "runs\\0x"\n');
    const cases: { args: string[]; path: string }[] = [
      { args: ['--set', 'runtime.runs_dir="r\\u0000x"'], path: 'runtime.runs_dir' },
      { args: ['--set', 'data.sft.path="a\\u0000.jsonl"'], path: 'data.sft.path' },
      { args: ['--set', 'model.id="./m\\u0000x"'], path: 'model.id' },
      { args: ['--set', 'runtime.python="/usr/bin/py\\u0000"'], path: 'runtime.python' },
      { args: ['--config', 'nul.yaml'], path: 'runtime.runs_dir' },
    ];
    let ok = 0;
    for (const c of cases) {
      const r = await cli(['run', '--preset', 'smoke', '--stages', 'sft', ...c.args], { cwd });
      expect(r.code, r.err).toBe(2);
      expect(r.err).toContain(`${c.path}: contains a NUL byte (\\0); no file path or name can hold one. Fix: remove it.`);
      expect(r.err).not.toMatch(STACK);
      expect(r.err).not.toContain('internal error');
      ok += 1;
    }
    expect(existsSync(join(cwd, 'runs'))).toBe(false);
    recordReliability({ fault: 'NUL byte in runs_dir, a data path, model.id, runtime.python (--set and a YAML file)', stage: 'config', injected: cases.length, survived: ok, lost: 0, outcome: 'exit 2 "<dot path>: contains a NUL byte (\\0) … Fix: remove it."; no run folder', test: 'tests/hostile/config.test.ts' });
  });
});
