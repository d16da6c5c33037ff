// The run/stage artifact store: run folders, run.json, locks, metrics, checkpoints.
export * from './atomic.js';
export * from './checkpoints.js';
export * from './errors.js';
export * from './layout.js';
export * from './lock.js';
export * from './metrics.js';
export * from './runs.js';
