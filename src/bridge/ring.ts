/** The last `capacity` items pushed: a bounded stderr tail that costs nothing on long runs. */
export class RingBuffer<T = string> {
  private readonly items: T[] = [];
  constructor(private readonly capacity: number) {}

  push(item: T): void {
    this.items.push(item);
    if (this.items.length > this.capacity) this.items.shift();
  }

  tail(n = this.capacity): T[] {
    return this.items.slice(-n);
  }
}
