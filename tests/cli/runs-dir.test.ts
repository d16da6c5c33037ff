// One way to find runs: --runs-dir on every command that reads or writes runs, and
// runtime.runs_dir from --preset/--config/--set honoured by all of them with one precedence
// (flag, else config, else ./runs). Every hint that names a run runs as printed. Fake sidecar.
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { cli, fakeEnv, readJson, tmp } from '../helpers/cli.js';
import { recordReliability } from '../helpers/reliability.js';

const QUICK = { stages: { '*': { steps: 4, step_time_s: 0, save_every: 2 } } };
const runIds = (dir: string) => readdirSync(dir).filter((d) => !d.startsWith('.'));

/** The words of a command as a POSIX shell splits them (bare words and '…' quoting). */
function shellSplit(cmd: string): string[] {
  const words: string[] = [];
  for (const m of cmd.matchAll(/'((?:[^']|'\\'')*)'|(\S+)/g)) words.push(m[1] !== undefined ? m[1].replace(/'\\''/g, "'") : m[2]!);
  return words;
}

describe('runs folder from the config, for every command', () => {
  it('run, runs, show, report and stage all use the runs_dir of --config; ./runs is left alone', async () => {
    const cwd = tmp();
    const unrelated = await cli(['run', '--preset', 'smoke', '--stages', 'sft,dpo'], { cwd, env: fakeEnv(QUICK) });
    expect(unrelated.code).toBe(0);
    const unrelatedJson = readFileSync(join(unrelated.out.trim(), 'run.json'), 'utf8');

    writeFileSync(join(cwd, 'my.yaml'), 'runtime:\n  runs_dir: ./elsewhere\n');
    const mine = await cli(['run', '--preset', 'smoke', '--config', 'my.yaml', '--stages', 'sft,dpo'], { cwd, env: fakeEnv(QUICK) });
    expect(mine.code, mine.err).toBe(0);
    const runDir = mine.out.trim();
    expect(runDir.startsWith(join(cwd, 'elsewhere'))).toBe(true);
    const id = runDir.split('/').pop()!;

    const listed = await cli(['runs', '--config', 'my.yaml'], { cwd });
    expect(listed.out).toContain(id);
    expect(listed.out.trim().split('\n')).toHaveLength(1);
    expect((await cli(['show', '--config', 'my.yaml', '--json'], { cwd })).out).toContain(`"id": "${id}"`);
    const report = await cli(['report', '--config', 'my.yaml'], { cwd });
    expect(report.code, report.err).toBe(0);
    expect(report.out.trim()).toBe(join(runDir, 'report.html'));

    // The case that trained into an unrelated run: stage with the config finds ITS runs.
    const stage = await cli(['stage', 'dpo', '--preset', 'smoke', '--config', 'my.yaml', '--set', 'stages.dpo.beta=0.2'], { cwd, env: fakeEnv(QUICK) });
    const untouched = readFileSync(join(unrelated.out.trim(), 'run.json'), 'utf8') === unrelatedJson;
    recordReliability({
      fault: 'stage --config whose runtime.runs_dir is not ./runs, beside an unrelated run in ./runs',
      stage: 'dpo',
      injected: 1,
      survived: stage.code === 0 && stage.out.trim() === runDir && untouched ? 1 : 0,
      lost: 0,
      outcome: `trained into ${stage.out.trim() === runDir ? 'the config\'s run' : stage.out.trim()}; the run in ./runs ${untouched ? 'byte-identical' : 'CHANGED'}`,
      test: 'tests/cli/runs-dir.test.ts',
    });
    expect(stage.code, stage.err).toBe(0);
    expect(stage.out.trim()).toBe(runDir);
    expect(readJson(join(runDir, 'run.json')).stages.dpo.config.stages.dpo.beta).toBe(0.2);
    expect(readFileSync(join(unrelated.out.trim(), 'run.json'), 'utf8')).toBe(unrelatedJson);
  });

  it('--runs-dir on run, runs, show and report; a --runs-dir that contradicts the config is refused with both paths', async () => {
    const cwd = tmp();
    const r = await cli(['run', '--preset', 'smoke', '--stages', 'sft', '--runs-dir', 'out/runs'], { cwd, env: fakeEnv(QUICK) });
    expect(r.code, r.err).toBe(0);
    const runDir = r.out.trim();
    expect(runDir.startsWith(join(cwd, 'out', 'runs'))).toBe(true);
    expect(readJson(join(runDir, 'run.json')).config.runtime.runs_dir).toBe(join(cwd, 'out', 'runs'));
    expect(runIds(join(cwd, 'out', 'runs'))).toHaveLength(1);
    expect((await cli(['runs', '--runs-dir', 'out/runs'], { cwd })).out).toContain(runDir.split('/').pop()!);
    expect((await cli(['show', '--runs-dir', 'out/runs'], { cwd })).code).toBe(0);
    expect((await cli(['report', '--runs-dir', 'out/runs'], { cwd })).code).toBe(0);
    // Nothing under ./runs: without the flag there is no run to find.
    expect((await cli(['show'], { cwd })).code).toBe(2);

    writeFileSync(join(cwd, 'my.yaml'), 'runtime:\n  runs_dir: ./elsewhere\n');
    const clash = await cli(['stage', 'sft', '--preset', 'smoke', '--config', 'my.yaml', '--runs-dir', 'out/runs'], { cwd, env: fakeEnv(QUICK) });
    expect(clash.code).toBe(2);
    expect(clash.err).toContain(`--runs-dir ${join(cwd, 'out', 'runs')} contradicts runtime.runs_dir ${join(cwd, 'elsewhere')}`);
    expect(clash.err).toContain(join(cwd, 'my.yaml'));
  });
});

describe('hints that name a run run as printed', () => {
  it('a crash in a runs folder with a space in its path: the printed resume command finishes the stage', async () => {
    const cwd = tmp();
    const crash = { stages: { '*': QUICK.stages['*'], dpo: { ...QUICK.stages['*'], crash_at_step: 3 } } };
    const r = await cli(['run', '--preset', 'smoke', '--stages', 'sft,dpo', '--runs-dir', 'my runs'], { cwd, env: fakeEnv(crash) });
    expect(r.code).toBe(1);
    const printed = /`(posttrain run --resume [^`]*)`/.exec(r.err)?.[1];
    expect(printed, r.err).toBeDefined();
    const id = runIds(join(cwd, 'my runs'))[0]!;
    expect(printed).toBe(`posttrain run --resume --run ${id} --runs-dir '${join(cwd, 'my runs')}'`);
    const again = await cli(shellSplit(printed!).slice(1), { cwd, env: fakeEnv(QUICK) });
    recordReliability({
      fault: 'crash in a runs folder outside ./runs (path with a space), then the printed hint run as is',
      stage: 'dpo',
      injected: 1,
      survived: again.code === 0 ? 1 : 0,
      lost: 0,
      outcome: `hint \`${printed?.replace(cwd, '<tmp>')}\` exited ${again.code}`,
      test: 'tests/cli/runs-dir.test.ts',
    });
    expect(again.code, again.err).toBe(0);
    expect(readJson(join(cwd, 'my runs', id, 'run.json')).stages.dpo.status).toBe('ok');
  });
});
