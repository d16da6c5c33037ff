// --json: one JSON object per line for every progress event, in order, with non-finite numbers
// written the way metrics.jsonl writes them.
import { describe, expect, it } from 'vitest';
import { encodeMetric } from '../../src/artifacts/metrics.js';
import { ndjsonLine, ndjsonProgress } from '../../src/ui/ndjson.js';
import { configWith, FakeClock, loadRecording, replay } from './helpers.js';

function events() {
  const clock = new FakeClock();
  let out = '';
  const progress = ndjsonProgress((t) => void (out += t), clock.now);
  const parsed = () => out.split('\n').slice(0, -1).map((l) => JSON.parse(l) as Record<string, any>);
  return { clock, progress, out: () => out, parsed };
}

describe('NDJSON events replaying a real smoke run', () => {
  const recording = loadRecording();

  it('writes one parseable object per line, in the order the run happened', () => {
    const e = events();
    e.clock.t = 1_795_598_634_000; // the recording's epoch, so ts reads like a real one
    replay(recording.map((r) => ({ ...r, t: r.t + 1_795_598_634_000 })), e.progress, e.clock);
    expect(e.out().endsWith('\n')).toBe(true);
    const all = e.parsed();
    expect(all).toHaveLength(recording.length);
    const kinds = all.map((x) => x.event);
    expect(kinds[0]).toBe('run_start');
    expect(kinds.at(-1)).toBe('run_end');
    // Outside metrics, the whole story in order (sidecar start-up is a state, not silence).
    expect(all.filter((x) => x.event !== 'metric').map((x) => [x.event, x.stage, x.state, x.status].filter(Boolean).join(' '))).toMatchInlineSnapshot(`
      [
        "run_start",
        "sidecar starting",
        "sidecar ready",
        "stage_start sft",
        "state sft loading_model",
        "log sft",
        "state sft training",
        "state sft saving",
        "stage_end sft ok",
        "stage_start dpo",
        "state dpo loading_model",
        "log dpo",
        "state dpo training",
        "state dpo saving",
        "stage_end dpo ok",
        "stage_start grpo",
        "state grpo loading_model",
        "log grpo",
        "state grpo training",
        "state grpo saving",
        "stage_end grpo ok",
        "stage_start rlhf",
        "state rlhf loading_model",
        "log rlhf",
        "state rlhf training",
        "state rlhf saving",
        "state rlhf training",
        "alert rlhf",
        "state rlhf saving",
        "stage_end rlhf ok",
        "sidecar stopping",
        "run_end ok",
      ]
    `);
    expect(all[0]).toEqual({ event: 'run_start', ts: 1_795_598_634.066, run_id: '20261125-092854-347d', run_dir: '/runs/20261125-092854-347d', stages: ['sft', 'dpo', 'grpo', 'rlhf'], resume: false });
    expect(all.find((x) => x.event === 'stage_start' && x.stage === 'rlhf')).toMatchObject({ total_steps: 120, resumed_from: null });
    expect(all.find((x) => x.event === 'alert')).toMatchObject({ stage: 'rlhf', rule: 'completions_clipped', severity: 'warning', step: 108 });
    expect(all.find((x) => x.event === 'stage_end' && x.stage === 'sft')).toMatchObject({ status: 'ok', wall_s: 2.717 });
    expect(all.at(-1)).toEqual({ event: 'run_end', ts: 1_795_598_647.871, run_id: '20261125-092854-347d', run_dir: '/runs/20261125-092854-347d', status: 'ok' });
    // Every metric of every stage, each between its stage's start and end.
    for (const stage of ['sft', 'dpo', 'grpo', 'rlhf']) {
      const start = all.findIndex((x) => x.event === 'stage_start' && x.stage === stage);
      const end = all.findIndex((x) => x.event === 'stage_end' && x.stage === stage);
      const metrics = all.flatMap((x, i) => (x.event === 'metric' && x.stage === stage ? [i] : []));
      expect(metrics.length).toBe(recording.filter((r) => r.call === 'metric' && r.args[0] === stage).length);
      expect(Math.min(...metrics)).toBeGreaterThan(start);
      expect(Math.max(...metrics)).toBeLessThan(end);
    }
    // ts never goes backwards.
    for (let i = 1; i < all.length; i++) expect(all[i]!.ts).toBeGreaterThanOrEqual(all[i - 1]!.ts);
  });
});

describe('NDJSON events, unit by unit', () => {
  it('writes non-finite metric values as metrics.jsonl does ("NaN", "Infinity", "-Infinity"; null stays null)', () => {
    const e = events();
    e.clock.t = 5000;
    const values = { 'train/loss': Number.NaN, 'train/grad_norm': Number.POSITIVE_INFINITY, 'train/kl': Number.NEGATIVE_INFINITY, 'train/reward': null, 'train/epoch': 0.5 };
    e.progress.metric('grpo', 7, values);
    expect(e.out()).toBe('{"event":"metric","ts":5,"stage":"grpo","step":7,"values":{"train/loss":"NaN","train/grad_norm":"Infinity","train/kl":"-Infinity","train/reward":null,"train/epoch":0.5}}\n');
    const stored = JSON.parse(encodeMetric({ stage: 'grpo', step: 7, ts: 5, values })).values;
    expect(e.parsed()[0]!.values).toEqual(stored);
  });

  it('forwards sidecar logs except debug, and notes with their level', () => {
    const e = events();
    e.progress.log('sft', 'debug', 'chatter');
    e.progress.log('sft', 'info', 'device cpu');
    e.progress.log('sft', 'warning', 'careful');
    e.progress.note('warning: data.sft: left out 1 bad row(s) of 3');
    e.progress.note('using sidecar module posttrain_sidecar.fake');
    expect(e.parsed().map(({ ts: _, ...x }) => x)).toEqual([
      { event: 'log', stage: 'sft', level: 'info', message: 'device cpu' },
      { event: 'log', stage: 'sft', level: 'warning', message: 'careful' },
      { event: 'note', level: 'warning', message: 'warning: data.sft: left out 1 bad row(s) of 3' },
      { event: 'note', level: 'info', message: 'using sidecar module posttrain_sidecar.fake' },
    ]);
  });

  it('stage_start carries the total (null when epoch-bound) and where it resumes from', () => {
    const e = events();
    e.progress.stageStart('sft', configWith({ sft: { max_steps: null } }), '/r/stages/sft/checkpoints/checkpoint-4');
    e.progress.stageStart('rlhf', configWith({ rlhf: { reward_model: { max_steps: 5 }, policy: { max_steps: 7 } } }), null);
    expect(e.parsed().map(({ ts: _, ...x }) => x)).toEqual([
      { event: 'stage_start', stage: 'sft', total_steps: null, resumed_from: '/r/stages/sft/checkpoints/checkpoint-4' },
      { event: 'stage_start', stage: 'rlhf', total_steps: 12, resumed_from: null },
    ]);
  });

  it('any line stays one line: newlines inside messages are escaped', () => {
    const line = ndjsonLine('note', { message: 'two\nlines' }, 0);
    expect(line.split('\n')).toHaveLength(2);
    expect(JSON.parse(line).message).toBe('two\nlines');
  });
});
