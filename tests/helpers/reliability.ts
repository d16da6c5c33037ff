// The reliability matrix (docs/RELIABILITY.md) is produced by the tests themselves: each fault or
// hostile-input test records what it injected and what survived; the global teardown renders the
// rows collected in this run into the document.
import { appendFileSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { PACKAGE_ROOT } from '../../src/paths.js';

export const RELIABILITY_ROWS = join(PACKAGE_ROOT, 'test-artifacts', 'reliability.jsonl');

export interface ReliabilityRow {
  /** What was done to the system, e.g. "sidecar SIGKILL at a random step". */
  fault: string;
  /** Stage, or "-" / an input kind ("config", "jsonl", "protocol") for non-stage faults. */
  stage: string;
  /** How many times the fault was injected (or bad inputs tried) in this test. */
  injected: number;
  /** How many of those ended as required (clean error / exact resume / no crash). */
  survived: number;
  /** Metric lines or data rows lost (must be 0). */
  lost: number;
  /** One line: what happened. */
  outcome: string;
  /** The test that produced the row. */
  test: string;
}

export function recordReliability(row: ReliabilityRow): void {
  mkdirSync(dirname(RELIABILITY_ROWS), { recursive: true });
  appendFileSync(RELIABILITY_ROWS, `${JSON.stringify(row)}\n`);
}
