// Build dist/ once before the suite (some tests drive the real `posttrain` bin as a child
// process), and after it render docs/RELIABILITY.md from the rows the fault tests recorded.
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { RELIABILITY_ROWS as rowsFile, type ReliabilityRow as Row } from './helpers/reliability.js';

const root = fileURLToPath(new URL('..', import.meta.url));

export default function setup(): () => void {
  execFileSync(process.execPath, [`${root}/node_modules/typescript/bin/tsc`, '-p', `${root}/tsconfig.json`], { stdio: 'inherit', cwd: root });
  rmSync(rowsFile, { force: true });
  return () => renderReliability();
}


function renderReliability(): void {
  if (!existsSync(rowsFile)) return;
  // The sidecar's tests (pytest, run first by scripts/test.sh) write their rows beside ours.
  const files = [rowsFile, rowsFile.replace(/reliability\.jsonl$/, 'reliability-python.jsonl')].filter((f) => existsSync(f));
  const rows = files.flatMap((f) => readFileSync(f, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as Row));
  // Only a run that executed the fault suites rewrites the document (a filtered run keeps it).
  if (rows.length < 10) return;
  rows.sort((a, b) => a.fault.localeCompare(b.fault) || a.stage.localeCompare(b.stage));
  const sum = (k: 'injected' | 'survived' | 'lost') => rows.reduce((n, r) => n + r[k], 0);
  const esc = (s: string) => s.replaceAll('|', '\\|').replaceAll('\n', ' ');
  const doc = [
    '# Reliability',
    '',
    'Produced by the test suite (`make test`): every fault and hostile-input test records what it',
    'injected and what survived, and the run renders this file. Do not edit by hand.',
    '',
    `Totals: **${sum('injected')}** faults and bad inputs injected, **${sum('survived')}** survived as required, **${sum('lost')}** metric lines or data rows lost, **${rows.filter((r) => r.survived < r.injected || r.lost > 0).length}** rows failed.`,
    '',
    '| fault | stage / input | injected | survived | lost | outcome | test |',
    '| --- | --- | ---: | ---: | ---: | --- | --- |',
    // A row is written from what the test observed; one that did not survive as required says so.
    ...rows.map((r) => `| ${esc(r.fault)} | ${esc(r.stage)} | ${r.injected} | ${r.survived} | ${r.lost} | ${r.survived < r.injected || r.lost > 0 ? '**FAILED**: ' : ''}${esc(r.outcome)} | ${esc(r.test)} |`),
    '',
  ].join('\n');
  writeFileSync(`${root}docs/RELIABILITY.md`, doc);
}
