// Per-kind formats: what is accepted, what canonical row comes out, and the exact line and reason
// of every broken row.
import { describe, expect, it } from 'vitest';
import { splitSharedPrompt } from '../../src/data/validate.js';
import { collect, jsonl, pref, prompts, sft, tempFile, triples } from './helpers.js';

describe('sft', () => {
  it('prompt_response → {prompt, completion}', async () => {
    const path = await tempFile(jsonl({ prompt: 'Hi', response: 'Hello', extra: 1 }, { prompt: 'Q', response: ' A' }));
    const { report, examples } = await collect(path, sft());
    expect(report).toMatchObject({ format: 'prompt_response', rows: 2, ok: 2, bad: 0, problems: [], counts: {} });
    expect(examples.map((e) => e.ex)).toEqual([
      { prompt: 'Hi', completion: 'Hello' },
      { prompt: 'Q', completion: ' A' }, // whitespace inside text is data: kept as is
    ]);
  });

  it('prompt_completion → {prompt, completion}', async () => {
    const path = await tempFile(jsonl({ prompt: 'Hi', completion: 'Hello' }));
    const { report, examples } = await collect(path, sft());
    expect(report.format).toBe('prompt_completion');
    expect(examples[0]!.ex).toEqual({ prompt: 'Hi', completion: 'Hello' });
  });

  it('messages → {messages}, keeping only role and content', async () => {
    const conv = [
      { role: 'system', content: 'Be brief.' },
      { role: 'user', content: 'Hi', name: 'x' },
      { role: 'assistant', content: 'Hello' },
    ];
    const path = await tempFile(jsonl({ messages: conv }));
    const { report, examples } = await collect(path, sft());
    expect(report.format).toBe('messages');
    expect(examples[0]!.ex).toEqual({ messages: conv.map(({ role, content }) => ({ role, content })) });
  });

  it('reports broken prompt/response rows with line, field and reason', async () => {
    const path = await tempFile(
      jsonl(
        { prompt: 'ok', response: 'ok' }, // 1
        { prompt: 42, response: 'x' }, // 2
        { prompt: '   ', response: 'x' }, // 3
        { prompt: 'x' }, // 4: detected format needs response
        { prompt: 'x', response: null }, // 5
        '{"prompt": "x", "response": "y",}', // 6
        '["prompt", "response"]', // 7
        '"just a string"', // 8
        { prompt: 'x', completion: 'y' }, // 9: another format than line 1's
        { prompt: ['a'], response: '' }, // 10: two problems, one row
        {}, // 11
      ),
    );
    const { report, examples } = await collect(path, sft());
    expect(triples(report)).toEqual([
      [2, 'prompt', 'wrong_type'],
      [3, 'prompt', 'empty_field'],
      [4, 'response', 'missing_field'],
      [5, 'response', 'missing_field'],
      [6, null, 'bad_json'],
      [7, null, 'not_object'],
      [8, null, 'not_object'],
      [9, null, 'format_mismatch'],
      [10, 'prompt', 'wrong_type'],
      [10, 'response', 'empty_field'],
      [11, 'prompt', 'missing_field'],
      [11, 'response', 'missing_field'],
    ]);
    expect(report).toMatchObject({ rows: 11, ok: 1, bad: 10 });
    expect(report.counts).toEqual({ wrong_type: 2, empty_field: 2, missing_field: 4, bad_json: 1, not_object: 2, format_mismatch: 1 });
    expect(examples.map((e) => e.line)).toEqual([1]);
    const msg = (line: number) => report.problems.find((p) => p.line === line)!.message;
    expect(msg(2)).toBe('expected a string, got number');
    expect(msg(3)).toBe('is whitespace only');
    expect(msg(4)).toBe('missing; the row has columns "prompt" (set a column mapping, e.g. --map response=COLUMN)');
    expect(msg(5)).toBe('is null');
    expect(msg(7)).toMatch(/got an array/);
    expect(msg(9)).toBe("row looks like prompt_completion but the file's format is prompt_response (detected from line 1)");
  });

  it('auto detects from the first recognisable row', async () => {
    const path = await tempFile(jsonl({ text: 'x' }, { prompt: 'a', completion: 'b' }, { prompt: 'a', response: 'b' }));
    const { report } = await collect(path, sft());
    expect(report.format).toBe('prompt_completion');
    expect(triples(report)).toEqual([
      [1, null, 'missing_field'],
      [3, null, 'format_mismatch'],
    ]);
    expect(report.problems[0]!.message).toBe('no recognised fields: expected prompt+response, prompt+completion or messages; the row has columns "text"');
  });

  it('an explicit format tolerates extra fields of another format but not missing ones', async () => {
    const path = await tempFile(jsonl({ prompt: 'a', response: 'b', completion: 'c' }, { prompt: 'a', completion: 'c' }));
    const { report, examples } = await collect(path, sft({ format: 'prompt_response' }));
    expect(examples.map((e) => e.ex)).toEqual([{ prompt: 'a', completion: 'b' }]);
    expect(triples(report)).toEqual([[2, null, 'format_mismatch']]);
    expect(report.problems[0]!.message).toBe('row looks like prompt_completion but the format is set to prompt_response');
  });

  it('reports broken messages', async () => {
    const u = { role: 'user', content: 'hi' };
    const a = { role: 'assistant', content: 'hello' };
    const path = await tempFile(
      jsonl(
        { messages: [u, a] }, // 1
        { messages: [u, { role: 'bot', content: 'x' }] }, // 2
        { messages: [u, { role: 'assistant', content: '' }] }, // 3
        { messages: [a, u] }, // 4: ends with the user
        { messages: [{ role: 'system', content: 's' }, a] }, // 5: no user turn
        { messages: [] }, // 6
        { messages: 'hi' }, // 7
        { messages: [u, 'hello', { role: 'assistant', content: 5 }] }, // 8: two issues, one problem
        { messages: [u, { role: 'assistant' }] }, // 9
      ),
    );
    const { report } = await collect(path, sft());
    expect(triples(report)).toEqual([
      [2, 'messages', 'bad_messages'],
      [3, 'messages', 'bad_messages'],
      [4, 'messages', 'bad_messages'],
      [5, 'messages', 'bad_messages'],
      [6, 'messages', 'empty_field'],
      [7, 'messages', 'wrong_type'],
      [8, 'messages', 'bad_messages'],
      [9, 'messages', 'bad_messages'],
    ]);
    expect(report.problems.map((p) => p.message)).toEqual([
      'messages.1.role is "bot", expected one of system, user, assistant',
      'messages.1.content is empty',
      'the last message is from "user"; it must be the assistant\'s reply to train on',
      'has no user message',
      'has no messages',
      'expected an array of {role, content} messages, got string',
      'messages.1 is a string, expected {role, content} (and 1 more)',
      'messages.1.content is missing, expected a string',
    ]);
  });

  it('reports over-long rows by their normalised text', async () => {
    const path = await tempFile(jsonl({ prompt: '12345', response: '12345' }, { prompt: '12345', response: '123456' }, { messages: [] }));
    const { report } = await collect(path, sft({ format: 'prompt_response', maxChars: 10 }));
    expect(triples(report)).toEqual([
      [2, null, 'over_long'],
      [3, null, 'format_mismatch'],
    ]);
    expect(report.problems[0]!.message).toBe('11 characters of text, over max_chars 10');
    expect(report.ok).toBe(1);
  });
});

describe('preference', () => {
  it('explicit → {prompt, chosen, rejected}', async () => {
    const path = await tempFile(jsonl({ prompt: 'Q', chosen: 'good', rejected: 'bad', id: 7 }));
    const { report, examples } = await collect(path, pref());
    expect(report.format).toBe('explicit');
    expect(examples[0]!.ex).toEqual({ prompt: 'Q', chosen: 'good', rejected: 'bad' });
  });

  it('implicit: the shared prefix becomes the prompt', async () => {
    const h = '\n\nHuman: What is 2+2?\n\nAssistant:';
    const path = await tempFile(jsonl({ chosen: `${h} It is 4.`, rejected: `${h} It is 5.` }, { chosen: 'The sky is blue', rejected: 'The sky is green' }));
    const { report, examples } = await collect(path, pref());
    expect(report).toMatchObject({ format: 'implicit', ok: 2 });
    expect(examples[0]!.ex).toEqual({ prompt: h, chosen: ' It is 4.', rejected: ' It is 5.' });
    expect(examples[1]!.ex).toEqual({ prompt: 'The sky is', chosen: ' blue', rejected: ' green' });
  });

  it('reports broken pairs', async () => {
    const h = '\n\nHuman: hi\n\nAssistant:';
    const path = await tempFile(
      jsonl(
        { chosen: `${h} a`, rejected: `${h} b` }, // 1
        { chosen: `${h} same`, rejected: `${h} same` }, // 2
        { chosen: 'apples', rejected: 'pears' }, // 3
        { chosen: `${h} `, rejected: `${h} a longer reply` }, // 4: chosen reply is empty
        { chosen: 'abc', rejected: 'abcdef' }, // 5: no marker, chosen is a prefix
        { chosen: 5, rejected: '' }, // 6
        { prompt: 'p', chosen: 'c', rejected: 'r' }, // 7: explicit row in an implicit file
        { chosen: `${h} a` }, // 8
      ),
    );
    const { report } = await collect(path, pref());
    expect(triples(report)).toEqual([
      [2, null, 'identical_pair'],
      [3, null, 'no_shared_prefix'],
      [4, 'chosen', 'empty_completion'],
      [5, 'chosen', 'empty_completion'],
      [6, 'chosen', 'wrong_type'],
      [6, 'rejected', 'empty_field'],
      [7, null, 'format_mismatch'],
      [8, 'rejected', 'missing_field'],
    ]);
  });

  it('explicit format: identical pairs, rows without a prompt', async () => {
    const path = await tempFile(jsonl({ prompt: 'p', chosen: 'x', rejected: 'x' }, { chosen: 'a', rejected: 'b' }, { prompt: 'p', chosen: 'a' }));
    const { report } = await collect(path, pref({ format: 'explicit' }));
    expect(triples(report)).toEqual([
      [1, null, 'identical_pair'],
      [2, null, 'format_mismatch'],
      [3, 'rejected', 'missing_field'],
    ]);
    expect(report.problems[1]!.message).toBe('row looks like implicit but the format is set to explicit');
  });

  it('implicit format chosen explicitly ignores a stray prompt column', async () => {
    const path = await tempFile(jsonl({ prompt: 'ignored', chosen: 'Say yes', rejected: 'Say no' }));
    const { examples } = await collect(path, pref({ format: 'implicit' }));
    expect(examples[0]!.ex).toEqual({ prompt: 'Say', chosen: ' yes', rejected: ' no' });
  });
});

describe('splitSharedPrompt', () => {
  it('cuts back to the last Assistant marker in the common prefix', () => {
    const pre = '\n\nHuman: q1\n\nAssistant: a1\n\nHuman: q2\n\nAssistant:';
    expect(splitSharedPrompt(`${pre} I think yes`, `${pre} I think no`)).toEqual({ prompt: pre, chosen: ' I think yes', rejected: ' I think no' });
  });

  it('keeps later turns in the completion when the dialogues diverge in a human turn', () => {
    const pre = '\n\nHuman: q1\n\nAssistant:';
    const s = splitSharedPrompt(`${pre} a\n\nHuman: more\n\nAssistant: x`, `${pre} a\n\nHuman: less\n\nAssistant: y`);
    expect(s.prompt).toBe(pre);
    expect(s.chosen).toBe(' a\n\nHuman: more\n\nAssistant: x');
  });

  it('moves back over a space like TRL when there is no marker', () => {
    expect(splitSharedPrompt('Answer: yes', 'Answer: no')).toEqual({ prompt: 'Answer:', chosen: ' yes', rejected: ' no' });
    expect(splitSharedPrompt('abc', 'abd')).toEqual({ prompt: 'ab', chosen: 'c', rejected: 'd' });
    expect(splitSharedPrompt('x', 'y').prompt).toBe('');
  });

  it('never splits a surrogate pair', () => {
    const s = splitSharedPrompt('Mood: \u{1F600}', 'Mood: \u{1F641}');
    expect(s).toEqual({ prompt: 'Mood:', chosen: ' \u{1F600}', rejected: ' \u{1F641}' });
    expect(splitSharedPrompt('ab\u{1F600}', 'ab\u{1F641}')).toEqual({ prompt: 'ab', chosen: '\u{1F600}', rejected: '\u{1F641}' });
  });
});

describe('prompt', () => {
  it('keeps every original column and puts prompt first', async () => {
    const path = await tempFile(jsonl({ question: 'Q?', answer: '#### 4', meta: { src: 'x' } }));
    const { report, examples } = await collect(path, prompts({ columns: { prompt: 'question' }, requiredFields: ['answer'] }));
    expect(report).toMatchObject({ format: 'prompt', ok: 1 });
    expect(examples[0]!.ex).toEqual({ prompt: 'Q?', question: 'Q?', answer: '#### 4', meta: { src: 'x' } });
    expect(Object.keys(examples[0]!.ex)[0]).toBe('prompt');
  });

  it('requires requiredFields to be present and non-empty (any JSON type)', async () => {
    const path = await tempFile(
      jsonl(
        { prompt: 'a', answer: 4 }, // 1: a number is a fine answer
        { prompt: 'b' }, // 2
        { prompt: 'c', answer: '  ' }, // 3
        { prompt: 'd', answer: null }, // 4
        { prompt: 7, answer: [] }, // 5
      ),
    );
    const { report, examples } = await collect(path, prompts({ requiredFields: ['answer'] }));
    expect(examples.map((e) => e.ex)).toEqual([{ prompt: 'a', answer: 4 }]);
    expect(triples(report)).toEqual([
      [2, 'answer', 'missing_field'],
      [3, 'answer', 'empty_field'],
      [4, 'answer', 'missing_field'],
      [5, 'prompt', 'wrong_type'],
      [5, 'answer', 'empty_field'],
    ]);
  });

  it('maps any field name, and a "__proto__" column stays a plain key', async () => {
    const path = await tempFile(['{"q": "hi", "gold": {"v": 1}, "__proto__": {"polluted": true}}']);
    // JSON.parse makes "__proto__" an own key (an object literal would set the prototype instead).
    const columns = JSON.parse('{"prompt": "q", "target": "gold.v", "__proto__": "gold"}') as Record<string, string>;
    const { examples } = await collect(path, prompts({ columns }));
    const ex = examples[0]!.ex as Record<string, unknown>;
    expect(ex.prompt).toBe('hi');
    expect(ex.target).toBe(1);
    expect(Object.getPrototypeOf(ex)).toBe(Object.prototype);
    expect(Object.getOwnPropertyDescriptor(ex, '__proto__')?.value).toEqual({ v: 1 });
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });

  it('reports a mapped extra field that is missing', async () => {
    const path = await tempFile(jsonl({ prompt: 'a', sol: 'x' }, { prompt: 'b' }));
    const { report } = await collect(path, prompts({ columns: { answer: 'sol' } }));
    expect(triples(report)).toEqual([[2, 'answer', 'missing_field']]);
    expect(report.problems[0]!.message).toBe('missing (column "sol")');
  });
});
