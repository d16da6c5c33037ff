// Text summary of one run for `posttrain show`.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { readMetrics, type RunRecord, stageDir } from '../artifacts/index.js';
import { STAGES } from '../config/schema.js';
import { resumeRunCommand } from '../pipeline/commands.js';
import { staleness } from '../pipeline/lineage.js';
import { keyMetrics } from './progress.js';

export function describeRun(dir: string, r: RunRecord): string {
  const out: string[] = [];
  out.push(`run ${r.id}  ${r.status}`);
  out.push(`  folder   ${dir}`);
  out.push(`  created  ${r.created}   updated ${r.updated}`);
  out.push(`  config   ${[r.preset ? `preset ${r.preset}` : null, r.config_file, ...r.overrides.map((o) => `--set ${o}`)].filter(Boolean).join(' ← ') || 'defaults'}`);
  out.push(`  model    ${r.config.model.id} (${r.config.model.adapter.mode}, r=${r.config.model.adapter.r})`);
  if (r.fake_sidecar) out.push('  note     made with the fake sidecar (tests)');
  for (const [t, d] of Object.entries(r.data)) out.push(`  data.${t}  ${d.source} (${d.rows} rows, ${d.format}, sha256 ${d.sha256.slice(0, 12)})`);
  out.push('  stages');
  const lineage = staleness(r);
  for (const s of STAGES) {
    const st = r.stages[s];
    if (!st || (!r.stages_selected.includes(s) && st.status === 'pending')) continue;
    const sd = stageDir(dir, s);
    const metrics = existsSync(join(sd, 'metrics.jsonl')) ? readMetrics(join(sd, 'metrics.jsonl')) : [];
    const last = new Map<string, number | null>();
    for (const m of metrics) for (const [k, v] of Object.entries(m.values)) last.set(k, v);
    // The same key metrics the live progress line shows, last value of each.
    const shown = keyMetrics(s).filter((k) => last.has(k)).map((k) => [k, last.get(k)!] as const);
    const stale = lineage[s]?.stale ? lineage[s]!.reason : null;
    out.push(`    ${s.padEnd(5)} ${(stale ? `${st.status} STALE` : st.status).padEnd(11)} steps ${st.steps ?? '-'}${shown.length ? `  ${shown.map(([k, v]) => `${k}=${v === null ? '–' : Number(v.toFixed(4))}`).join(' ')}` : ''}`);
    out.push(`          from ${st.input_adapter ?? 'base model'}${st.resumed_from ? `, resumed from ${st.resumed_from}` : ''}`);
    if (st.output_adapter) out.push(`          adapter ${st.output_adapter}`);
    if (st.config) out.push(`          config  its own${st.overrides?.length ? `: ${st.overrides.map((o) => `--set ${o}`).join(' ')}` : ' (stage --preset/--config)'}`);
    if (stale) out.push(`          stale: ${stale}; \`${resumeRunCommand(dir)}\` re-runs it`);
    if (st.error) out.push(`          error [${st.error.code}] ${st.error.message}`);
  }
  const summaryNote = existsSync(join(dir, 'run.json')) ? '' : ' (run.json missing)';
  return `${out.join('\n')}${summaryNote}\n`;
}

