/**
 * Single flight per key: concurrent callers with the same key share one running operation;
 * different keys run in parallel (no global mutex, as containerd's per-ref ingest locks).
 */
export class SingleFlight<T> {
  private readonly running = new Map<string, Promise<T>>();

  run(key: string, operation: () => Promise<T>): Promise<T> {
    const existing = this.running.get(key);
    if (existing) return existing;
    const flight = operation().finally(() => this.running.delete(key));
    this.running.set(key, flight);
    return flight;
  }

  has(key: string): boolean {
    return this.running.has(key);
  }

  keys(): string[] {
    return [...this.running.keys()];
  }
}
