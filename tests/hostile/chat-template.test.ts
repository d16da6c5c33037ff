// Conversational rows the model's chat template refuses (roles out of order for a strict,
// Mistral-style template) used to pass validation and kill SFT in the sidecar. The real sidecar's
// preflight renders every conversation through the real tokenizer's template first, and the run
// stops with exit 2 naming the user's file:line (the run's copy skipped a bad row, so its row
// numbers are not the file's). Real sidecar, no weights loaded.
import { mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { PACKAGE_ROOT } from '../../src/paths.js';
import { cli, tmp } from '../helpers/cli.js';
import { recordReliability } from '../helpers/reliability.js';

const STACK = /^\s+at .+:\d+:\d+\)?$/m;
const STRICT = `{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if message['role'] == 'assistant' %}<|assistant|>
{% generation %}{{ message['content'] }}<|endoftext|>{% endgeneration %}
{% else %}<|user|>
{{ message['content'] }}<|endoftext|>
{% endif %}{% endfor %}{% if add_generation_prompt %}<|assistant|>
{% endif %}`;

function modelWith(template: string): string {
  const dir = tmp('posttrain-strict-model-');
  const smoke = join(PACKAGE_ROOT, 'data', 'smoke-model');
  for (const f of ['config.json', 'generation_config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json']) symlinkSync(join(smoke, f), join(dir, f));
  writeFileSync(join(dir, 'chat_template.jinja'), template);
  return dir;
}

const turn = (role: string, content: string) => ({ role, content });
const ROWS = [
  JSON.stringify({ messages: [turn('user', 'hi'), turn('assistant', 'hello')] }),
  '{"messages": 3}', // bad row, left out of the run's copy with on_bad_rows: skip
  '',
  JSON.stringify({ messages: [turn('user', 'a'), turn('user', 'b'), turn('assistant', 'c')] }),
  JSON.stringify({ messages: [turn('user', 'q'), turn('assistant', 'r'), turn('user', 's'), turn('assistant', 't')] }),
  JSON.stringify({ messages: [turn('user', 'x'), turn('assistant', 'y'), turn('assistant', 'z')] }),
];

describe('conversational rows through the chat template, at preflight', () => {
  it('rows a strict template refuses stop the run with exit 2 and the source file:line of each', async () => {
    const cwd = tmp('posttrain-chat-');
    mkdirSync(join(cwd, 'data'));
    writeFileSync(join(cwd, 'data', 'chat.jsonl'), `${ROWS.join('\n')}\n`);
    const r = await cli(['run', '--preset', 'smoke', '--stages', 'sft', '--set', `model.id=${modelWith(STRICT)}`, '--set', 'data.sft.path=data/chat.jsonl', '--set', 'data.sft.on_bad_rows=skip'], { cwd });
    const file = join(cwd, 'data', 'chat.jsonl');
    const ok = r.code === 2 && r.err.includes(`${file}:4: roles user, user, assistant: TemplateError: Conversation roles must alternate`) && r.err.includes(`${file}:6: roles user, assistant, assistant`);
    recordReliability({ fault: 'chat rows with roles a strict (Mistral-style) template refuses: user,user,assistant and user,assistant,assistant', stage: 'sft', injected: 2, survived: ok ? 2 : 0, lost: 0, outcome: ok ? 'exit 2 at preflight, before weights load: chat_template_refused with file:line of each row (after a skipped bad row and a blank line)' : r.err.slice(-400), test: 'tests/hostile/chat-template.test.ts' });
    expect(r.code, r.err).toBe(2);
    expect(r.err).toMatch(/chat_template_refused: the chat template of .* refuses 2 of 4 conversations in data\.sft:/);
    expect(r.err).toContain(`${file}:4: roles user, user, assistant: TemplateError: Conversation roles must alternate user/assistant/user/assistant/...`);
    expect(r.err).toContain(`${file}:6: roles user, assistant, assistant: TemplateError: Conversation roles must alternate`);
    expect(r.err).not.toContain(`${file}:1:`);
    expect(r.err).toMatch(/fix: Fix or drop those rows/);
    expect(r.err).not.toMatch(STACK);
  }, 60_000);

  it('assistant-only loss with a template that has no {% generation %} markers is refused at preflight with the key', async () => {
    const cwd = tmp('posttrain-chat-');
    writeFileSync(join(cwd, 'chat.jsonl'), `${ROWS[0]}\n${ROWS[4]}\n`);
    const plain = STRICT.replace('{% generation %}', '').replace('{% endgeneration %}', '');
    const r = await cli(['run', '--preset', 'smoke', '--stages', 'sft', '--set', `model.id=${modelWith(plain)}`, '--set', 'data.sft.path=chat.jsonl'], { cwd });
    const ok = r.code === 2 && /chat_template_no_generation/.test(r.err) && !/internal_error/.test(r.err);
    recordReliability({ fault: 'chat SFT with assistant-only loss on a template without {% generation %} that TRL cannot patch', stage: 'sft', injected: 1, survived: ok ? 1 : 0, lost: 0, outcome: ok ? 'exit 2 at preflight: chat_template_no_generation naming stages.sft.completion_only_loss (was an internal_error when the trainer was built)' : r.err.slice(-300), test: 'tests/hostile/chat-template.test.ts' });
    expect(r.code, r.err).toBe(2);
    expect(r.err).toMatch(/chat_template_no_generation: stages\.sft\.completion_only_loss is true/);
    expect(r.err).toMatch(/fix: Set stages\.sft\.completion_only_loss false/);
  }, 60_000);
});
