// Hostile JSONL through `posttrain validate` (the real CLI): truncated, BOM, CRLF, invalid UTF-8,
// an 80 MB line (memory measured on the real bin), deep nesting, wrong types, empty files,
// folders, missing files. Every answer is a report naming file:line or one DataError, exit 2, no
// stack trace; random byte lines never crash the validator.
import { spawn } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readFileSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { validateFile } from '../../src/data/validate.js';
import { PosttrainError } from '../../src/errors.js';
import { BIN, cli, tmp } from '../helpers/cli.js';
import { recordReliability } from '../helpers/reliability.js';

const STACK = /^\s+at .+:\d+:\d+\)?$/m;
const good = (i: number) => `{"prompt":"p${i}","response":"r${i}"}`;

describe('hostile JSONL files (posttrain validate)', () => {
  it('each bad file is a clear error naming file:line (or the file), exit 2, no stack trace', async () => {
    const dir = tmp('posttrain-hostile-jsonl-');
    const f = (name: string, content: string | Buffer) => {
      const p = join(dir, name);
      writeFileSync(p, content);
      return p;
    };
    mkdirSync(join(dir, 'folder.jsonl'));
    const cases: { name: string; path: string; want: RegExp[] }[] = [
      { name: 'truncated last line', path: f('trunc.jsonl', `${good(1)}\n{"prompt":"p2","resp`), want: [/trunc\.jsonl:2: the file seems to end mid-line/] },
      { name: 'BOM + CRLF + truncated', path: f('bom.jsonl', Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(`${good(1)}\r\n${good(2)}\r\n{"prompt":`)])), want: [/bom\.jsonl:3: the file seems to end mid-line/, /3 rows: 2 ok, 1 bad/] },
      { name: 'invalid UTF-8', path: f('inv.jsonl', Buffer.concat([Buffer.from(`${good(1)}\n{"prompt":"a`), Buffer.from([0xff, 0xc3]), Buffer.from('","response":"b"}\n')])), want: [/inv\.jsonl:2: not valid UTF-8/] },
      { name: 'cut mid-character', path: f('cut.jsonl', Buffer.concat([Buffer.from(`${good(1)}\n{"prompt":"`), Buffer.from([0xe2, 0x82])])), want: [/cut\.jsonl:2: not valid UTF-8 \(and the file ends without a newline/] },
      { name: 'deeply nested JSON', path: f('deep.jsonl', `${good(1)}\n${'{"a":'.repeat(100_000)}1${'}'.repeat(100_000)}\n${'['.repeat(200_000)}\n`), want: [/deep\.jsonl:2: JSON nested deeper than 512 levels/, /deep\.jsonl:3: JSON nested deeper/] },
      { name: 'numbers where strings belong', path: f('types.jsonl', '{"prompt":1,"response":2}\n{"prompt":"a","response":1e999}\n{"prompt":["x"],"response":{"a":1}}\n"str"\nnull\n[1]\n'), want: [/types\.jsonl:1: prompt: expected a string, got number/, /types\.jsonl:2: response:/, /types\.jsonl:4: expected a JSON object per line, got string/, /types\.jsonl:6: .*got an array/] },
      { name: 'prototype keys in rows', path: f('proto.jsonl', '{"__proto__":{"prompt":"x"},"response":"r"}\n{"prompt":"p","response":"r","constructor":1}\n'), want: [/proto\.jsonl:1: prompt:/] },
      { name: 'empty file', path: f('empty.jsonl', ''), want: [/Data file .*empty\.jsonl is empty/] },
      { name: 'blank lines only', path: f('blank.jsonl', '\n\r\n  \n'), want: [/blank\.jsonl has only blank lines/] },
      { name: 'a directory', path: join(dir, 'folder.jsonl'), want: [/Data path .*folder\.jsonl is a directory/] },
      { name: 'missing file', path: join(dir, 'missing.jsonl'), want: [/Data file not found: .*missing\.jsonl/] },
      { name: 'path through a file', path: join(f('plain', 'x'), 'x.jsonl'), want: [/Data file not found: .*plain\/x\.jsonl \(a part of the path is not a directory\)/] },
      { name: 'gzip', path: f('gz.jsonl', Buffer.from([0x1f, 0x8b, 8, 0, 0, 0])), want: [/is gzip-compressed/] },
      { name: 'UTF-16', path: f('u16.jsonl', Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(good(1), 'utf16le')])), want: [/is UTF-16 text/] },
    ];
    let ok = 0;
    for (const c of cases) {
      const r = await cli(['validate', 'sft', c.path]);
      const all = r.out + r.err;
      expect(r.code, `${c.name}: ${all}`).toBe(2);
      expect(all, c.name).not.toMatch(STACK);
      expect(all, c.name).not.toContain('internal error');
      for (const w of c.want) expect(all, c.name).toMatch(w);
      ok += 1;
    }
    // Also as a --json report: the same problems, machine-readable, still exit 2.
    const j = await cli(['validate', 'sft', join(dir, 'types.jsonl'), '--json']);
    expect(j.code).toBe(2);
    expect(JSON.parse(j.out).problems.map((p: { line: number }) => p.line)).toEqual([1, 1, 2, 3, 3, 4, 5, 6]);
    expect(({} as Record<string, unknown>).prompt).toBeUndefined();
    recordReliability({ fault: 'hostile JSONL files: truncated, BOM/CRLF, invalid UTF-8, 100k-deep JSON, wrong types, empty, folder, missing, gzip, UTF-16', stage: 'jsonl', injected: cases.length, survived: ok, lost: 0, outcome: 'exit 2 with file:line (or file) and a hint; no stack trace', test: 'tests/hostile/jsonl.test.ts' });
  });

  it('an 80 MB line: exit 2 naming file:line, other rows checked, and peak memory stays far below the line size (real bin)', async () => {
    const dir = tmp('posttrain-hostile-jsonl-');
    const big = join(dir, 'big.jsonl');
    const fd = openSync(big, 'w');
    writeSync(fd, `${good(1)}\n{"prompt":"`);
    const chunk = Buffer.alloc(1 << 20, 'x');
    for (let i = 0; i < 80; i++) writeSync(fd, chunk);
    writeSync(fd, `","response":"r"}\n${good(3)}\n`);
    closeSync(fd);
    const small = join(dir, 'small.jsonl');
    writeFileSync(small, `${good(1)}\n{"prompt":1}\n`);

    /** Run the real bin; sample VmHWM (peak RSS) from /proc until it exits. */
    const peak = (file: string) =>
      new Promise<{ code: number | null; out: string; hwmKb: number }>((resolve) => {
        const p = spawn(process.execPath, [BIN, 'validate', 'sft', file], { stdio: ['ignore', 'pipe', 'pipe'] });
        let out = '';
        let hwmKb = 0;
        p.stdout.on('data', (d) => (out += d));
        p.stderr.on('data', (d) => (out += d));
        const sample = () => {
          try {
            const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${p.pid}/status`, 'utf8'));
            if (m) hwmKb = Math.max(hwmKb, Number(m[1]));
          } catch {
            // exited between samples
          }
        };
        const timer = setInterval(sample, 10);
        p.on('exit', (code) => {
          clearInterval(timer);
          resolve({ code, out, hwmKb });
        });
      });
    const base = await peak(small);
    const r = await peak(big);
    expect(r.code, r.out).toBe(2);
    expect(r.out).toMatch(/big\.jsonl:2: line is 83,886,108 bytes, over the 16 MiB limit per line; skipped/);
    expect(r.out).toMatch(/3 rows: 2 ok, 1 bad \(line_too_long ×1\)/);
    expect(r.out).not.toMatch(STACK);
    const growthMb = (r.hwmKb - base.hwmKb) / 1024;
    // Holding the line (80 MB buffer + its string) would cost well over 80 MB; the reader keeps at
    // most the 16 MiB line limit plus garbage not yet collected.
    if (base.hwmKb > 0 && r.hwmKb > 0) expect(growthMb, `peak RSS grew ${growthMb.toFixed(1)} MB`).toBeLessThan(60);
    recordReliability({ fault: '80 MB JSONL line', stage: 'jsonl', injected: 1, survived: 1, lost: 0, outcome: `exit 2, file:line named, other rows kept; peak RSS +${growthMb.toFixed(0)} MB over a small file`, test: 'tests/hostile/jsonl.test.ts' });
  });

  it('random byte lines never crash the validator: always a report or a DataError (property)', async () => {
    const dir = tmp('posttrain-hostile-jsonl-');
    const fragment = fc.oneof(
      fc.uint8Array({ maxLength: 60 }).map((b) => Buffer.from(b)),
      fc.string({ maxLength: 60 }).map((s) => Buffer.from(s)),
      fc.json({ maxDepth: 3 }).map((s) => Buffer.from(s)),
      fc.constantFrom('\n', '\r\n', '{', '}', '[', '"', '\\', '\uFEFF', '{"prompt":', '"response":"x"}', '{"messages":[{"role":"user","content":"a"}]}', '{"chosen":"ab","rejected":"ac"}').map((s) => Buffer.from(s)),
      fc.constantFrom(Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from([0xff]), Buffer.from([0xc3]), Buffer.from([0xed, 0xa0, 0x80]), Buffer.from([0x1f, 0x8b]), Buffer.from([0xff, 0xfe]), Buffer.from([0])),
    );
    const file = fc.array(fragment, { maxLength: 30 }).map((parts) => Buffer.concat(parts));
    const kinds = ['sft', 'preference', 'prompt'] as const;
    let tried = 0;
    let ok = 0;
    await fc.assert(
      fc.asyncProperty(file, fc.constantFrom(...kinds), fc.integer({ min: 1, max: 64 }), async (bytes, kind, maxLineBytes) => {
        const p = join(dir, 'r.jsonl');
        writeFileSync(p, bytes);
        tried += 1;
        try {
          const report = await validateFile(p, { kind, format: 'auto', columns: {}, maxLineBytes: maxLineBytes * 4 });
          expect(report.rows).toBe(report.ok + report.bad);
          for (const pr of report.problems) expect(pr.line).toBeGreaterThanOrEqual(1);
        } catch (e) {
          expect(e, String(e)).toBeInstanceOf(PosttrainError);
          expect((e as PosttrainError).exitCode).toBe(2);
          expect((e as Error).message).toContain(p);
        }
        ok += 1;
      }),
      { numRuns: 300 },
    );
    recordReliability({ fault: 'random byte lines (binary, BOMs, lone surrogates, NUL, partial JSON)', stage: 'jsonl', injected: tried, survived: ok, lost: 0, outcome: 'always a report with per-line problems or a DataError naming the file', test: 'tests/hostile/jsonl.test.ts' });
  });
});
