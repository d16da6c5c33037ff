// The report's only stylesheet, inlined into the page (nothing is fetched). System fonts, light
// theme, prints reasonably.
export const CSS = `
:root { --fg: #1f2937; --muted: #6b7280; --line: #e5e7eb; --bg: #f8fafc; --card: #fff; --accent: #2563eb; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; color: var(--fg); background: var(--bg); }
main { max-width: 1240px; margin: 0 auto; padding: 20px 24px 48px; }
header.top { background: #0f172a; color: #f8fafc; padding: 18px 24px; }
header.top .inner { max-width: 1240px; margin: 0 auto; }
header.top h1 { margin: 0 0 4px; font-size: 20px; font-weight: 600; }
header.top .sub { color: #cbd5e1; font-size: 13px; }
header.top code { color: #e2e8f0; }
nav.stages { display: flex; gap: 8px; flex-wrap: wrap; margin: 12px 0 0; }
nav.stages a { color: #e2e8f0; text-decoration: none; border: 1px solid #334155; border-radius: 999px; padding: 2px 10px; font-size: 13px; }
nav.stages a:hover { background: #1e293b; }
section { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 16px 18px; margin: 16px 0; }
section h2 { margin: 0 0 12px; font-size: 17px; display: flex; align-items: center; gap: 8px; flex-wrap: wrap; }
section h3 { margin: 18px 0 8px; font-size: 14px; color: #374151; }
table { border-collapse: collapse; width: 100%; font-size: 13px; }
th, td { text-align: left; vertical-align: top; padding: 5px 8px; border-bottom: 1px solid var(--line); }
th { color: var(--muted); font-weight: 600; white-space: nowrap; }
table.kv th { width: 170px; }
td.num { font-variant-numeric: tabular-nums; white-space: nowrap; }
code, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 12px; }
.path { word-break: break-all; }
.muted { color: var(--muted); }
.note { color: var(--muted); font-style: italic; margin: 6px 0; }
.badge { display: inline-block; border-radius: 999px; padding: 1px 9px; font-size: 12px; font-weight: 600; background: #e5e7eb; color: #374151; }
.badge.ok { background: #dcfce7; color: #166534; }
.badge.failed, .badge.error { background: #fee2e2; color: #991b1b; }
.badge.running { background: #dbeafe; color: #1e40af; }
.badge.cancelled, .badge.interrupted, .badge.warning { background: #fef3c7; color: #92400e; }
.badge.info { background: #e0f2fe; color: #075985; }
.badge.run-a { background: #dbeafe; color: #1e3a8a; }
.badge.run-b { background: #ffedd5; color: #9a3412; }
.errorbox { border-left: 4px solid #dc2626; background: #fef2f2; padding: 8px 12px; margin: 8px 0; white-space: pre-wrap; word-break: break-word; }
.charts { display: grid; grid-template-columns: repeat(auto-fill, minmax(430px, 1fr)); gap: 12px; align-items: start; }
.charts > .card { border: 1px solid var(--line); border-radius: 6px; padding: 4px 10px 8px; }
.charts > .card h3 { margin: 6px 0; }
.charts > .card table.kv th { width: auto; }
.charts > .card th, .charts > .card td { padding: 3px 6px; }
table.diff { width: auto; min-width: 60%; }
figure.chart-card { margin: 0; border: 1px solid var(--line); border-radius: 6px; padding: 6px 6px 2px; background: #fff; }
figure.chart-card figcaption { font-size: 12px; color: var(--muted); padding: 0 4px 4px; }
svg.chart { width: 100%; height: auto; display: block; }
svg.chart .grid { stroke: #eef0f3; stroke-width: 1; }
svg.chart .frame { fill: none; stroke: #cbd5e1; stroke-width: 1; }
svg.chart .tick { font-size: 10.5px; fill: #6b7280; }
svg.chart .label { font-size: 11px; fill: #6b7280; }
svg.chart .legend-text { font-size: 11px; fill: #374151; }
svg.chart .empty { font-size: 13px; fill: #9ca3af; }
svg.chart .gap { stroke: #dc2626; stroke-width: 2; }
details { margin: 10px 0 0; }
details > summary { cursor: pointer; color: var(--accent); font-weight: 600; margin: 6px 0; }
details[open] > summary { margin-bottom: 10px; }
.flow { display: flex; flex-wrap: wrap; align-items: stretch; gap: 6px; margin: 4px 0 10px; }
.flow .node { border: 1px solid var(--line); border-radius: 6px; padding: 6px 10px; background: #f9fafb; min-width: 140px; max-width: 300px; }
.flow .node b { display: block; font-size: 13px; }
.flow .node .stale { color: #b42318; font-size: 12px; }
.flow .node .mono { color: var(--muted); word-break: break-all; }
.flow .arrow { align-self: center; color: #94a3b8; font-size: 18px; }
table.samples td { width: 33%; }
.text { white-space: pre-wrap; word-break: break-word; max-height: 160px; overflow: auto; font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 12px; background: #f8fafc; border-radius: 4px; padding: 4px 6px; }
.cols { display: grid; grid-template-columns: repeat(auto-fit, minmax(360px, 1fr)); gap: 16px; }
ul.alerts { list-style: none; padding: 0; margin: 0; }
ul.alerts li { padding: 6px 0; border-bottom: 1px solid var(--line); }
ul.alerts .hint { color: var(--muted); }
footer { color: var(--muted); font-size: 12px; text-align: center; margin-top: 24px; }
@media print { details { display: block; } section { break-inside: avoid; } }
`;
