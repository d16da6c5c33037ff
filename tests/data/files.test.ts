// File-level failures: each is a DataError naming the file and the fix, never a raw fs error.
import { chmod, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { DataError, UsageError } from '../../src/errors.js';
import { validateFile } from '../../src/data/validate.js';
import { sft, tempDir, tempFile } from './helpers.js';

async function dataError(path: string): Promise<DataError> {
  const err = await validateFile(path, sft()).catch((e: unknown) => e);
  expect(err).toBeInstanceOf(DataError);
  return err as DataError;
}

describe('file errors', () => {
  it('missing file', async () => {
    const path = join(await tempDir(), 'nope.jsonl');
    const err = await dataError(path);
    expect(err.message).toBe(`Data file not found: ${path}`);
    expect(err.hint).toMatch(/Check the path/);
  });

  it('a path through a file', async () => {
    const file = await tempFile(['{}']);
    const err = await dataError(join(file, 'inner.jsonl'));
    expect(err.message).toMatch(/^Data file not found: .*inner\.jsonl/);
  });

  it('directory', async () => {
    const dir = join(await tempDir(), 'train.jsonl');
    await mkdir(dir);
    const err = await dataError(dir);
    expect(err.message).toBe(`Data path ${dir} is a directory, not a JSONL file.`);
    expect(err.hint).toBe('Point it at the .jsonl file itself.');
  });

  it('empty file', async () => {
    const path = await tempFile('');
    const err = await dataError(path);
    expect(err.message).toBe(`Data file ${path} is empty: no rows to train on.`);
    expect(err.hint).toMatch(/one JSON object per line/);
  });

  it('only blank lines', async () => {
    const path = await tempFile('\n  \r\n\t\n');
    const err = await dataError(path);
    expect(err.message).toBe(`Data file ${path} has only blank lines (3): no rows to train on.`);
  });

  it('gzip-compressed file', async () => {
    const path = await tempFile(gzipSync('{"prompt": "p", "response": "r"}\n'), 'train.jsonl.gz');
    const err = await dataError(path);
    expect(err.message).toBe(`Data file ${path} is gzip-compressed.`);
    expect(err.hint).toBe(`Decompress it first: gunzip -k ${path}`);
  });

  it('UTF-16 file', async () => {
    const text = '{"prompt": "p", "response": "r"}\r\n';
    const path = await tempFile(Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(text, 'utf16le')]));
    const err = await dataError(path);
    expect(err.message).toBe(`Data file ${path} is UTF-16 text; JSONL must be UTF-8.`);
    expect(err.hint).toMatch(/^Convert it: iconv -f UTF-16 -t UTF-8 /);
  });

  it('a limit below 1 is a usage error', async () => {
    const path = await tempFile(['{"prompt": "p", "response": "r"}']);
    await expect(validateFile(path, sft({ limit: 0 }))).rejects.toThrow(UsageError);
  });

  // root reads anything, so the permission check only means something for other users.
  it.skipIf(process.getuid?.() === 0)('unreadable file', async () => {
    const path = await tempFile(['{"prompt": "p", "response": "r"}']);
    await chmod(path, 0o000);
    const err = await dataError(path);
    expect(err.message).toBe(`Cannot read data file ${path}: permission denied.`);
    expect(err.hint).toMatch(/chmod/);
  });

  it('errors from onExample are not disguised as file errors', async () => {
    const path = await tempFile(['{"prompt": "p", "response": "r"}']);
    const boom = Object.assign(new Error('disk full'), { code: 'ENOSPC', syscall: 'write' });
    await expect(
      validateFile(path, sft(), () => {
        throw boom;
      }),
    ).rejects.toBe(boom);
  });
});
