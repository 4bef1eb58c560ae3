/**
 * Per-key mutual exclusion: calls for the same key run one after another, calls for different
 * keys in parallel. No global lock. Keys: a volume target (node service), a content hash
 * (ModelStore's file sharing).
 */
export class KeyedLocks {
  private readonly tails = new Map<string, Promise<unknown>>();

  async run<T>(key: string, work: () => Promise<T>): Promise<T> {
    const previous = this.tails.get(key) ?? Promise.resolve();
    const current = previous.then(work, work);
    const tail = current.catch(() => undefined);
    this.tails.set(key, tail);
    try {
      return await current;
    } finally {
      if (this.tails.get(key) === tail) this.tails.delete(key);
    }
  }
}
