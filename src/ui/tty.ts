// The live terminal view: a block of lines on stderr, redrawn in place: a header (run id, the
// sidecar's state), then one line per selected stage with its status, a bar, step/total,
// elapsed, ETA and key metrics. Anything that must stay readable afterwards (notes, warnings,
// health alerts) is printed above the block and the block is drawn again below it, so it
// scrolls away with the terminal's history while the block stays at the bottom.
//
// In-place redraw: after a draw the cursor sits at the start of the line under the block; the
// next draw goes back up by the block's height (`ESC[nA`), rewrites each line after clearing it
// (`ESC[2K`), and clears anything below (`ESC[J`) if the block got shorter. Lines are cut to the
// terminal's width minus one, because a line that wraps would add a row the cursor-up count
// does not know about. Time and output are injected so tests can record frames exactly.
//
// Laid out for the width it has, and only the width: which columns show (the bar needs room for
// the metrics beside it) depends on the terminal's width, never on the text of the moment, so
// the bar does not come and go and columns do not shift as statuses and numbers change. A metric
// or clock that does not fit is left out whole, never cut mid-number. Text printed above the
// block is wrapped at word boundaries. When the terminal got narrower since the last frame,
// the old lines have reflowed into more rows: the cursor goes up by those rows, not the line count.
import type { StageName } from '../config/schema.js';
import { alertText, fmt, keyMetricsNow, type Progress, totalSteps } from './progress.js';
import { inert } from './inert.js';
import { formatDuration, RunTracker, type StageView } from './track.js';

export interface TtyOptions {
  write: (text: string) => void;
  now?: () => number;
  /** The terminal's width, read at every frame (it may be resized); undefined means 80. */
  columns?: () => number | undefined;
  /** ANSI colours (off under NO_COLOR); cursor movement is used either way. */
  color?: boolean;
  /** How often clocks tick without events (ms); 0: no timer, the caller drives tick(). */
  tickMs?: number;
  /** The least time between two redraws caused by metrics (ms): at most 10 redraws a second. */
  minRedrawMs?: number;
}

export interface TtyProgress extends Progress {
  /** Redraw if the throttle allows and the frame changed (clocks advance without events). */
  tick(): void;
}

const ESC = '\x1b[';
const HIDE_CURSOR = `${ESC}?25l`;
export const SHOW_CURSOR = `${ESC}?25h`;
const BAR_WIDTH = 10;

/** Short names for key metrics: the stage line has about 80 columns for everything. */
const LABELS: Record<string, string> = {
  'train/loss': 'loss',
  'rewards/margins': 'margin',
  'rewards/accuracies': 'acc',
  'train/reward': 'reward',
  'train/kl': 'kl',
  'rm/train/loss': 'rm loss',
  'rm/eval/accuracy': 'rm acc',
};

type Style = 'green' | 'red' | 'yellow' | 'cyan' | 'dim';
const SGR: Record<Style, string> = { green: '32', red: '31', yellow: '33', cyan: '36', dim: '2' };
interface Segment {
  text: string;
  style?: Style;
  /** Shown whole or not at all (a metric, a clock): never cut mid-number. */
  whole?: boolean;
}

/** Join segments, cut to `width` visible characters; colour codes never count and never get cut. */
function fit(segments: Segment[], width: number, color: boolean): string {
  let left = width;
  let out = '';
  for (const { text, style, whole } of segments) {
    if (left <= 0) break;
    const chars = Array.from(text);
    if (whole && chars.length > left) break; // and everything after it: columns stay in order
    const piece = chars.slice(0, left).join('');
    left -= Math.min(chars.length, left);
    out += color && style && piece ? `${ESC}${SGR[style]}m${piece}${ESC}0m` : piece;
  }
  return out;
}

/** Text wrapped at spaces to `width` columns; continuation lines indented by two spaces. */
export function wrapWords(text: string, width: number): string[] {
  const out: string[] = [];
  for (const para of text.split('\n')) {
    let line = '';
    for (const word of para.split(' ')) {
      const candidate = line === '' ? word : `${line} ${word}`;
      if (Array.from(candidate).length <= width || line.trim() === '') {
        line = candidate;
        continue;
      }
      out.push(line);
      line = `  ${word}`;
    }
    // A single word longer than the line is cut where it must be (a path, a URL).
    while (Array.from(line).length > width) {
      out.push(Array.from(line).slice(0, width).join(''));
      line = `  ${Array.from(line).slice(width).join('')}`;
    }
    out.push(line);
  }
  return out;
}

/** The widest status word (statusWord): the status column is this wide whatever the words now. */
const STATUS_WIDTH = 11;
/** Room the key metrics get before the bar is shown at all (`margin -0.1234  acc 0.5000`). */
const METRICS_ROOM = 30;

/** A word cut to `n` columns with an ellipsis (an unforeseen, longer status). */
const cut = (word: string, n: number) => (Array.from(word).length <= n ? word : `${Array.from(word).slice(0, n - 1).join('')}…`);

const ENDED: Record<string, { glyph: string; style: Style }> = {
  ok: { glyph: '✓', style: 'green' },
  failed: { glyph: '✗', style: 'red' },
  cancelled: { glyph: '■', style: 'yellow' },
  interrupted: { glyph: '■', style: 'yellow' },
};

/** What a stage is doing, in words: sidecar states read as activities, end states as they are. */
function statusWord(v: StageView): string {
  if (!v.active) return v.status.replaceAll('_', ' ');
  switch (v.status) {
    case 'starting':
    case 'resuming':
      return `${v.status}…`;
    case 'loading_model':
      return 'loading…';
    case 'training':
      // RLHF's phase shows in its metrics' names (rm loss / rm acc, then reward / kl).
      return 'training';
    case 'saving':
      return v.detail === 'reward model' ? 'saving rm…' : 'saving…';
    case 'cancelled':
      return 'cancelling…';
    case 'done':
      return 'finishing…';
    default:
      return v.status.replaceAll('_', ' ');
  }
}

/** Column widths shared by every stage line, so bars, clocks and metrics line up. */
interface Layout {
  status: number;
  steps: number;
  bar: boolean;
}

export function ttyProgress(opts: TtyOptions): TtyProgress {
  const { write, now = Date.now, columns = () => undefined, color = true, tickMs = 100, minRedrawMs = 100 } = opts;
  const track = new RunTracker(now);
  /** The block's lines as they are on screen now; empty when nothing is drawn. */
  let drawn: string[] = [];
  let live = false;
  let cursorHidden = false;
  let lastDraw = Number.NEGATIVE_INFINITY;
  let timer: ReturnType<typeof setInterval> | null = null;

  const header = (): Segment[] => {
    const segs: Segment[] = [{ text: `run ${inert(track.runId ?? '')}${track.resume ? ' (continuing)' : ''}` }];
    const sc = track.sidecar;
    if (track.status !== null) {
      const total = ((track.endedAt ?? now()) - (track.startedAt ?? now())) / 1000;
      const style = ENDED[track.status]?.style;
      segs.push({ text: ' · ' }, { text: track.status, style }, { text: ` in ${formatDuration(total)}` });
    } else if (sc.state === 'starting') {
      segs.push({ text: ` · starting sidecar… ${formatDuration((now() - sc.since) / 1000)}`, style: 'cyan' });
    } else if (sc.state === 'ready') {
      segs.push({ text: ` · sidecar ready${sc.readyAfterMs === null ? '' : ` in ${formatDuration(sc.readyAfterMs / 1000)}`}`, style: 'dim' });
      // Between the sidecar's hello and the first stage the pipeline runs its preflight (the
      // sidecar imports torch and loads tokenizer and model config): seconds that must not look idle.
      const started = [...track.stages.values()].some((v) => v.startedAt !== null);
      if (!started) segs.push({ text: ` · preflight checks… ${formatDuration((now() - sc.since) / 1000)}`, style: 'cyan' });
    } else if (sc.state === 'stopping') {
      segs.push({ text: ' · stopping sidecar…', style: 'dim' });
    }
    // The run id may be cut; a state with its clock shows whole or not at all.
    return segs.map((seg, i) => (i === 0 ? seg : { ...seg, whole: true }));
  };

  const stageLine = (v: StageView, l: Layout): Segment[] => {
    const name = v.stage.padEnd(5);
    if (v.startedAt === null) return [{ text: `· ${name}`, style: 'dim' }, { text: statusWord(v), style: 'dim' }];
    const end = v.active ? null : (ENDED[v.status] ?? { glyph: '•', style: 'yellow' as Style });
    const segs: Segment[] = [
      end ? { text: `${end.glyph} `, style: end.style } : { text: '▸ ', style: 'cyan' },
      { text: name },
      { text: cut(statusWord(v), l.status).padEnd(l.status + 1), style: end?.style },
    ];
    const step = v.step ?? 0;
    if (v.total !== null) {
      const filled = Math.min(BAR_WIDTH, Math.floor((BAR_WIDTH * step) / Math.max(1, v.total)));
      if (l.bar) segs.push({ text: `[${'#'.repeat(filled)}${'-'.repeat(BAR_WIDTH - filled)}] ` });
      segs.push({ text: `${step}/${v.total}`.padEnd(l.steps + 1) });
    } else {
      segs.push({ text: `step ${step}`.padEnd(l.steps + 1 + (l.bar ? BAR_WIDTH + 3 : 0)) });
    }
    const elapsed = track.elapsedS(v);
    segs.push({ text: `${elapsed === null ? '' : formatDuration(elapsed)}`.padEnd(7), whole: true });
    const eta = v.active && v.total !== null ? track.etaS(v) : undefined;
    // Narrow (no bar): `~1m05s` in 7 columns, so a DPO line keeps all three metrics at 80 columns.
    const left = eta === undefined ? '' : `${l.bar ? 'eta ' : '~'}${eta === null ? '–' : formatDuration(eta)}`;
    segs.push({ text: left.padEnd(l.bar ? 10 : 7), style: 'dim', whole: true });
    const shown = keyMetricsNow(v.stage, v.phase).filter((k) => k in v.values);
    const gap = l.bar ? '  ' : ' '; // narrow: one space, so three DPO metrics fit 80 columns
    shown.forEach((k, i) => segs.push({ text: `${i ? gap : ' '}${LABELS[k] ?? k} ${fmt(v.values[k])}`, whole: true }));
    return segs;
  };

  const frame = (width: number): string[] => {
    const views = [...track.stages.values()];
    // Room for 999/999 from the first frame (a later stage's total is not known before it starts);
    // only a stage of 1,000+ steps widens it, once, when it starts.
    const steps = Math.max(7, ...views.map((v) => (v.total === null ? 0 : `${v.total}/${v.total}`.length)));
    const fixed = 2 + 6 + STATUS_WIDTH + 1 + steps + 1 + 7 + 7;
    // A narrow terminal has no bar (step/total says the same), so the metrics keep their room.
    const layout: Layout = { status: STATUS_WIDTH, steps, bar: width >= fixed + BAR_WIDTH + 3 + METRICS_ROOM };
    return [header(), ...views.map((v) => stageLine(v, layout))].map((segs) => fit(segs, width, color).trimEnd());
  };

  /** The screen's columns now, and the width our lines are cut to (one less: never wrap). */
  const cols = () => Math.max(21, columns() || 80);
  /** Visible lengths of the drawn lines and the columns they were drawn at. */
  let drawnLens: number[] = [];
  let drawnCols = 0;
  /** Rows the drawn block takes now: more than its lines when the terminal narrowed and reflowed them. */
  const drawnRows = (now: number) =>
    now >= drawnCols ? drawn.length : drawnLens.reduce((n, len) => n + Math.max(1, Math.ceil(len / now)), 0);

  /** Draw the block again below `above` (text that scrolls away), in a single write. */
  const draw = (above = '') => {
    const c = cols();
    const lines = frame(c - 1);
    if (above === '' && c === drawnCols && lines.length === drawn.length && lines.every((l, i) => l === drawn[i])) return;
    let out = cursorHidden ? '' : HIDE_CURSOR;
    cursorHidden = true;
    if (drawn.length > 0) out += `\r${ESC}${drawnRows(c)}A`;
    if (above !== '') out += `${ESC}J${above}`;
    for (const l of lines) out += `${ESC}2K${l}\n`;
    if (above === '' && (lines.length < drawn.length || c < drawnCols)) out += `${ESC}J`;
    write(out);
    drawn = lines;
    drawnLens = lines.map((l) => Array.from(l.replace(/\x1b\[[0-9;]*m/g, '')).length);
    drawnCols = c;
    lastDraw = now();
  };

  const throttled = () => {
    if (live && now() - lastDraw >= minRedrawMs) draw();
  };
  const forced = () => {
    if (live) draw();
  };
  /** Permanent text: above the live block while there is one, else simply written. */
  const print = (text: string, style?: Style) => {
    const lines = wrapWords(text, cols() - 1).map((l) => (color && style ? `${ESC}${SGR[style]}m${l}${ESC}0m` : l));
    const block = `${lines.join('\n')}\n`;
    if (live) draw(block);
    else write(block);
  };

  return {
    tick: throttled,
    runStart(info) {
      track.runStart(info);
      print(`run ${info.runId}${info.resume ? ' (continuing)' : ''}: ${info.runDir}`);
      live = true;
      if (tickMs > 0) {
        timer = setInterval(throttled, tickMs);
        timer.unref();
      }
      forced();
    },
    sidecarState(state, detail) {
      track.sidecarState(state, detail);
      forced();
    },
    stageStart(stage, config, resumedFrom) {
      track.stageStart(stage, totalSteps(config, stage), resumedFrom);
      forced();
    },
    state(stage, state, message) {
      track.state(stage, state, message);
      forced();
    },
    metric(stage, step, values) {
      track.metric(stage, step, values);
      throttled();
    },
    log(stage, level, message) {
      if (level === 'warning' || level === 'error') print(`${stage}: ${level}: ${inert(message)}`, level === 'error' ? 'red' : 'yellow');
    },
    alert(stage: StageName, a) {
      print(alertText(stage, a), a.severity === 'fatal' ? 'red' : 'yellow');
    },
    stageEnd(stage, status) {
      track.stageEnd(stage, status);
      forced();
    },
    note(text) {
      print(inert(text), /^warning\b/.test(text) ? 'yellow' : undefined);
    },
    runEnd({ status }) {
      track.runEnd(status);
      forced();
      if (timer) clearInterval(timer);
      timer = null;
      live = false;
      if (cursorHidden) write(SHOW_CURSOR);
      cursorHidden = false;
    },
  };
}
