// Column mapping: --map flags, source expressions (dot paths, + joins), and configuration errors
// that must fail before any row is read.
import { describe, expect, it } from 'vitest';
import { DataError, UsageError } from '../../src/errors.js';
import { parseMapFlags, validateFile } from '../../src/data/validate.js';
import { collect, jsonl, pref, prompts, sft, tempFile, triples } from './helpers.js';

describe('parseMapFlags', () => {
  it('turns field=column flags into a map', () => {
    expect(parseMapFlags(['prompt=question', 'response = answer', 'prompt2=a=b'])).toEqual({ prompt: 'question', response: 'answer', prompt2: 'a=b' });
    expect(parseMapFlags([])).toEqual({});
  });

  it.each([
    ['prompt', /Bad --map "prompt": expected field=column/],
    ['=question', /Bad --map "=question": the field name before "=" is empty/],
    ['prompt=', /Bad --map "prompt=": the column after "=" is empty/],
    ['prompt=a++b', /Bad --map "prompt=a\+\+b": "a\+\+b" has an empty part around "\+"/],
    ['prompt=instances..0', /Bad --map "prompt=instances\.\.0": "instances\.\.0" has an empty step/],
  ])('rejects %j naming the flag', (flag, message) => {
    expect(() => parseMapFlags([flag])).toThrow(UsageError);
    expect(() => parseMapFlags([flag])).toThrow(message);
  });

  it('rejects a field mapped twice', () => {
    expect(() => parseMapFlags(['prompt=a', 'prompt=b'])).toThrow('Bad --map "prompt=b": field "prompt" is already mapped to "a".');
  });
});

describe('source expressions', () => {
  it('reads dot paths with numeric indices and joins parts with a blank line, skipping empty ones', async () => {
    const path = await tempFile(
      jsonl(
        { instruction: 'Translate.', instances: [{ input: 'Bonjour', output: 'Hello' }] },
        { instruction: 'Say hi.', instances: [{ input: '', output: 'Hi' }] },
        { instruction: 'Say hi.', instances: [] }, // output missing
        { instruction: '', instances: [{ input: ' ', output: 'x' }] }, // every prompt part empty
        { instruction: 3, instances: [{ input: 'a', output: 'x' }] }, // a non-string part
      ),
    );
    const columns = { prompt: 'instruction+instances.0.input', response: 'instances.0.output' };
    const { report, examples } = await collect(path, sft({ columns }));
    expect(examples.map((e) => e.ex)).toEqual([
      { prompt: 'Translate.\n\nBonjour', completion: 'Hello' },
      { prompt: 'Say hi.', completion: 'Hi' },
    ]);
    expect(triples(report)).toEqual([
      [3, 'response', 'missing_field'],
      [4, 'prompt', 'empty_field'],
      [5, 'prompt', 'wrong_type'],
    ]);
    expect(report.problems.map((p) => p.message)).toEqual([
      'missing (column "instances.0.output")',
      'is empty (from instruction+instances.0.input)',
      '"instruction" is a number; only strings can be joined with +',
    ]);
  });

  it('prefers a column literally named like the expression', async () => {
    const path = await tempFile(jsonl({ 'a.b': 'literal', a: { b: 'path' }, 'x+y': 'joined-name', response: 'r' }));
    const { examples } = await collect(path, prompts({ columns: { prompt: 'a.b', other: 'x+y' } }));
    expect(examples[0]!.ex).toMatchObject({ prompt: 'literal', other: 'joined-name' });
  });

  it('reads an unmapped field from the column of the same name only (no dot paths)', async () => {
    const path = await tempFile(jsonl({ prompt: 'p', response: 'r', 'completion.x': 'no' }));
    const { examples } = await collect(path, sft());
    expect(examples[0]!.ex).toEqual({ prompt: 'p', completion: 'r' });
  });

  it('does not resolve inherited properties such as constructor', async () => {
    const path = await tempFile(jsonl({ prompt: 'p', x: {} }));
    const { report } = await collect(path, prompts({ columns: { answer: 'x.constructor' } }));
    expect(triples(report)).toEqual([[1, 'answer', 'missing_field']]);
  });
});

describe('configuration errors', () => {
  it('rejects an unknown target field with a suggestion, before reading the file', async () => {
    const err = await validateFile('/nonexistent/file.jsonl', sft({ columns: { promt: 'question' } })).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UsageError);
    expect((err as UsageError).message).toBe('Unknown field "promt" in the column mapping for sft data. Did you mean "prompt"?');
    expect((err as UsageError).hint).toMatch(/^Valid fields: prompt, response, completion, messages\./);
  });

  it('rejects preference fields that do not exist', async () => {
    await expect(validateFile('/nonexistent.jsonl', pref({ columns: { choosen: 'a' } }))).rejects.toThrow(/Did you mean "chosen"\?/);
  });

  it('rejects a mapped field the chosen format does not read', async () => {
    await expect(validateFile('/nonexistent.jsonl', sft({ format: 'messages', columns: { prompt: 'q' } }))).rejects.toThrow(
      'The column mapping sets "prompt", which format messages does not read (it reads: messages).',
    );
    await expect(validateFile('/nonexistent.jsonl', pref({ format: 'implicit', columns: { prompt: 'q' } }))).rejects.toThrow(UsageError);
  });

  it('rejects an unknown format with a suggestion', async () => {
    await expect(validateFile('/nonexistent.jsonl', sft({ format: 'prompt_respons' }))).rejects.toThrow(
      'Unknown sft data format "prompt_respons". Did you mean "prompt_response"?',
    );
  });

  it('lets prompt files map any field', async () => {
    const path = await tempFile(jsonl({ q: 'hi', sol: '4' }));
    const { examples } = await collect(path, prompts({ columns: { prompt: 'q', answer: 'sol' } }));
    expect(examples[0]!.ex).toEqual({ prompt: 'hi', q: 'hi', sol: '4', answer: '4' });
  });

  it('mapping errors are usage errors, file errors are data errors', async () => {
    await expect(validateFile('/nonexistent.jsonl', sft())).rejects.toThrow(DataError);
  });
});
