// The orchestrator: a new run executes the selected stages in order through one sidecar; the
// `stage` command runs or resumes one stage of an existing run. Both lock the run folder, keep
// run.json truthful, and shut the sidecar down whatever happens.
import { closeSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
import { basename, join } from 'node:path';
import {
  RUN_DIR_MODE,
  makeDir,
  acquireLock,
  createRun,
  dataPath,
  type DataRecord,
  loadRun,
  newRunId,
  type RunRecord,
  type RunStatus,
  runDir as runDirOf,
  stageConfig,
  stageDir as stageDirOf,
  updateRun,
} from '../artifacts/index.js';
import { Sidecar } from '../bridge/sidecar.js';
import type { CliIO } from '../cli/io.js';
import type { ResolvedConfig } from '../config/resolve.js';
import type { Config, StageName } from '../config/schema.js';
import type { DataTarget } from '../data/targets.js';
import { sourceOf, targetsForStage } from '../data/targets.js';
import { InterruptedError } from '../errors.js';
import { PACKAGE_VERSION } from '../paths.js';
import { plainProgress, type Progress } from '../ui/progress.js';
import type { Interrupt } from './interrupt.js';
import { logAppender } from './log.js';
import { checkStageData } from './preflight.js';
import { checkResumeSafety, checkResumeWorldSize } from './resume.js';
import { sidecarPreflight } from './sidecar-preflight.js';
import { sidecarModule, sidecarSpec } from './sidecar-spec.js';
import { executeStage, type StageContext } from './stage.js';
import { resumeRunCommand, stageCommand } from './commands.js';
import { resolveParent, staleness, toRun } from './lineage.js';
import { stageOrder } from '../stages/catalogue.js';

export interface RunOutcome {
  runDir: string;
  record: RunRecord;
}

/** Validate every selected stage's data into canonical files under <run>/data/. */
async function prepareData(
  config: Config,
  stages: readonly StageName[],
  dir: string,
  progress: Progress,
  writeDir: string = dir,
): Promise<Record<string, DataRecord>> {
  // The staging folder is as private as the run folder it becomes (the data may be private).
  makeDir(writeDir, { mode: RUN_DIR_MODE });
  makeDir(join(writeDir, 'data'));
  const fds = new Map<DataTarget, number>();
  // Relative to the run folder: a moved run still finds its data (lineage.inRun).
  const canonical = (t: DataTarget) => toRun(dir, dataPath(dir, t));
  try {
    const checked = await checkStageData(config, stages, (target) => {
      const fd = openSync(dataPath(writeDir, target), 'w');
      fds.set(target, fd);
      return (ex) => void writeSync(fd, `${JSON.stringify(ex)}\n`);
    }, (target, report) => progress.note(`warning: data.${target}: left out ${report.bad} bad row(s) of ${report.rows} (on_bad_rows: skip); \`posttrain validate ${target} ${report.file}\` lists them`));
    return Object.fromEntries(
      checked.map(({ target, report }) => [
        target,
        { source: report.file, sha256: report.sha256, bytes: report.bytes, rows: report.ok, format: report.format, canonical: canonical(target), skipped: report.bad, spec: dataSpec(config, target) },
      ]),
    );
  } finally {
    for (const fd of fds.values()) closeSync(fd);
  }
}

export async function startRun(resolved: ResolvedConfig, io: CliIO, interrupt: Interrupt, progress: Progress = plainProgress(io.err)): Promise<RunOutcome> {
  const { config } = resolved;
  const stages = config.runtime.stages;
  const id = newRunId();
  const dir = runDirOf(config.runtime.runs_dir, id);
  // Canonical data is written to a staging folder and moved in once the run exists: bad input
  // leaves no half-made run behind.
  const staging = join(config.runtime.runs_dir, `.staging-${id}`);
  let data: Record<string, DataRecord>;
  try {
    data = await prepareData(config, stages, dir, progress, staging);
  } catch (e) {
    // Best effort: when runs_dir itself is unusable this fails too, and must not hide why.
    try {
      rmSync(staging, { recursive: true, force: true });
    } catch {}
    throw e;
  }
  const fake = sidecarModule(io.env) !== 'posttrain_sidecar';
  let created: { record: RunRecord };
  try {
    created = createRun(config.runtime.runs_dir, {
    id,
    preset: resolved.preset,
    config_file: resolved.configFile,
    overrides: resolved.overrides,
    stages_selected: [...stages],
    config,
    versions: { posttrain: PACKAGE_VERSION, node: process.versions.node },
    data,
    ...(fake ? { fake_sidecar: true } : {}),
    });
    renameSync(join(staging, 'data'), join(dir, 'data'));
  } finally {
    rmSync(staging, { recursive: true, force: true });
  }
  const { record } = created;
  progress.runStart({ runId: id, runDir: dir, stages: [...stages] });
  const release = acquireLock(dir, `run ${stages.join(',')}`);
  let status: RunStatus = 'failed';
  try {
    await withSidecar(config, stages, io, dir, interrupt, progress, async (ctx) => {
      for (const stage of stages) ctx.record = await executeStage(ctx, stage, { resume: false });
    });
    const record = settle(dir, 'ok');
    status = record.status;
    return { runDir: dir, record };
  } catch (e) {
    status = settle(dir, statusFor(e)).status;
    throw e;
  } finally {
    release();
    progress.runEnd({ runDir: dir, status });
  }
}

export interface StageCommand {
  runsDir: string;
  run: string;
  stage: StageName;
  resume: boolean;
  /** A newly resolved config when the user passed config flags; else the run's own is used. */
  override: ResolvedConfig | null;
}

export async function runStage(cmd: StageCommand, io: CliIO, interrupt: Interrupt, progress: Progress = plainProgress(io.err)): Promise<RunOutcome> {
  const { dir } = loadRun(cmd.runsDir, cmd.run);
  return underLock(dir, `stage ${cmd.stage}${cmd.resume ? ' --resume' : ''}`, progress, async (start) => {
    // We hold the lock, so a run still marked running was left by a process that died.
    let record = loadRun(cmd.runsDir, basename(dir)).record;
    // Before run.json takes the new config: a refused resume must leave the run as it was.
    // The config this attempt runs with: the command's change, else the stage's own (or the run's).
    const own = stageConfig(record, cmd.stage);
    const config = cmd.override?.config ?? own;
    if (cmd.resume) checkResumeWorldSize(stageDirOf(dir, cmd.stage), config, cmd.stage);
    if (cmd.override && cmd.resume) checkResumeSafety(own, cmd.override.config, cmd.stage);
    const done = record.stages[cmd.stage];
    const maxSteps = stageMaxSteps(config, cmd.stage);
    if (cmd.resume && done?.status === 'ok' && (maxSteps === null || (done.steps ?? 0) >= maxSteps)) {
      // Resuming a finished stage would train past max_steps and replace a good adapter (a raised
      // max_steps is an extension and goes on).
      progress.note(
        `stage ${cmd.stage} of run ${record.id} is complete (ok${done.steps ? ` at step ${done.steps}` : ''}): nothing to resume, its adapter is untouched. ` +
          `To train it again from the start: \`${stageCommand(cmd.stage, dir)}\`; to train it longer: --resume with a higher max_steps.`,
      );
      return record;
    }
    // Refused before anything changes or a sidecar starts: a parent that is missing, failed,
    // stale or corrupted (lineage.ts) would otherwise mean training from the base model.
    resolveParent(record, dir, cmd.stage);
    // A data source that changed (path, mapping, limit…) takes a new snapshot: run.json never
    // names a file the stage did not train on.
    const missing = targetsForStage(cmd.stage).filter((t) => {
      const had = record.data[t];
      if (!had) return true;
      return had.spec !== undefined ? had.spec !== dataSpec(config, t) : had.source !== sourceOf(config, t).path;
    });
    if (missing.length > 0) {
      const data = await prepareData(config, [cmd.stage], dir, progress);
      record = updateRun(dir, (r) => Object.assign(r.data, data));
    }
    record = updateRun(dir, (r) => {
      r.status = 'running';
      if (!r.stages_selected.includes(cmd.stage)) r.stages_selected = [...r.stages_selected, cmd.stage].sort((a, b) => stageOrder(a) - stageOrder(b));
    });
    progress.runStart({ runId: record.id, runDir: dir, stages: [cmd.stage], resume: true });
    start();
    await withSidecar(config, [cmd.stage], io, dir, interrupt, progress, async (ctx) => {
      ctx.record = await executeStage(ctx, cmd.stage, { resume: cmd.resume, override: cmd.override });
    });
    const settled = settle(dir, null);
    const stale = Object.entries(staleness(settled)).filter(([, v]) => v?.stale);
    if (stale.length > 0) {
      progress.note(`now stale: ${stale.map(([s, v]) => `${s} (${v!.reason})`).join('; ')}. \`${resumeRunCommand(dir)}\` re-runs them in order.`);
    }
    return settled;
  });
}

/**
 * `posttrain run --resume`: continues a run with its own config. In pipeline order, every selected
 * stage that is ok and not stale is skipped; an interrupted, failed or cancelled one resumes from
 * its newest complete checkpoint when it still stands on its parent's current adapter, else
 * starts over; stale and pending ones run from the start. One sidecar for all of them.
 */
export async function resumeRun(cmd: { runsDir: string; run: string }, io: CliIO, interrupt: Interrupt, progress: Progress = plainProgress(io.err)): Promise<RunOutcome> {
  const { dir } = loadRun(cmd.runsDir, cmd.run);
  return underLock(dir, 'run --resume', progress, async (start) => {
    let record = loadRun(cmd.runsDir, basename(dir)).record;
    const lineage = staleness(record);
    const todo = record.stages_selected.filter((s) => record.stages[s]?.status !== 'ok' || lineage[s]?.stale);
    if (todo.length === 0) {
      progress.note(`run ${record.id}: every selected stage is ok and none is stale; nothing to resume.`);
      return settle(dir, null);
    }
    record = updateRun(dir, (r) => void (r.status = 'running'));
    progress.runStart({ runId: record.id, runDir: dir, stages: todo, resume: true });
    start();
    await withSidecar(record.config, todo, io, dir, interrupt, progress, async (ctx) => {
      for (const stage of record.stages_selected) {
        const st = ctx.record.stages[stage];
        if (st?.status === 'ok' && !staleness(ctx.record)[stage]?.stale) continue;
        ctx.record = await executeStage(ctx, stage, { resume: 'if-it-grew-from-the-parent' });
      }
    });
    return settle(dir, null);
  });
}

/**
 * What every command on an existing run shares: hold the run's lock while `body` works; once it
 * calls `start()` (the run is marked running and the view has begun), a failure settles the run's
 * status and the view ends; a refusal before that leaves the run exactly as it was.
 */
async function underLock(dir: string, what: string, progress: Progress, body: (start: () => void) => Promise<RunRecord>): Promise<RunOutcome> {
  const release = acquireLock(dir, what);
  let status: RunStatus = 'failed';
  let started = false;
  try {
    const record = await body(() => void (started = true));
    status = record.status;
    return { runDir: dir, record };
  } catch (e) {
    if (started) status = settle(dir, statusFor(e)).status;
    throw e;
  } finally {
    release();
    if (started) progress.runEnd({ runDir: dir, status });
  }
}

function statusFor(e: unknown): RunStatus {
  return e instanceof InterruptedError ? 'interrupted' : 'failed';
}

/**
 * The run's status after an attempt: ok only when every selected stage is ok; after a successful
 * attempt that left stages to do, what those stages say (a failed or interrupted one), else
 * `incomplete` — never a stale "interrupted" once the interrupted stage was resumed to the end.
 */
function settle(dir: string, status: RunStatus | null): RunRecord {
  return updateRun(dir, (r) => {
    if (status !== null && status !== 'ok') {
      r.status = status;
      return;
    }
    const states = r.stages_selected.map((s) => r.stages[s]?.status ?? 'pending');
    r.status = states.every((s) => s === 'ok')
      ? 'ok'
      : states.includes('failed')
        ? 'failed'
        : states.includes('interrupted') || states.includes('cancelled')
          ? 'interrupted'
          : 'incomplete';
  });
}

async function withSidecar(
  config: Config,
  /** The stages `body` will run: the sidecar checks what they need before any of them starts. */
  stages: readonly StageName[],
  io: CliIO,
  dir: string,
  interrupt: Interrupt,
  progress: Progress,
  body: (ctx: StageContext) => Promise<void>,
): Promise<void> {
  let sink: ((line: string) => void) | undefined;
  const runLog = logAppender(join(dir, 'sidecar.log'), progress);
  const spec = sidecarSpec(config, io.env, io.cwd);
  if (spec.module !== 'posttrain_sidecar') progress.note(`using sidecar module ${spec.module} (test hook POSTTRAIN_SIDECAR_MODULE)`);
  progress.sidecarState('starting', null);
  const starting = Sidecar.start({
    ...spec,
    onStderrLine: (l) => (sink ?? runLog)(l),
    onBridgeWarning: (m) => (sink ?? runLog)(`[bridge] ${m}`),
  });
  const offEarly = interrupt.onCancel(() => void starting.then((s) => s.kill(), () => undefined));
  let sidecar: Sidecar;
  try {
    sidecar = await starting;
  } finally {
    offEarly();
  }
  if (interrupt.requested) {
    await sidecar.kill();
    throw new InterruptedError('Interrupted before any stage started.');
  }
  // Everything after the start is inside try/finally: a failed write (disk full) must still shut
  // the sidecar down, or the CLI waits on it forever.
  try {
    progress.sidecarState('ready', `pid ${sidecar.hello.pid}`);
    runLog(`[bridge] sidecar pid ${sidecar.hello.pid} (${spec.python} -m ${spec.module}), protocol ${sidecar.hello.protocol}, device ${JSON.stringify(sidecar.hello.device ?? null)}`);
    const now: Record<string, string> = { ...sidecar.hello.versions, protocol: sidecar.hello.protocol };
    let was: Record<string, string> = {};
    let changed: string[] = [];
    const updated = updateRun(dir, (r) => {
      was = r.versions;
      changed = TRACKED_VERSIONS.filter((k) => was[k] && now[k] && was[k] !== now[k]);
      // Never overwrite what a run was trained with: the earlier set goes to versions_history.
      if (changed.length > 0) r.versions_history = [...(r.versions_history ?? []), { until: new Date().toISOString(), versions: r.versions }];
      r.versions = { ...r.versions, ...now };
    });
    if (changed.length > 0) {
      progress.note(
        `warning: this run was trained with ${changed.map((k) => `${k} ${was[k]}`).join(', ')}; this sidecar has ${changed.map((k) => `${k} ${now[k]}`).join(', ')}. ` +
          'A checkpoint resumed under other versions may not reproduce the run; run.json keeps both.',
      );
    }
    const ctx: StageContext = { sidecar, runDir: dir, record: updated, interrupt, progress, setLogSink: (s) => (sink = s) };
    // Before any stage is marked running: model config and tokenizer load, reward functions
    // import, device / vLLM / bitsandbytes are there. Problems fail with PreflightError (exit 2).
    const checked = await sidecarPreflight({ sidecar, config, stages, runDir: dir, interrupt, progress, log: (l) => (sink ?? runLog)(l), data: updated.data });
    if (checked) ctx.record = checked;
    await body(ctx);
  } finally {
    progress.sidecarState('stopping', null);
    await sidecar.shutdown();
  }
}

/** A stage's max_steps (RLHF: the policy's, the last phase), or null when it runs by epochs. */
function stageMaxSteps(config: Config, stage: StageName): number | null {
  const st = config.stages;
  if (stage === 'rlhf') return st.rlhf.policy.max_steps === null ? null : (st.rlhf.reward_model.max_steps ?? 0) + st.rlhf.policy.max_steps;
  return st[stage].max_steps;
}

/** What makes a data snapshot: the source's settings that change which rows the stage reads. */
function dataSpec(config: Config, target: DataTarget): string {
  const { path, format, columns, limit, on_bad_rows, max_chars } = sourceOf(config, target);
  return JSON.stringify({ path, format, columns, limit, on_bad_rows, max_chars });
}

/** Library versions whose change can change what a checkpoint resumes into. */
const TRACKED_VERSIONS = ['torch', 'transformers', 'trl', 'peft', 'accelerate', 'bitsandbytes'];
