// Shared test plumbing: real temp folders (no mocks), and a validate call that also collects the
// canonical examples it emitted.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach } from 'vitest';
import { type Example, type ValidateOptions, type ValidationReport, validateFile } from '../../src/data/validate.js';

const made: string[] = [];

/** Removes every folder made by tempDir() after each test of the file that imports this. */
afterEach(async () => {
  await Promise.all(made.splice(0).map((d) => rm(d, { recursive: true, force: true })));
});

export async function tempDir(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'posttrain-data-'));
  made.push(d);
  return d;
}

/** Write `content` (lines joined with \n plus a final \n when given an array) to a temp file. */
export async function tempFile(content: string | Buffer | readonly string[], name = 'data.jsonl'): Promise<string> {
  const path = join(await tempDir(), name);
  const body = Array.isArray(content) ? `${content.join('\n')}\n` : (content as string | Buffer);
  await writeFile(path, body);
  return path;
}

/** JSON-encode rows one per line (strings are taken as raw lines). */
export const jsonl = (...rows: unknown[]): string[] => rows.map((r) => (typeof r === 'string' ? r : JSON.stringify(r)));

export interface Collected {
  report: ValidationReport;
  examples: { ex: Example; line: number }[];
}

export async function collect(path: string, opts: ValidateOptions): Promise<Collected> {
  const examples: Collected['examples'] = [];
  const report = await validateFile(path, opts, (ex, line) => {
    examples.push({ ex, line });
  });
  return { report, examples };
}

/** `[line, field, reason]` triples: the part of a problem tests pin exactly. */
export const triples = (r: ValidationReport) => r.problems.map((p) => [p.line, p.field, p.reason]);

export const sft = (extra: Partial<ValidateOptions> = {}): ValidateOptions => ({ kind: 'sft', format: 'auto', columns: {}, ...extra });
export const pref = (extra: Partial<ValidateOptions> = {}): ValidateOptions => ({ kind: 'preference', format: 'auto', columns: {}, ...extra });
export const prompts = (extra: Partial<ValidateOptions> = {}): ValidateOptions => ({ kind: 'prompt', format: 'auto', columns: {}, ...extra });
