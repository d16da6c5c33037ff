// Ctrl-C semantics, independent of where the signal comes from (a real SIGINT/SIGTERM, or a
// test calling trigger()): the first asks the running stage to stop at a step boundary and save
// a checkpoint; the second forces the sidecar down (SIGTERM, then SIGKILL).
export class Interrupt {
  private count = 0;
  private cancelHandlers: (() => void)[] = [];
  private forceHandlers: (() => void)[] = [];

  get requested(): boolean {
    return this.count > 0;
  }

  onCancel(fn: () => void): () => void {
    this.cancelHandlers.push(fn);
    return () => (this.cancelHandlers = this.cancelHandlers.filter((f) => f !== fn));
  }

  onForce(fn: () => void): () => void {
    this.forceHandlers.push(fn);
    return () => (this.forceHandlers = this.forceHandlers.filter((f) => f !== fn));
  }

  trigger(): void {
    this.count++;
    for (const f of this.count === 1 ? this.cancelHandlers : this.forceHandlers) f();
  }

  /** Route SIGINT and SIGTERM to this Interrupt until the returned function is called. */
  listen(notice: (text: string) => void): () => void {
    const handler = (signal: NodeJS.Signals) => {
      notice(
        this.count === 0
          ? `\n${signal}: stopping at the next step boundary and saving a checkpoint (press Ctrl-C again to force)\n`
          : `\n${signal} again: stopping the sidecar now\n`,
      );
      this.trigger();
    };
    process.on('SIGINT', handler);
    process.on('SIGTERM', handler);
    return () => {
      process.off('SIGINT', handler);
      process.off('SIGTERM', handler);
    };
  }
}
