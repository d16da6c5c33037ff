// The byte-level reader as seen through validateFile: encodings, line endings, line numbers,
// over-long lines (bounded memory), truncated and pathological lines, hashing.
import { createHash } from 'node:crypto';
import { open, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { validateFile } from '../../src/data/validate.js';
import { collect, jsonl, sft, tempDir, tempFile, triples } from './helpers.js';

const good = (i: number) => JSON.stringify({ prompt: `p${i}`, response: `r${i}` });

describe('line handling', () => {
  it('strips a UTF-8 BOM at the start of the file', async () => {
    const path = await tempFile(Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(`${good(1)}\n${good(2)}\n`)]));
    const { report, examples } = await collect(path, sft());
    expect(report.problems).toEqual([]);
    expect(examples.map((e) => e.ex)).toEqual([
      { prompt: 'p1', completion: 'r1' },
      { prompt: 'p2', completion: 'r2' },
    ]);
  });

  it('accepts CRLF line endings and does not leave \\r in the text', async () => {
    const path = await tempFile(`${good(1)}\r\n${JSON.stringify({ prompt: 'a', response: 'b\r' })}\r\n\r\n${good(3)}`);
    const { report, examples } = await collect(path, sft());
    expect(report).toMatchObject({ rows: 3, ok: 3, bad: 0, blank: 1 });
    // A \r inside a JSON string is data (escaped), and survives; the line terminator does not.
    expect(examples.map((e) => e.line)).toEqual([1, 2, 4]);
    expect(examples[1]!.ex).toEqual({ prompt: 'a', completion: 'b\r' });
  });

  it('skips blank and whitespace-only lines but keeps physical line numbers', async () => {
    const path = await tempFile(['', good(1), '   ', '\t', good(2), '{"prompt": 1, "response": "x"}', '']);
    const { report, examples } = await collect(path, sft());
    expect(report).toMatchObject({ rows: 3, ok: 2, bad: 1, blank: 4 });
    expect(examples.map((e) => e.line)).toEqual([2, 5]);
    expect(triples(report)).toEqual([[6, 'prompt', 'wrong_type']]);
  });

  it('reports invalid UTF-8 on its line and carries on', async () => {
    const bad = Buffer.concat([Buffer.from('{"prompt": "caf'), Buffer.from([0xe9]), Buffer.from('", "response": "x"}')]);
    const path = await tempFile(Buffer.concat([Buffer.from(`${good(1)}\n`), bad, Buffer.from(`\n${good(3)}\n`)]));
    const { report } = await collect(path, sft());
    expect(report).toMatchObject({ rows: 3, ok: 2, bad: 1 });
    expect(triples(report)).toEqual([[2, null, 'invalid_utf8']]);
    expect(report.problems[0]!.message).toMatch(/not valid UTF-8/);
  });

  it('decodes multi-byte characters that straddle read chunks', async () => {
    // 64 KiB chunks: put a 4-byte emoji and 2-byte letters across the boundary.
    const text = 'é😀'.repeat(30_000);
    const path = await tempFile(jsonl({ prompt: text, response: 'ok' }));
    const { report, examples } = await collect(path, sft());
    expect(report.ok).toBe(1);
    expect(examples[0]!.ex).toEqual({ prompt: text, completion: 'ok' });
  });

  it('reports a line longer than maxLineBytes without losing the lines around it', async () => {
    const long = JSON.stringify({ prompt: 'x'.repeat(1000), response: 'y' });
    const path = await tempFile([good(1), long, good(3), long, good(5)]);
    const { report, examples } = await collect(path, sft({ maxLineBytes: 100 }));
    expect(triples(report)).toEqual([
      [2, null, 'line_too_long'],
      [4, null, 'line_too_long'],
    ]);
    expect(report.problems[0]!.message).toBe(`line is ${long.length.toLocaleString('en-US')} bytes, over the 100 bytes limit per line; skipped`);
    expect(examples.map((e) => e.line)).toEqual([1, 3, 5]);
  });

  it('accepts a line of exactly maxLineBytes', async () => {
    const line = good(1);
    const path = await tempFile([line]);
    const { report } = await collect(path, sft({ maxLineBytes: line.length }));
    expect(report.ok).toBe(1);
    const { report: tight } = await collect(path, sft({ maxLineBytes: line.length - 1 }));
    expect(triples(tight)).toEqual([[1, null, 'line_too_long']]);
  });

  it('reports a real ~20 MB line with default settings, and memory stays bounded', async () => {
    const path = join(await tempDir(), 'huge.jsonl');
    const mib = 1024 * 1024;
    const fh = await open(path, 'w');
    const block = Buffer.alloc(mib, 'a');
    await fh.write(`${good(1)}\n{"prompt": "`);
    for (let i = 0; i < 20; i++) await fh.write(block);
    await fh.write(`", "response": "r"}\n${good(3)}\n`);
    await fh.close();

    const used = () => {
      const m = process.memoryUsage();
      return m.heapUsed + m.arrayBuffers;
    };
    const base = used();
    let peak = base;
    const sampler = setInterval(() => (peak = Math.max(peak, used())), 1);
    let report;
    try {
      ({ report } = await collect(path, sft()));
    } finally {
      clearInterval(sampler);
    }
    peak = Math.max(peak, used());
    expect(triples(report)).toEqual([[2, null, 'line_too_long']]);
    expect(report.problems[0]!.message).toMatch(/^line is 20,971,5\d\d bytes, over the 16 MiB limit per line; skipped$/);
    expect(report).toMatchObject({ rows: 3, ok: 2 });
    // The reader holds at most maxLineBytes (16 MiB) of the line before giving up on it (measured:
    // ~22 MiB growth, counting chunks not yet collected). Holding and decoding the whole line costs
    // the 20 MiB buffer plus a 20 MiB string at the very least (measured: ~40 MiB).
    expect(peak - base).toBeLessThan(32 * mib);
  });

  it('says the file seems cut off when the last line has no newline and is not JSON', async () => {
    const path = await tempFile(`${good(1)}\n${good(2)}\n{"prompt": "p3", "resp`);
    const { report } = await collect(path, sft());
    expect(triples(report)).toEqual([[3, null, 'bad_json']]);
    expect(report.problems[0]!.message).toMatch(/^the file seems to end mid-line/);
  });

  it('accepts a valid last line without a newline', async () => {
    const path = await tempFile(`${good(1)}\n${good(2)}`);
    const { report } = await collect(path, sft());
    expect(report).toMatchObject({ rows: 2, ok: 2 });
  });

  it('reports deeply nested JSON as bad_json instead of crashing', async () => {
    const open200k = '['.repeat(200_000);
    const balanced = `{"prompt": "p", "response": "r", "meta": ${'['.repeat(100_000)}${']'.repeat(100_000)}}`;
    const path = await tempFile([good(1), open200k, balanced, good(4)]);
    const { report, examples } = await collect(path, sft());
    expect(triples(report)).toEqual([
      [2, null, 'bad_json'],
      [3, null, 'bad_json'],
    ]);
    expect(report.problems[1]!.message).toMatch(/nested deeper than 512 levels/);
    expect(examples.map((e) => e.line)).toEqual([1, 4]);
  });

  it('does not count brackets inside strings as nesting', async () => {
    const path = await tempFile(jsonl({ prompt: '['.repeat(5000) + '\\"[[[', response: '{'.repeat(5000) }));
    const { report } = await collect(path, sft());
    expect(report.ok).toBe(1);
  });

  it('hashes exactly the bytes read', async () => {
    const body = `\ufeff${good(1)}\r\n\n${good(2)}\n${good(3)}`;
    const path = await tempFile(body);
    const { report } = await collect(path, sft());
    const bytes = await readFile(path);
    expect(report.bytes).toBe(bytes.length);
    expect(report.sha256).toBe(createHash('sha256').update(bytes).digest('hex'));
  });

  it('with a limit, stops after that many non-blank rows and hashes only the lines read', async () => {
    const lines = ['', good(1), '{oops', '', good(3), good(4), good(5)];
    const path = await tempFile(lines);
    const { report, examples } = await collect(path, sft({ limit: 3 }));
    expect(report).toMatchObject({ rows: 3, ok: 2, bad: 1, blank: 2 });
    expect(examples.map((e) => e.line)).toEqual([2, 5]);
    const prefix = `${lines.slice(0, 5).join('\n')}\n`;
    expect(report.bytes).toBe(Buffer.byteLength(prefix));
    expect(report.sha256).toBe(createHash('sha256').update(prefix).digest('hex'));
  });

  it('keeps line numbers right across many chunks', async () => {
    const rows = Array.from({ length: 20_000 }, (_, i) => (i % 997 === 5 ? '{"prompt": ""}' : good(i)));
    const path = await tempFile(rows);
    const report = await validateFile(path, sft({ format: 'prompt_response' }));
    const expected = rows.flatMap((r, i) => (r.startsWith('{"prompt": ""') ? [i + 1] : []));
    expect([...new Set(report.problems.map((p) => p.line))]).toEqual(expected);
    expect(report.rows).toBe(20_000);
  });
});
