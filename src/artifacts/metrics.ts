// metrics.jsonl: every metric event of a stage, one JSON object a line, appended as it arrives.
// Each append is one write(2) on an O_APPEND fd (no buffering in JS), so a crash loses nothing
// that had arrived. No fsync per line (a power cut may lose the last lines the OS had not
// flushed); close() fsyncs.
//
// Non-finite numbers: JSON has no NaN/Infinity, and a diverging loss is exactly what a user needs
// to see, so they are written as the strings "NaN", "Infinity" and "-Infinity" and read back as
// numbers. `null` stays null (a metric the trainer reported without a value). Other readers
// (jq, pandas) see those strings as is.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { STAGES, type StageName } from '../config/schema.js';
import { fsErrorCode, writeAllSync, writeError, writeFileAtomic } from './atomic.js';
import { ArtifactError } from './errors.js';

export interface MetricRecord {
  stage: StageName;
  step: number;
  /** Unix time in seconds (or ms: whatever the producer sends; stored as is). */
  ts: number;
  values: Record<string, number | null>;
}

const NON_FINITE: Readonly<Record<string, number>> = { NaN: Number.NaN, Infinity: Number.POSITIVE_INFINITY, '-Infinity': Number.NEGATIVE_INFINITY };

/** One JSON line (no newline) for a record; non-finite values become "NaN"/"Infinity"/"-Infinity". */
export function encodeMetric(rec: MetricRecord): string {
  if (!Number.isFinite(rec.step) || !Number.isFinite(rec.ts)) {
    throw new ArtifactError(`Metric record for stage ${rec.stage} has a non-finite step or ts (step ${rec.step}, ts ${rec.ts}).`);
  }
  const values: Record<string, number | string | null> = {};
  for (const [k, v] of Object.entries(rec.values)) {
    values[k] = typeof v !== 'number' ? null : Number.isFinite(v) ? v : String(v);
  }
  return JSON.stringify({ stage: rec.stage, step: rec.step, ts: rec.ts, values });
}

/** Parse one line back into a record; null when it is not one. */
export function decodeMetric(line: string): MetricRecord | null {
  let v: unknown;
  try {
    v = JSON.parse(line);
  } catch {
    return null;
  }
  if (typeof v !== 'object' || v === null) return null;
  const o = v as Record<string, unknown>;
  if (!(STAGES as readonly unknown[]).includes(o.stage) || typeof o.step !== 'number' || typeof o.ts !== 'number') return null;
  if (typeof o.values !== 'object' || o.values === null || Array.isArray(o.values)) return null;
  const values: Record<string, number | null> = {};
  for (const [k, x] of Object.entries(o.values as Record<string, unknown>)) {
    if (x === null || typeof x === 'number') values[k] = x;
    else if (typeof x === 'string' && x in NON_FINITE) values[k] = NON_FINITE[x]!;
    else return null;
  }
  return { stage: o.stage as StageName, step: o.step, ts: o.ts, values };
}

/** Cut a trailing line cut short by a crash mid-write, so appends start on a fresh line. */
function dropPartialTail(file: string): void {
  let buf: Buffer;
  try {
    buf = fs.readFileSync(file);
  } catch (err) {
    if (fsErrorCode(err) === 'ENOENT') return;
    throw writeError(file, err);
  }
  if (buf.length === 0 || buf[buf.length - 1] === 0x0a) return;
  const start = buf.lastIndexOf(0x0a) + 1;
  try {
    // A whole record missing only its newline is kept (readMetrics reads it too); anything else goes.
    if (decodeMetric(buf.subarray(start).toString('utf8')) !== null) fs.appendFileSync(file, '\n');
    else fs.truncateSync(file, start);
  } catch (err) {
    throw writeError(file, err);
  }
}

/** Appends metric records to a metrics.jsonl, one line per record, unbuffered. */
export class MetricsWriter {
  readonly path: string;
  private fd: number | null;
  private size: number;

  constructor(file: string) {
    this.path = file;
    try {
      fs.mkdirSync(path.dirname(file), { recursive: true });
    } catch (err) {
      throw writeError(file, err);
    }
    dropPartialTail(file);
    try {
      this.fd = fs.openSync(file, 'a');
      this.size = fs.fstatSync(this.fd).size;
    } catch (err) {
      throw writeError(file, err);
    }
  }

  append(rec: MetricRecord): void {
    if (this.fd === null) throw new ArtifactError(`Metrics file ${this.path} is already closed.`);
    const bytes = Buffer.from(`${encodeMetric(rec)}\n`, 'utf8');
    try {
      writeAllSync(this.fd, bytes);
      this.size += bytes.length;
    } catch (err) {
      // Remove the part of this line that did get written, so later lines stay whole.
      try {
        fs.ftruncateSync(this.fd, this.size);
      } catch {
        // dropPartialTail on the next open, or readMetrics, copes with it
      }
      throw writeError(this.path, err);
    }
  }

  /** Flush to disk and close. Safe to call more than once. */
  close(): void {
    if (this.fd === null) return;
    const fd = this.fd;
    this.fd = null;
    try {
      fs.fsyncSync(fd);
    } catch {
      // best effort
    }
    fs.closeSync(fd);
  }
}

interface Parsed {
  lines: { text: string; rec: MetricRecord }[];
  /** Bytes after the last newline (a line cut short, or a whole last line missing its newline). */
  tail: string;
}

function parse(file: string): Parsed | null {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    if (fsErrorCode(err) === 'ENOENT') return null;
    throw new ArtifactError(`Could not read ${file}: ${err instanceof Error ? err.message : String(err)}.`, undefined, err);
  }
  const parts = text.split('\n');
  const tail = parts.pop() ?? '';
  const lines: Parsed['lines'] = [];
  parts.forEach((line, i) => {
    if (line.trim() === '') return;
    const rec = decodeMetric(line);
    if (rec === null) {
      throw new ArtifactError(`${file}:${i + 1} is not a metric record: ${line.slice(0, 80)}`, 'the file was edited or damaged; fix or remove that line');
    }
    lines.push({ text: line, rec });
  });
  if (tail.trim() !== '') {
    const rec = decodeMetric(tail);
    if (rec !== null) lines.push({ text: tail, rec }); // complete record, only its newline missing
  }
  return { lines, tail };
}

/**
 * Every record in a metrics.jsonl, in file order. A missing file gives []. A truncated last line
 * (crash mid-write) is ignored; a damaged line elsewhere is an ArtifactError naming the line.
 */
export function readMetrics(file: string): MetricRecord[] {
  return parse(file)?.lines.map((l) => l.rec) ?? [];
}

/**
 * Drop every record with a step after `step` (and any truncated last line), rewriting the file
 * atomically; returns how many records were dropped. Used before resuming from checkpoint
 * `step` so resumed steps are not recorded twice. Call it before opening a MetricsWriter on the
 * file (the writer's descriptor would keep pointing at the replaced file).
 */
export function truncateMetricsAfter(file: string, step: number): number {
  const parsed = parse(file);
  if (parsed === null) return 0;
  const kept = parsed.lines.filter((l) => l.rec.step <= step);
  const dropped = parsed.lines.length - kept.length;
  if (dropped === 0 && parsed.tail === '') return 0;
  writeFileAtomic(file, kept.map((l) => `${l.text}\n`).join(''));
  return dropped;
}
