// Real datasets, as users bring them: slices committed under tests/fixtures/data (see
// LICENSE-NOTES.md there), and the full files from the shared datasets folder when present.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import type { Example } from '../../src/data/validate.js';
import { collect, pref, prompts, sft } from './helpers.js';

const fixture = (name: string) => fileURLToPath(new URL(`../fixtures/data/${name}`, import.meta.url));
const GSM8K = fixture('gsm8k-train-40.jsonl');
const HH = fixture('hh-rlhf-harmless-test-40.jsonl');
const SEEDS = fixture('self-instruct-seed-40.jsonl');

type PC = { prompt: string; completion: string };
type Pair = { prompt: string; chosen: string; rejected: string };
const exs = <T>(c: { examples: { ex: Example }[] }) => c.examples.map((e) => e.ex as T);

describe('real slices', () => {
  it('GSM8K as SFT with prompt=question, response=answer', async () => {
    const c = await collect(GSM8K, sft({ columns: { prompt: 'question', response: 'answer' } }));
    expect(c.report).toMatchObject({ rows: 40, ok: 40, bad: 0, format: 'prompt_response' });
    const first = exs<PC>(c)[0]!;
    expect(first.prompt).toMatch(/^Natalia sold clips to 48 of her friends/);
    expect(first.completion).toMatch(/\n#### 72$/);
    expect(Object.keys(first)).toEqual(['prompt', 'completion']);
  });

  it('GSM8K as GRPO prompts with prompt=question, keeping the answer', async () => {
    const c = await collect(GSM8K, prompts({ columns: { prompt: 'question' }, requiredFields: ['answer'] }));
    expect(c.report).toMatchObject({ rows: 40, ok: 40, bad: 0, format: 'prompt' });
    const first = exs<Record<string, string>>(c)[0]!;
    expect(first.prompt).toBe(first.question);
    expect(first.answer).toMatch(/#### 72$/);
  });

  it('self-instruct seeds as SFT with instruction+input → output', async () => {
    const columns = { prompt: 'instruction+instances.0.input', response: 'instances.0.output' };
    const c = await collect(SEEDS, sft({ columns }));
    expect(c.report).toMatchObject({ rows: 40, ok: 40, bad: 0, format: 'prompt_response' });
    const [noInput, withInput] = exs<PC>(c);
    // seed_task_0 has an empty input: the prompt is the instruction alone.
    expect(noInput!.prompt).toBe("Is there anything I can eat for a breakfast that doesn't include eggs, yet includes protein, and has roughly 700-1000 calories?");
    expect(withInput).toEqual({
      prompt: 'What is the relation between the given pairs?\n\nNight : Day :: Right : Left',
      completion: 'The relation between the given pairs is that they are opposites.',
    });
  });

  it('HH harmless as implicit preference pairs', async () => {
    const c = await collect(HH, pref());
    expect(c.report).toMatchObject({ rows: 40, ok: 40, bad: 0, format: 'implicit' });
    for (const p of exs<Pair>(c)) {
      expect(p.prompt.startsWith('\n\nHuman: ')).toBe(true);
      expect(p.prompt.endsWith('\n\nAssistant:')).toBe(true);
      expect(p.chosen).not.toBe(p.rejected);
      expect(p.chosen.startsWith(' ')).toBe(true);
    }
    const first = exs<Pair>(c)[0]!;
    expect(first.prompt).toMatch(/\n\nHuman: okay some of these do not have anything to do with pens\n\nAssistant:$/);
    expect(first.chosen).toBe(' No, sorry!  All of these involve a pen, the point is that you can get funny results by doing pranks with pens.');
  });
});

const SHARED = fileURLToPath(new URL('../../../shared/datasets', import.meta.url));
const haveShared = existsSync(SHARED);
const skipNote = haveShared ? '' : ` (skipped: ${SHARED} not found)`;

describe('full real files', () => {
  it.skipIf(!haveShared)(`GSM8K train: 7,473 rows, all good, as SFT and as prompts${skipNote}`, async () => {
    const path = `${SHARED}/gsm8k/train.jsonl`;
    const asSft = await collect(path, sft({ columns: { prompt: 'question', response: 'answer' } }));
    expect(asSft.report).toMatchObject({ rows: 7473, ok: 7473, bad: 0, blank: 0, problems: [] });
    const asPrompts = await collect(path, prompts({ columns: { prompt: 'question' }, requiredFields: ['answer'] }));
    expect(asPrompts.report).toMatchObject({ rows: 7473, ok: 7473, bad: 0 });
    expect(asPrompts.report.sha256).toBe(asSft.report.sha256);
  });

  it.skipIf(!haveShared)(`HH harmless test: 2,312 rows; 4 pairs have an empty chosen reply${skipNote}`, async () => {
    const c = await collect(`${SHARED}/hh-rlhf-harmless/test.jsonl`, pref());
    // These four dialogues end in "\n\nAssistant: " with nothing after it on the chosen side
    // (the preferred "reply" is silence); after splitting off the shared prompt the chosen
    // completion is empty, which DPO cannot learn from.
    expect(c.report).toMatchObject({ rows: 2312, ok: 2308, bad: 4, format: 'implicit' });
    expect(c.report.problems.map((p) => [p.line, p.field, p.reason])).toEqual([
      [87, 'chosen', 'empty_completion'],
      [517, 'chosen', 'empty_completion'],
      [926, 'chosen', 'empty_completion'],
      [1104, 'chosen', 'empty_completion'],
    ]);
    expect(exs<Pair>(c).every((p) => p.prompt.endsWith('\n\nAssistant:') && p.chosen !== p.rejected)).toBe(true);
  });

  it.skipIf(!haveShared)(`self-instruct seeds: 175 rows, all good${skipNote}`, async () => {
    const columns = { prompt: 'instruction+instances.0.input', response: 'instances.0.output' };
    const c = await collect(`${SHARED}/self-instruct-seed/seed_tasks.jsonl`, sft({ columns }));
    expect(c.report).toMatchObject({ rows: 175, ok: 175, bad: 0 });
  });
});
