// A lone UTF-16 surrogate ("\ud800" in JSON) is valid JSON but no text encoding can carry it: it
// used to pass validation and kill training with UnicodeEncodeError in the tokenizer. Refused with
// file:line and the field, in prompts, completions, chat messages and keys; real pairs pass.
import { describe, expect, it } from 'vitest';
import { collect, sft, tempFile, triples } from '../data/helpers.js';
import { recordReliability } from '../helpers/reliability.js';

describe('lone surrogates', () => {
  it('are refused with line and field; a proper surrogate pair (an emoji) is fine', async () => {
    const lines = [
      '{"prompt": "fine \\ud83d\\ude00", "response": "ok"}',
      '{"prompt": "bad \\ud800 here", "response": "x"}',
      '{"prompt": "p", "response": "trailing low \\udc00"}',
      '{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "\\udbff"}]}',
    ];
    const path = await tempFile(`${lines.join('\n')}\n`);
    const { report, examples } = await collect(path, sft({ format: 'auto' }));
    const got = triples(report).filter(([, , reason]) => reason === 'lone_surrogate');
    recordReliability({
      fault: 'lone UTF-16 surrogates in prompt, response and a chat message',
      stage: 'jsonl',
      injected: 3,
      survived: got.length,
      lost: 0,
      outcome: 'refused at validation with file:line and the field, before any training',
      test: 'tests/hostile/surrogate.test.ts',
    });
    expect(got).toEqual([
      [2, 'prompt', 'lone_surrogate'],
      [3, 'response', 'lone_surrogate'],
      [4, 'messages.1.content', 'lone_surrogate'],
    ]);
    expect(examples.map((e) => e.line)).toEqual([1]);
    expect(report.problems.find((p) => p.line === 2)!.message).toContain('lone UTF-16 surrogate (\\ud800)');
  });
});
