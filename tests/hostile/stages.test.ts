// Unknown stage names and unusable model paths are refused before anything trains: exit 2, a
// clear message, and no run folder (no sidecar started).
import { existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { cli, fakeEnv, tmp } from '../helpers/cli.js';
import { recordReliability } from '../helpers/reliability.js';

const STACK = /^\s+at .+:\d+:\d+\)?$/m;

describe('unknown stages and bad model paths, before any training', () => {
  it('are clear exit-2 errors and leave no run behind', async () => {
    const dir = tmp('posttrain-hostile-stage-');
    const runs = join(dir, 'runs');
    const noTok = join(dir, 'model-no-tokenizer');
    mkdirSync(noTok);
    writeFileSync(join(noTok, 'config.json'), '{"model_type":"llama"}');
    const cases: { args: string[]; want: RegExp }[] = [
      { args: ['stage', 'foo', '--runs-dir', runs], want: /Unknown stage "foo"/ },
      { args: ['stage', 'sfft', '--runs-dir', runs], want: /Unknown stage "sfft"\. Did you mean "?sft"?/i },
      { args: ['stage', '__proto__', '--runs-dir', runs], want: /Unknown stage "__proto__"/ },
      { args: ['run', '--preset', 'smoke', '--stages', 'foo'], want: /--stages: unknown stage "foo"/ },
      { args: ['run', '--preset', 'smoke', '--stages', 'sft,constructor'], want: /--stages: unknown stage "constructor"/ },
      { args: ['run', '--preset', 'smoke', '--stages', ',,'], want: /--stages is empty/ },
      { args: ['run', '--preset', 'smoke', '--set', 'runtime.stages=["foo"]'], want: /runtime\.stages\.0: expected one of/ },
      { args: ['run', '--preset', 'smoke', '--set', 'model.id=./does-not-exist'], want: /model\.id: .*does-not-exist does not exist/ },
      { args: ['run', '--preset', 'smoke', '--set', `model.id=${noTok}`], want: /model\.id: .*has no tokenizer/ },
      { args: ['run', '--preset', 'smoke', '--set', `model.id=${join(dir, 'plain-file')}`], want: /model\.id: / },
    ];
    writeFileSync(join(dir, 'plain-file'), 'x');
    let ok = 0;
    for (const c of cases) {
      const args = c.args[0] === 'run' ? [...c.args, '--set', `runtime.runs_dir=${runs}`] : c.args;
      const r = await cli(args, { cwd: dir, env: fakeEnv() });
      expect(r.code, `${args.join(' ')}: ${r.err}`).toBe(2);
      expect(r.err, args.join(' ')).toMatch(c.want);
      expect(r.err).not.toMatch(STACK);
      expect(r.err).not.toContain('internal error');
      expect(existsSync(runs) ? readdirSync(runs) : [], `${args.join(' ')} left a run`).toEqual([]);
      ok += 1;
    }
    recordReliability({ fault: 'unknown stage names (stage, --stages, runtime.stages), missing model path, model folder without tokenizer, model path that is a file', stage: 'cli', injected: cases.length, survived: ok, lost: 0, outcome: 'exit 2 before any run folder or sidecar exists, with the valid choices or the model.id problem', test: 'tests/hostile/stages.test.ts' });
  });
});
