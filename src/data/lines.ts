// Byte-level line splitting for JSONL with bounded memory.
//
// We split on 0x0A ourselves instead of using readline: readline (and any string-based splitter)
// buffers and decodes a whole line before handing it over, so one 50 MB line costs 50 MB+ of
// buffer plus ~100 MB of string. Here a line is kept as the list of chunk slices it spans, and once
// it passes maxLineBytes those slices are dropped and the rest of the line is only counted.
//
// The sha256 and byte count are updated as bytes are consumed into lines, not per chunk read, so
// when the caller stops early (a row limit) they cover exactly the lines handed out: the hash then
// identifies the data actually used, independent of the read-ahead chunk size.
import { createHash } from 'node:crypto';
import type { FileHandle } from 'node:fs/promises';

export type RawLine =
  /** `terminated` is false for a last line that has no newline after it. */
  | { line: number; kind: 'text'; text: string; terminated: boolean }
  /** `bytes` is the full length of the line (counted while skipping it). */
  | { line: number; kind: 'too_long'; bytes: number }
  | { line: number; kind: 'invalid_utf8'; terminated: boolean };

const NEWLINE = 0x0a;
const CR = 0x0d;
const BOM = [0xef, 0xbb, 0xbf] as const;

export class LineReader implements AsyncIterable<RawLine> {
  /** Bytes consumed so far (including newlines). */
  bytes = 0;
  private readonly hash = createHash('sha256');

  constructor(
    private readonly handle: FileHandle,
    private readonly maxLineBytes: number,
    private readonly chunkSize = 64 * 1024,
  ) {}

  /** Hex sha256 of the bytes consumed so far. Call once, after iterating. */
  digest(): string {
    return this.hash.digest('hex');
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<RawLine, void, undefined> {
    // fatal: invalid bytes must be reported, not silently replaced with U+FFFD.
    // ignoreBOM: we strip a BOM ourselves, and only at the very start of the file.
    const decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
    // autoClose off: the caller owns the handle and closes it whether or not we finish.
    const stream = this.handle.createReadStream({ highWaterMark: this.chunkSize, autoClose: false, start: 0 });

    let lineNo = 0;
    let parts: Buffer[] = []; // slices of the current line, while it is within the limit
    let lineBytes = 0; // full length of the current line so far, even once over the limit
    let tooLong = false;

    const finish = (terminated: boolean): RawLine => {
      lineNo += 1;
      const line = lineNo;
      const length = lineBytes;
      const slices = parts;
      parts = [];
      lineBytes = 0;
      if (tooLong) {
        tooLong = false;
        return { line, kind: 'too_long', bytes: length };
      }
      let buf = slices.length === 1 ? slices[0]! : Buffer.concat(slices, length);
      if (line === 1 && buf.length >= 3 && buf[0] === BOM[0] && buf[1] === BOM[1] && buf[2] === BOM[2]) buf = buf.subarray(3);
      if (buf.length > 0 && buf[buf.length - 1] === CR) buf = buf.subarray(0, buf.length - 1);
      try {
        return { line, kind: 'text', text: decoder.decode(buf), terminated };
      } catch {
        return { line, kind: 'invalid_utf8', terminated };
      }
    };

    try {
      for await (const data of stream) {
        const chunk = data as Buffer;
        let start = 0;
        while (start < chunk.length) {
          const nl = chunk.indexOf(NEWLINE, start);
          const end = nl === -1 ? chunk.length : nl;
          // Consume the slice (and its newline) before handing the line out, so that an early
          // stop leaves bytes/hash covering exactly the lines yielded.
          const consumedEnd = nl === -1 ? end : nl + 1;
          this.hash.update(chunk.subarray(start, consumedEnd));
          this.bytes += consumedEnd - start;

          const segment = end - start;
          lineBytes += segment;
          if (!tooLong) {
            if (lineBytes > this.maxLineBytes) {
              tooLong = true;
              parts = []; // let go of what we held; from here on the line is only counted
            } else if (segment > 0) {
              parts.push(chunk.subarray(start, end));
            }
          }
          if (nl === -1) break;
          yield finish(true);
          start = nl + 1;
        }
      }
      // A last line without a newline still counts (and may be a line cut off mid-write).
      if (lineBytes > 0 || tooLong) yield finish(false);
    } finally {
      stream.destroy();
    }
  }
}
