// The report in a real browser: Debian's headless Chromium (driven by playwright-core, which
// downloads nothing) loads report.html from disk with every network request blocked, and the test
// reads back what Chromium actually laid out: each chart's SVG has a size, each series' polylines
// hold (as parsed by the browser) exactly the finite values metrics.jsonl has for that key, every
// metric with a curve got a chart. Screenshots are kept in test-artifacts/ for people to look at.
//
// The runs are real: the real sidecar trains the offline smoke model (all four stages for run A;
// SFT and DPO with another learning rate for run B, overlaid on A).
import { appendFileSync, existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { type Browser, chromium, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readMetrics } from '../../src/artifacts/index.js';
import { PACKAGE_ROOT } from '../../src/paths.js';
import { cli, spawnCli, tmp } from '../helpers/cli.js';
import { finiteCount } from './helpers.js';

const CHROMIUM = '/usr/bin/chromium';
const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--no-first-run'];
const ARTIFACTS = join(PACKAGE_ROOT, 'test-artifacts');
const HOSTILE = '<script>document.title="pwned"</script><img src="https://example.com/x.png">';
const haveChromium = existsSync(CHROMIUM);

if (!haveChromium && process.env.CI) {
  it('Chromium is installed (scripts/setup.sh installs Debian\'s chromium package)', () => {
    throw new Error(`${CHROMIUM} is missing; CI must install it (apt-get install -y chromium, done by scripts/setup.sh as root)`);
  });
} else if (!haveChromium) {
  console.warn(`skipping the browser tests of posttrain report: ${CHROMIUM} is missing (apt-get install chromium)`);
}

interface DrawnSeries {
  chart: string;
  run: string;
  key: string;
  declared: number;
  /** Points in the series' polylines, as Chromium parsed them (SVGPointList). */
  parsed: number;
  dashed: boolean;
}

interface Loaded {
  requests: string[];
  charts: { id: string; width: number; height: number }[];
  series: DrawnSeries[];
  scripts: number;
  images: number;
  text: string;
}

/** Load a report with the network blocked; open every <details>; read back what was laid out. */
async function load(page: Page, file: string, screenshot: string): Promise<Loaded> {
  const requests: string[] = [];
  await page.route('**', (route) => {
    const url = route.request().url();
    if (url.startsWith('file:')) return route.continue();
    requests.push(url);
    return route.abort();
  });
  page.on('request', (r) => void (r.url().startsWith('file:') || requests.push(r.url())));
  await page.goto(pathToFileURL(file).href, { waitUntil: 'load' });
  mkdirSync(ARTIFACTS, { recursive: true });
  await page.screenshot({ path: join(ARTIFACTS, screenshot), fullPage: true });
  const read = await page.evaluate(() => {
    for (const d of document.querySelectorAll('details')) d.open = true;
    const charts = [...document.querySelectorAll('svg[data-chart]')].map((svg) => {
      const box = svg.getBoundingClientRect();
      return { id: svg.getAttribute('data-chart')!, width: box.width, height: box.height };
    });
    const series = [...document.querySelectorAll('svg[data-chart] g[data-series]')].map((g) => {
      const lines = [...g.querySelectorAll('polyline')] as SVGPolylineElement[];
      return {
        chart: g.closest('svg')!.getAttribute('data-chart')!,
        run: g.getAttribute('data-series')!,
        key: g.getAttribute('data-key')!,
        declared: Number(g.getAttribute('data-points')),
        parsed: lines.reduce((n, l) => n + l.points.numberOfItems, 0),
        dashed: lines.length > 0 && lines.every((l) => getComputedStyle(l).strokeDasharray !== 'none'),
      };
    });
    return { charts, series, scripts: document.scripts.length, images: document.images.length, text: document.body.innerText };
  });
  return { requests, ...read };
}

/** Keys of a stage's metrics.jsonl recorded at least twice: each must have a chart. */
function curveKeys(runDir: string, stage: string): string[] {
  const counts = new Map<string, number>();
  for (const m of readMetrics(join(runDir, 'stages', stage, 'metrics.jsonl'))) for (const k of Object.keys(m.values)) counts.set(k, (counts.get(k) ?? 0) + 1);
  return [...counts].filter(([, n]) => n >= 2).map(([k]) => k);
}

describe.skipIf(!haveChromium)('posttrain report in headless Chromium (real runs)', () => {
  let cwd: string;
  const dirs: Record<string, string> = {};
  let browser: Browser;

  beforeAll(async () => {
    cwd = tmp('posttrain-report-browser-');
    const env = { ...process.env, POSTTRAIN_SIDECAR_MODULE: '' };
    // Two real runs at once (the smoke preset uses one torch thread each).
    const a = spawnCli(['run', '--preset', 'smoke'], { cwd, env });
    const b = spawnCli(['run', '--preset', 'smoke', '--stages', 'sft,dpo', '--set', 'stages.sft.learning_rate=2e-3'], { cwd, env });
    const [ea, eb] = await Promise.all([a.exit, b.exit]);
    expect(ea.code, a.err()).toBe(0);
    expect(eb.code, b.err()).toBe(0);
    dirs.a = a.out().trim();
    dirs.b = b.out().trim();
    // A diverged stretch in B (NaN, then a value again) and a hostile sample in A.
    appendFileSync(join(dirs.b, 'stages', 'sft', 'metrics.jsonl'), `${JSON.stringify({ stage: 'sft', step: 31, ts: 1, values: { 'train/loss': 'NaN' } })}\n${JSON.stringify({ stage: 'sft', step: 32, ts: 2, values: { 'train/loss': 4.5 } })}\n`);
    appendFileSync(join(dirs.a, 'stages', 'sft', 'samples.jsonl'), `${JSON.stringify({ stage: 'sft', prompt: HOSTILE, before: '', after: '' })}\n`);
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS });
  }, 240_000);

  afterAll(async () => {
    await browser?.close();
  });

  const runOf = (id: string) => (dirs.a!.endsWith(id) ? dirs.a! : dirs.b!.endsWith(id) ? dirs.b! : undefined);

  function checkSeries(loaded: Loaded): void {
    expect(loaded.series.length).toBeGreaterThan(0);
    for (const s of loaded.series) {
      const dir = runOf(s.run);
      expect(dir, `series of unknown run ${s.run}`).toBeDefined();
      const stage = s.chart.split('/')[0]!;
      const expected = finiteCount(dir!, stage, s.key);
      expect({ chart: s.chart, key: s.key, parsed: s.parsed, declared: s.declared }).toEqual({ chart: s.chart, key: s.key, parsed: expected, declared: expected });
    }
  }

  it('report.html: every chart laid out, every point drawn, nothing fetched, no script', async () => {
    const r = await cli(['report', '--runs-dir', 'runs', dirs.a!.split('/').pop()!], { cwd });
    expect(r.code).toBe(0);
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    const loaded = await load(page, join(dirs.a!, 'report.html'), 'report.png');
    await page.close();

    expect(loaded.requests).toEqual([]);
    expect(loaded.scripts).toBe(0);
    expect(loaded.images).toBe(0);
    expect(loaded.text).toContain(HOSTILE); // shown as text, not markup
    for (const c of loaded.charts) {
      expect(c.width, c.id).toBeGreaterThan(200);
      expect(c.height, c.id).toBeGreaterThan(80);
    }
    checkSeries(loaded);
    // The key signals are there, and every metric with a curve has a chart.
    const ids = loaded.charts.map((c) => c.id);
    for (const id of ['sft/train/loss', 'dpo/rewards/margins', 'dpo/rewards/accuracies', 'grpo/train/reward', 'grpo/train/kl', 'rlhf/rm/train/loss', 'rlhf/train/reward']) expect(ids).toContain(id);
    for (const stage of ['sft', 'dpo', 'grpo', 'rlhf']) {
      const drawn = new Set(loaded.series.filter((s) => s.chart.startsWith(`${stage}/`)).map((s) => s.key));
      expect(curveKeys(dirs.a!, stage).filter((k) => !drawn.has(k))).toEqual([]);
    }
  });

  it('compare report: run B overlaid, dashed, with its NaN gap; every point drawn', async () => {
    const idA = dirs.a!.split('/').pop()!;
    const idB = dirs.b!.split('/').pop()!;
    const r = await cli(['report', '--runs-dir', 'runs', idA, idB], { cwd });
    expect(r.code).toBe(0);
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    const loaded = await load(page, join(dirs.a!, `compare-${idB}.html`), 'report-compare.png');
    await page.close();

    expect(loaded.requests).toEqual([]);
    checkSeries(loaded);
    const loss = loaded.series.filter((s) => s.chart === 'sft/train/loss');
    expect(loss.map((s) => [s.run, s.dashed])).toEqual([[idA, false], [idB, true]]);
    expect(loss[1]!.parsed).toBe(31); // 30 steps + step 32; the NaN at 31 is a gap
    for (const c of loaded.charts) expect(c.width, c.id).toBeGreaterThan(200);
    // Stages only A ran keep A's curves alone.
    expect(new Set(loaded.series.filter((s) => s.chart.startsWith('grpo/')).map((s) => s.run))).toEqual(new Set([idA]));
  });
});
