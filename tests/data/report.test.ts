// The human report: one `file:line: field: message` line per problem, then the summary.
import { describe, expect, it } from 'vitest';
import { formatReport, validateFile } from '../../src/data/validate.js';
import { jsonl, sft, tempFile } from './helpers.js';

describe('formatReport', () => {
  it('lists every problem, then a summary with reasons by frequency', async () => {
    const path = await tempFile(jsonl({ prompt: 'a', response: 'b' }, '{bad', { prompt: 1, response: 'b' }, { prompt: 2, response: 'c' }, '', { prompt: 'a', response: 'b' }));
    const report = await validateFile(path, sft());
    expect(formatReport(report).split('\n')).toEqual([
      `${path}:2: not valid JSON: ${report.problems[0]!.message.slice('not valid JSON: '.length)}`,
      `${path}:3: prompt: expected a string, got number`,
      `${path}:4: prompt: expected a string, got number`,
      '5 rows: 2 ok, 3 bad (wrong_type ×2, bad_json ×1)',
      expect.stringMatching(/^note: 1 row repeats an earlier row exactly \(line 6 = line 1\)/),
    ]);
  });

  it('counts exact duplicates of earlier rows (after mapping), with the first few lines', async () => {
    const rows = Array.from({ length: 12 }, (_, i) => ({ prompt: `q${i % 4}`, chosen: `c${i % 4}`, rejected: `r${i % 4}` }));
    const path = await tempFile(jsonl(...rows, { prompt: 'q0', chosen: 'r0', rejected: 'c0' }));
    const report = await validateFile(path, { kind: 'preference', format: 'auto', columns: {} });
    expect(report.duplicates.rows).toBe(8);
    expect(report.duplicates.examples).toEqual([5, 6, 7, 8, 9].map((line) => ({ line, same_as: ((line - 1) % 4) + 1 })));
    expect(formatReport(report)).toMatch(/note: 8 rows repeat an earlier row exactly \(line 5 = line 1, .*line 9 = line 1, …\); .*held-out split keeps rows with the same prompt on one side/);
  });

  it('is a single summary line for a clean file', async () => {
    const path = await tempFile(jsonl({ prompt: 'a', response: 'b' }));
    expect(formatReport(await validateFile(path, sft()))).toBe('1 row: 1 ok, 0 bad');
  });

  it('keeps every problem, however many', async () => {
    const path = await tempFile(Array.from({ length: 1500 }, () => '{"prompt": 1, "response": "x"}'));
    const report = await validateFile(path, sft());
    expect(report.problems).toHaveLength(1500);
    expect(formatReport(report).split('\n')).toHaveLength(1501);
  });
});
