// Shared by the renderer tests: a recorded progress stream replayed against a fake clock, and a
// minimal terminal that applies the escape sequences the live view uses, so a test can assert
// what a user would see on screen rather than byte strings.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Config } from '../../src/config/schema.js';
import type { Progress } from '../../src/ui/progress.js';

export interface Recorded {
  /** ms since the recording started. */
  t: number;
  call: keyof Progress;
  args: unknown[];
}

/**
 * Every Progress call of a real `posttrain run --preset smoke` (real sidecar, CPU), with its
 * time: metric values are cut to the key metrics, paths anonymised, and stageStart's config cut
 * to the max_steps that totalSteps reads. Recorded by passing startRun (src/pipeline/run.ts) a
 * Progress whose every method appended {t, call, args} to a list; re-record the same way if the
 * interface changes.
 */
export const SMOKE_RUN = join(import.meta.dirname, '..', 'fixtures', 'progress', 'smoke-run.jsonl');

export function loadRecording(file = SMOKE_RUN): Recorded[] {
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Recorded);
}

export class FakeClock {
  t = 0;
  readonly now = () => this.t;
}

/**
 * Feed `events` to `progress`, setting the clock to each event's time first. With `tick`, the
 * renderer's timer is played too: tick() every `tickMs` of fake time between events.
 */
export function replay(events: Recorded[], progress: Progress, clock: FakeClock, tick?: { fn: () => void; tickMs: number }): void {
  for (const e of events) {
    if (tick) {
      for (let t = clock.t + tick.tickMs; t < e.t; t += tick.tickMs) {
        clock.t = t;
        tick.fn();
      }
    }
    clock.t = e.t;
    (progress[e.call] as (...a: unknown[]) => void)(...e.args);
  }
}

/** The minimal config stageStart needs: totalSteps reads only max_steps. */
export const configWith = (stages: Record<string, unknown>) => ({ stages }) as unknown as Config;

/**
 * A terminal of `width` columns that understands what the live view writes: text, \r, \n, and
 * ESC[nA (up), ESC[2K (clear line), ESC[J (clear below), SGR colours and cursor show/hide.
 * Long lines wrap as on a terminal (counted in `wraps`: a wrapped block line adds a row the
 * cursor-up count does not know about, which shows as a garbled screen); moving above the
 * screen's top throws.
 */
export class Screen {
  rows: string[] = [''];
  row = 0;
  col = 0;
  cursorVisible = true;
  /** How many ESC[nA moves were applied: each is one in-place redraw (or print above the block). */
  ups = 0;
  wraps = 0;

  constructor(readonly width: number) {}

  write(data: string): void {
    const re = /\x1b\[(\??)(\d*)([A-Za-z])|([\s\S])/g;
    for (const m of data.matchAll(re)) {
      const [, priv, num, cmd, ch] = m;
      if (ch !== undefined) this.char(ch);
      else if (priv === '?' && num === '25') this.cursorVisible = cmd === 'h';
      else if (cmd === 'A') this.up(Number(num || 1));
      else if (cmd === 'K' && num === '2') this.rows[this.row] = '';
      else if (cmd === 'J') {
        this.rows[this.row] = this.rows[this.row]!.slice(0, this.col);
        this.rows.length = this.row + 1;
      } else if (cmd !== 'm') throw new Error(`unexpected escape sequence ESC[${priv}${num}${cmd}`);
    }
  }

  /** The screen's text, trailing blank lines and spaces removed. */
  text(): string {
    return this.rows.map((r) => r.trimEnd()).join('\n').trimEnd();
  }

  private up(n: number): void {
    if (n > this.row) throw new Error(`cursor moved ${n} rows up from row ${this.row}: above the top`);
    this.row -= n;
    this.ups++;
  }

  private char(ch: string): void {
    if (ch === '\r') this.col = 0;
    else if (ch === '\n') {
      this.row++;
      this.col = 0;
      if (this.rows.length <= this.row) this.rows.push('');
    } else {
      if (this.col >= this.width) {
        // Auto-wrap, as a terminal does: fine for text above the block, fatal inside it.
        this.wraps++;
        this.char('\n');
      }
      const line = this.rows[this.row]!.padEnd(this.col);
      const chars = Array.from(line);
      chars[this.col] = ch;
      this.rows[this.row] = chars.join('');
      this.col++;
    }
  }
}
