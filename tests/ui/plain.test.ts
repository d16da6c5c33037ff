// The plain renderer (CI logs, files, pipes): a line per state change, per stage at most one
// metric line a second plus its first and last step, each with step/total, elapsed and ETA.
import { describe, expect, it } from 'vitest';
import { plainProgress, quietProgress } from '../../src/ui/progress.js';
import { configWith, FakeClock, loadRecording, replay } from './helpers.js';

function plain() {
  const clock = new FakeClock();
  const lines: { t: number; text: string }[] = [];
  const progress = plainProgress((text) => {
    for (const l of text.split('\n').slice(0, -1)) lines.push({ t: clock.t, text: l });
  }, clock.now);
  return { clock, lines, progress, text: () => lines.map((l) => `${l.text}\n`).join('') };
}

describe('plain progress replaying a real smoke run', () => {
  const events = loadRecording();

  it('writes the run as readable log lines', async () => {
    const p = plain();
    replay(events, p.progress, p.clock);
    await expect(p.text()).toMatchFileSnapshot('./__snapshots__/plain-smoke.txt');
  });

  it('per stage: the first and the last step, and at most one metric line a second between', () => {
    const p = plain();
    replay(events, p.progress, p.clock);
    for (const [stage, total] of [['sft', 30], ['dpo', 30], ['grpo', 30], ['rlhf', 120]] as const) {
      const steps = p.lines.filter((l) => l.text.startsWith(`${stage}: step `));
      expect(steps[0]!.text).toMatch(new RegExp(`^${stage}: step 1/${total} `));
      expect(steps.at(-1)!.text).toMatch(new RegExp(`^${stage}: step ${total}/${total} `));
      // Between the first and the closing line (and RLHF's reward-model summary), a second apart.
      const periodic = steps.slice(1, -1).filter((l) => !/rm\/eval\/accuracy/.test(l.text));
      for (const [i, l] of periodic.entries()) expect(l.t - (i === 0 ? steps[0]!.t : periodic[i - 1]!.t)).toBeGreaterThanOrEqual(1000);
    }
    // RLHF: the reward model's last line (with its eval accuracy) before the policy's lines.
    expect(p.text()).toMatch(/rlhf: step 100\/120 {2}rm\/train\/loss 0\.0301 {2}rm\/eval\/accuracy 0\.8438 {2}elapsed 1\.8s {2}eta –\n/);
    expect(p.text()).toMatch(/rlhf: alert: step 108: 100% of completions hit .*\nrlhf: {3}hint: raise stages\.rlhf\.policy\.max_completion_length/);
  });
});

describe('plain progress, unit by unit', () => {
  it('throttles to one line a second with elapsed and an ETA from the recent rate', () => {
    const p = plain();
    p.progress.runStart({ runId: 'r1', runDir: '/runs/r1', stages: ['sft'] });
    p.progress.stageStart('sft', configWith({ sft: { max_steps: 100 } }), null);
    for (let s = 1; s <= 100; s++) {
      p.clock.t = s * 50;
      p.progress.metric('sft', s, { 'train/loss': 1 / s, 'train/learning_rate': 1e-3 });
    }
    p.progress.stageEnd('sft', 'ok', 5.0);
    expect(p.text()).toMatchInlineSnapshot(`
      "run r1: /runs/r1
      sft: starting
      sft: step 1/100  train/loss 1.0000  elapsed 0.1s  eta –
      sft: step 21/100  train/loss 0.0476  elapsed 1.1s  eta 4.0s
      sft: step 41/100  train/loss 0.0244  elapsed 2.0s  eta 3.0s
      sft: step 61/100  train/loss 0.0164  elapsed 3.0s  eta 1.9s
      sft: step 81/100  train/loss 0.0123  elapsed 4.0s  eta 0.9s
      sft: step 100/100  train/loss 0.0100  elapsed 5.0s
      sft: ok in 5.0 s
      "
    `);
  });

  it('does not repeat the last step at stageEnd when it was just printed, and says when the sidecar is up', () => {
    const p = plain();
    p.progress.runStart({ runId: 'r1', runDir: '/runs/r1', stages: ['sft'], resume: true });
    p.progress.sidecarState('starting', null);
    p.clock.t = 2500;
    p.progress.sidecarState('ready', 'pid 7');
    p.progress.stageStart('sft', configWith({ sft: { max_steps: null } }), '/runs/r1/stages/sft/checkpoints/checkpoint-4');
    p.clock.t = 3000;
    p.progress.metric('sft', 5, { 'train/loss': Number.POSITIVE_INFINITY });
    p.progress.log('sft', 'info', 'not shown');
    p.progress.log('sft', 'warning', 'shown');
    p.progress.stageEnd('sft', 'ok', 0.5);
    expect(p.text()).toMatchInlineSnapshot(`
      "run r1 (continuing): /runs/r1
      starting the sidecar…
      sidecar ready in 2.5s (pid 7)
      sft: starting (resuming from /runs/r1/stages/sft/checkpoints/checkpoint-4)
      sft: step 5  train/loss Infinity  elapsed 0.5s
      sft: warning: shown
      sft: ok in 0.5 s
      "
    `);
  });

  it('--progress none keeps only what needs a reader: notes, warnings and alerts', () => {
    let out = '';
    const q = quietProgress((t) => void (out += t));
    q.runStart({ runId: 'r1', runDir: '/runs/r1', stages: ['grpo'] });
    q.stageStart('grpo', configWith({ grpo: { max_steps: 3 } }), null);
    q.metric('grpo', 1, { 'train/reward': 0.5 });
    q.log('grpo', 'info', 'quiet');
    q.log('grpo', 'error', 'loud');
    q.alert('grpo', { rule: 'kl_spike', severity: 'warning', step: 1, message: 'KL jumped', hint: 'lower the learning rate' });
    q.note('warning: something');
    q.stageEnd('grpo', 'ok', 1);
    q.runEnd({ runDir: '/runs/r1', status: 'ok' });
    expect(out).toBe('grpo: error: loud\ngrpo: alert: step 1: KL jumped\ngrpo:   hint: lower the learning rate\nwarning: something\n');
  });
});
