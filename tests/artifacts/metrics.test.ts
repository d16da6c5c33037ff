// metrics.jsonl: appended line by line, read back tolerantly, truncated before a resume.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ArtifactError, type MetricRecord, MetricsWriter, readMetrics, truncateMetricsAfter } from '../../src/artifacts/index.js';
import { tempDir } from './helpers.js';

const rec = (step: number, values: MetricRecord['values'] = { loss: 1 / step }): MetricRecord => ({ stage: 'sft', step, ts: 1_700_000_000 + step, values });

function writeSteps(file: string, steps: number[]): void {
  const w = new MetricsWriter(file);
  for (const s of steps) w.append(rec(s));
  w.close();
}

describe('MetricsWriter / readMetrics', () => {
  it('appends one line per record, visible at once, kept across reopen', () => {
    const file = path.join(tempDir(), 'stages', 'sft', 'metrics.jsonl'); // folders created
    const w = new MetricsWriter(file);
    w.append(rec(1));
    // Unbuffered: on disk before close.
    expect(fs.readFileSync(file, 'utf8')).toBe('{"stage":"sft","step":1,"ts":1700000001,"values":{"loss":1}}\n');
    w.append(rec(2));
    w.close();
    w.close();
    expect(() => w.append(rec(3))).toThrow(ArtifactError);
    writeSteps(file, [3]);
    expect(readMetrics(file)).toEqual([rec(1), rec(2), rec(3)]);
  });

  it('a missing file reads as no metrics', () => {
    expect(readMetrics(path.join(tempDir(), 'none.jsonl'))).toEqual([]);
  });

  it('a truncated last line is ignored, and dropped before the next append', () => {
    const file = path.join(tempDir(), 'metrics.jsonl');
    writeSteps(file, [1, 2]);
    fs.appendFileSync(file, '{"stage":"sft","step":3,"ts":17000');
    expect(readMetrics(file).map((r) => r.step)).toEqual([1, 2]);
    writeSteps(file, [3]);
    expect(readMetrics(file).map((r) => r.step)).toEqual([1, 2, 3]);
    expect(fs.readFileSync(file, 'utf8').split('\n')).toHaveLength(4); // 3 lines + final ''
  });

  it('a whole last record missing only its newline is kept', () => {
    const file = path.join(tempDir(), 'metrics.jsonl');
    fs.writeFileSync(file, JSON.stringify(rec(1)));
    expect(readMetrics(file)).toEqual([rec(1)]);
    writeSteps(file, [2]);
    expect(readMetrics(file)).toEqual([rec(1), rec(2)]);
  });

  it('a damaged line in the middle is an error naming the line', () => {
    const file = path.join(tempDir(), 'metrics.jsonl');
    fs.writeFileSync(file, `${JSON.stringify(rec(1))}\nnot json\n${JSON.stringify(rec(2))}\n`);
    expect(() => readMetrics(file)).toThrow(`${file}:2 is not a metric record: not json`);
  });

  it('non-finite values round-trip (stored as "NaN"/"Infinity"/"-Infinity"); null stays null', () => {
    const file = path.join(tempDir(), 'metrics.jsonl');
    const values = { loss: Number.NaN, grad_norm: Number.POSITIVE_INFINITY, reward: Number.NEGATIVE_INFINITY, kl: null, lr: 2e-4 };
    const w = new MetricsWriter(file);
    w.append(rec(1, values));
    w.close();
    const line = fs.readFileSync(file, 'utf8');
    expect(JSON.parse(line)).toEqual({ stage: 'sft', step: 1, ts: 1_700_000_001, values: { loss: 'NaN', grad_norm: 'Infinity', reward: '-Infinity', kl: null, lr: 2e-4 } });
    const [back] = readMetrics(file);
    expect(Number.isNaN(back!.values.loss)).toBe(true);
    expect(back!.values).toEqual(values);
  });

  it('refuses a non-finite step', () => {
    const w = new MetricsWriter(path.join(tempDir(), 'metrics.jsonl'));
    expect(() => w.append(rec(Number.NaN))).toThrow(ArtifactError);
    w.close();
  });
});

describe('truncateMetricsAfter', () => {
  it('drops exactly the records after the step and returns how many', () => {
    const file = path.join(tempDir(), 'metrics.jsonl');
    writeSteps(file, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    expect(truncateMetricsAfter(file, 6)).toBe(4);
    expect(readMetrics(file).map((r) => r.step)).toEqual([1, 2, 3, 4, 5, 6]);
    const before = fs.readFileSync(file, 'utf8');
    expect(truncateMetricsAfter(file, 6)).toBe(0);
    expect(fs.readFileSync(file, 'utf8')).toBe(before);
    expect(truncateMetricsAfter(file, 0)).toBe(6);
    expect(fs.readFileSync(file, 'utf8')).toBe('');
  });

  it('also removes a truncated last line; a missing file drops nothing', () => {
    const dir = tempDir();
    const file = path.join(dir, 'metrics.jsonl');
    writeSteps(file, [1, 2, 3]);
    fs.appendFileSync(file, '{"stage":"sft","st');
    expect(truncateMetricsAfter(file, 2)).toBe(1);
    expect(fs.readFileSync(file, 'utf8')).toBe(`${JSON.stringify(rec(1))}\n${JSON.stringify(rec(2))}\n`);
    expect(truncateMetricsAfter(path.join(dir, 'none.jsonl'), 5)).toBe(0);
    expect(fs.readdirSync(dir)).toEqual(['metrics.jsonl']);
  });
});
