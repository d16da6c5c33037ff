// One stage of a run: pick its input adapter and checkpoint, send the request, record every
// event as it arrives, and leave the stage folder and run.json in a truthful state whatever
// happens (ok, in-band error, cancel, crash, hang). Every metric event also goes through the
// health monitor; a fatal alert cancels the stage and fails it with `health/<rule>`.
import { existsSync, mkdirSync, readFileSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import {
  MetricsWriter,
  writeFileAtomic,
  newestCompleteCheckpoint,
  newestUsableCheckpoint,
  type RunRecord,
  stageConfig,
  type StageRecord,
  stageDir as stageDirOf,
  truncateMetricsAfter,
  updateStage,
  writeJsonAtomic,
} from '../artifacts/index.js';
import { StageFailedError, SidecarCrashedError, SidecarHungError, SidecarStalledError } from '../bridge/errors.js';
import type { Sidecar } from '../bridge/sidecar.js';
import type { StageResult } from '../bridge/protocol.js';
import { type Config, STAGES, type StageName } from '../config/schema.js';
import { InterruptedError, UsageError } from '../errors.js';
import { targetsForStage } from '../data/targets.js';
import type { Interrupt } from './interrupt.js';
import type { HealthAlert, Progress } from '../ui/progress.js';
import { HealthMonitor, HealthStopError } from './health.js';
import { resumeRunCommand, stageCommand } from './commands.js';
import { adapterDigest, inRun, LineageError, resolveParent, stageInputs, toRun } from './lineage.js';
import { logAppender } from './log.js';

export interface StageContext {
  sidecar: Sidecar;
  runDir: string;
  record: RunRecord;
  interrupt: Interrupt;
  progress: Progress;
  /** Log lines of the sidecar go to the running stage's sidecar.log. */
  setLogSink: (sink: ((line: string) => void) | undefined) => void;
}

/** One line of stages/<stage>/alerts.jsonl (the HTML report reads this shape). */
export interface AlertRecord extends HealthAlert {
  stage: StageName;
  /** Unix time in seconds. */
  ts: number;
}

/**
 * Before a resume: keep the alerts of steps the checkpoint covers (their steps are not replayed)
 * and return them. Best effort: alerts are a record, never a reason to refuse a resume.
 */
function keepAlertsUpTo(file: string, step: number, warn: (m: string) => void): AlertRecord[] {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return [];
  }
  const kept: string[] = [];
  const records: AlertRecord[] = [];
  for (const line of text.split('\n')) {
    let rec: AlertRecord;
    try {
      rec = JSON.parse(line) as AlertRecord;
    } catch {
      continue; // a line cut short by a crash
    }
    if (typeof rec?.step !== 'number' || rec.step > step) continue;
    kept.push(line);
    records.push(rec);
  }
  try {
    writeFileAtomic(file, kept.map((l) => `${l}\n`).join(''));
  } catch (e) {
    warn(`warning: cannot rewrite ${file} (${(e as Error).message}); it may list alerts of replayed steps twice`);
  }
  return records;
}

export async function executeStage(
  ctx: StageContext,
  stage: StageName,
  /** `if-it-grew-from-the-parent` (run --resume): resume an unfinished stage that has a complete
   * checkpoint grown from the parent adapter the run holds now, else start it over. */
  opts: { resume: boolean | 'if-it-grew-from-the-parent'; override?: { config: Config; overrides: string[] } | null },
): Promise<RunRecord> {
  const dir = stageDirOf(ctx.runDir, stage);
  // Before anything is touched. Never silently from the base model: a missing, failed, stale or changed parent is refused.
  const input = resolveParent(ctx.record, ctx.runDir, stage);
  const st = ctx.record.stages[stage];
  const earlier = st?.inputs;
  const grewFromParent = earlier === undefined || earlier.adapter_sha256 === input.adapter_sha256;
  const resume =
    opts.resume === 'if-it-grew-from-the-parent'
      ? st !== undefined && st.status !== 'ok' && st.status !== 'pending' && grewFromParent && newestCompleteCheckpoint(dir) !== null
      : opts.resume;
  if (resume && !grewFromParent) {
    throw new LineageError(
      `Cannot resume stage ${stage}: its checkpoint was trained from another ${input.parent ?? 'base'} adapter than the one the run holds now.`,
      `Start the stage over: \`${stageCommand(stage, ctx.runDir)}\`.`,
    );
  }
  let resumeFrom: string | null = null;
  let earlierAlerts: AlertRecord[] = [];
  if (resume) {
    const ckpt = newestUsableCheckpoint(dir, (c, why) => ctx.progress.note(`warning: skipping checkpoint ${c.path} (step ${c.step}): ${why}; resuming from the one before`));
    if (!ckpt) {
      throw new UsageError(
        `Nothing to resume for stage ${stage}: ${join(dir, 'checkpoints')} holds no complete checkpoint.`,
        `Run it from the start with \`${stageCommand(stage, ctx.runDir)}\`.`,
      );
    }
    resumeFrom = ckpt.path;
    // Steps after the checkpoint will be replayed: drop their old lines so none is duplicated.
    truncateMetricsAfter(join(dir, 'metrics.jsonl'), ckpt.step);
    earlierAlerts = keepAlertsUpTo(join(dir, 'alerts.jsonl'), ckpt.step, (m) => ctx.progress.note(m));
  } else if (existsSync(dir)) {
    // A fresh attempt never overwrites an earlier one: keep it beside the stage, renamed.
    const attempts = join(ctx.runDir, 'stages', '.attempts');
    mkdirSync(attempts, { recursive: true });
    renameSync(dir, join(attempts, `${stage}-${new Date().toISOString().replace(/[:.]/g, '-')}`));
  }
  mkdirSync(dir, { recursive: true });

  const inputAdapter = input.adapter;
  const started = new Date();
  let record = updateStage(ctx.runDir, stage, {
    status: 'running',
    started: started.toISOString(),
    finished: null,
    input_adapter: inputAdapter === null ? null : toRun(ctx.runDir, inputAdapter),
    output_adapter: null,
    output_sha256: null,
    resumed_from: resumeFrom === null ? null : toRun(ctx.runDir, resumeFrom),
    inputs: stageInputs(ctx.record, stage, input, opts.override?.config ?? stageConfig(ctx.record, stage)),
    error: null,
    // This attempt's own config, when the command changed it: recorded on the stage only.
    ...(opts.override ? { config: opts.override.config, overrides: opts.override.overrides } : {}),
  });
  const config = stageConfig(record, stage);

  const logFile = join(dir, 'sidecar.log');
  const log = logAppender(logFile, ctx.progress);
  ctx.setLogSink(log);
  const metrics = new MetricsWriter(join(dir, 'metrics.jsonl'));
  let lastStep = 0;
  // Rules that already warned before the checkpoint stay quiet on resume (one alert per stage).
  const monitor = new HealthMonitor(stage, config.monitor, config, earlierAlerts.map((a) => a.rule));
  const alertLog = logAppender(join(dir, 'alerts.jsonl'), ctx.progress);
  // The stage's alerts for summary.json: those kept from before the checkpoint, then this attempt's.
  const alerts: AlertRecord[] = [...earlierAlerts];
  // Assigned inside the metric handler; the cast keeps TS from narrowing it to null here.
  let fatal = null as HealthAlert | null;
  const raise = (a: HealthAlert) => {
    ctx.progress.alert(stage, a);
    const rec: AlertRecord = { stage, step: a.step, rule: a.rule, severity: a.severity, message: a.message, hint: a.hint, ts: Date.now() / 1000 };
    alerts.push(rec);
    alertLog(JSON.stringify(rec));
    log(`[alert] ${a.severity} ${a.rule} at step ${a.step}: ${a.message} Hint: ${a.hint}`);
    if (a.severity === 'fatal' && fatal === null) {
      fatal = a;
      // The sidecar stops at the next step boundary and saves a checkpoint, as for Ctrl-C.
      log(`[alert] stopping stage ${stage}: cancel sent`);
      ctx.sidecar.cancel();
    }
  };
  const offCancel = ctx.interrupt.onCancel(() => ctx.sidecar.cancel());
  const offForce = ctx.interrupt.onForce(() => void ctx.sidecar.kill());
  ctx.progress.stageStart(stage, config, resumeFrom);

  const finish = (patch: Partial<StageRecord>) => (record = updateStage(ctx.runDir, stage, { finished: new Date().toISOString(), steps: lastStep, ...patch }));

  let result: StageResult;
  try {
    result = await ctx.sidecar.runStage(
      {
        stage,
        config,
        stage_dir: dir,
        data: Object.fromEntries(targetsForStage(stage).map((t) => [t, inRun(ctx.runDir, record.data[t]?.canonical) ?? ''])),
        init_adapter: inputAdapter,
        resume_from: resumeFrom,
      },
      {
        onMetric: (e) => {
          lastStep = Math.max(lastStep, e.step);
          metrics.append({ stage, step: e.step, ts: Date.now() / 1000, values: e.values });
          ctx.progress.metric(stage, e.step, e.values);
          for (const a of monitor.observe(e.step, e.values)) raise(a);
        },
        onLog: (e) => {
          log(`[${e.level}] ${e.message}`);
          ctx.progress.log(stage, e.level, e.message);
        },
        onState: (e) => ctx.progress.state(stage, e.state, e.message ?? null),
        onCheckpoint: (e) => log(`[checkpoint] step ${e.step}: ${e.path}`),
      },
    );
  } catch (e) {
    const code = e instanceof SidecarStalledError ? 'sidecar_stalled' : e instanceof SidecarHungError ? 'sidecar_hung' : e instanceof SidecarCrashedError ? 'sidecar_crashed' : 'controller_error';
    finish({ status: ctx.interrupt.requested ? 'interrupted' : 'failed', error: { code, message: (e as Error).message.split('\n')[0]! } });
    if (ctx.interrupt.requested) throw new InterruptedError(`Stage ${stage} was stopped.`).continueWith(resumeRunCommand(ctx.runDir));
    if (e instanceof SidecarHungError || e instanceof SidecarCrashedError) e.continueWith(resumeRunCommand(ctx.runDir));
    throw e;
  } finally {
    metrics.close();
    offCancel();
    offForce();
    ctx.setLogSink(undefined);
  }

  const finished = new Date();
  // A fatal alert fails the stage whatever the sidecar answered: cancelled (the usual case), or
  // ok when the stop came after the last step or the sidecar ignored it.
  const stop: HealthAlert | null = result.status === 'error' ? null : fatal;
  const status = stop ? 'failed' : result.status;
  const summary = {
    stage,
    status,
    started: started.toISOString(),
    finished: finished.toISOString(),
    wall_s: (finished.getTime() - started.getTime()) / 1000,
    // Relative to the run folder, like run.json (a moved run stays readable).
    input_adapter: inputAdapter === null ? null : toRun(ctx.runDir, inputAdapter),
    output_adapter: status === 'ok' ? toRun(ctx.runDir, join(dir, 'adapter')) : null,
    resumed_from: resumeFrom === null ? null : toRun(ctx.runDir, resumeFrom),
    data: Object.fromEntries(targetsForStage(stage).map((t) => [t, record.data[t] ?? null])),
    sidecar: result.summary ?? {},
    error: stop ? { code: `health/${stop.rule}`, message: stop.message, retryable: false, traceback: null } : (result.error ?? null),
    alerts,
  };
  writeJsonAtomic(join(dir, 'summary.json'), summary);
  ctx.progress.stageEnd(stage, status, summary.wall_s);

  if (stop) {
    finish({ status: 'failed', error: { code: `health/${stop.rule}`, message: stop.message } });
    throw new HealthStopError(stage, stop, { runDir: ctx.runDir, checkpoint: newestCompleteCheckpoint(dir) !== null, monitor: config.monitor });
  }

  if (result.status === 'ok') {
    const adapter = join(dir, 'adapter');
    return finish({ status: 'ok', output_adapter: toRun(ctx.runDir, adapter), output_sha256: adapterDigest(adapter) });
  }
  if (result.status === 'cancelled') {
    finish({ status: 'cancelled' });
    // Stopped inside a call that never reached a step boundary (a reward function): no new checkpoint.
    const inside = result.summary?.cancelled_in;
    const how = typeof inside === 'string' ? `${inside}; it resumes from its last complete checkpoint, if any` : 'a checkpoint was saved';
    throw new InterruptedError(`Stage ${stage} was cancelled; ${how}.`).continueWith(resumeRunCommand(ctx.runDir));
  }
  const info = result.error ?? { code: 'unknown', message: 'the sidecar reported an error without details', retryable: false, traceback: null };
  if (info.traceback) log(info.traceback);
  finish({ status: 'failed', error: { code: info.code, message: info.message } });
  const failed = new StageFailedError(stage, info);
  throw info.retryable ? failed.continueWith(resumeRunCommand(ctx.runDir), 'Retry with') : failed;
}
