import { formatBytes } from '../config/quantity.js';
import { DriverError } from '../errors/driver-error.js';
import type { Logger } from '../log/logger.js';
import type { Metrics } from '../metrics/metrics.js';

/** What the budget needs from the model store. */
export interface EvictableStore {
  list(): Promise<Array<{ key: string; sizeBytes: number; lastUsed: string | number | Date }>>;
  remove(key: string): Promise<void>;
  /** Drop blobs no remaining model references; frees what `remove` left behind. */
  dropUnreferencedBlobs(): Promise<unknown>;
  /**
   * Bytes the cache occupies on disk now, without the bytes of running pulls (their
   * reservations stand for them). Asked on every reservation and after every eviction: a
   * running account (ModelStore), never a walk of the cache.
   */
  usedBytes(): Promise<number>;
}

export interface Reservation {
  release(): void;
}

/**
 * The cache size budget. Before a pull starts it reserves the bytes the pull will add; when
 * the cache would exceed the budget, least-recently-used models that no volume uses (and no
 * pull is writing) are evicted first. A pull that cannot fit even then fails with NO_SPACE
 * before a byte is downloaded, so it leaves nothing behind.
 *
 * Free space is `budget - used - reserved`: `used` is the store's running account of what is
 * committed (published models, blobs), `reserved` the bytes of the pulls running now, so a
 * partial download on disk counts once, in its pull's reservation.
 */
export class CacheBudget {
  private reserved = 0;
  private queue: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly options: {
      budget: number | undefined;
      store: EvictableStore;
      /** Model keys that must not be evicted: mounted by a volume, being pulled, or pinned by a ModelCache. */
      pinned: () => Set<string>;
      /** Told of every eviction (a ModelCache warm that held the model must stop saying Ready). */
      onEvicted?: (key: string) => void;
      metrics: Metrics;
      logger: Logger;
    },
  ) {}

  /** Serialized: two pulls must not both count the same free space. */
  reserve(description: string, bytes: number): Promise<Reservation> {
    const next = this.queue.then(() => this.reserveNow(description, bytes));
    this.queue = next.catch(() => undefined);
    return next;
  }

  private async reserveNow(description: string, bytes: number): Promise<Reservation> {
    const { budget, store, metrics, logger } = this.options;
    let released = false;
    const reservation = (): Reservation => {
      this.reserved += bytes;
      return {
        release: () => {
          if (released) return;
          released = true;
          this.reserved -= bytes;
        },
      };
    };
    if (budget === undefined) return reservation();
    if (bytes > budget) {
      throw new DriverError('NO_SPACE', `${description} needs ${formatBytes(bytes)}, more than the whole cache budget of ${formatBytes(budget)}; raise cacheBudget`);
    }
    let used = await store.usedBytes();
    if (used + this.reserved + bytes <= budget) return reservation();

    const pinned = this.options.pinned();
    const candidates = (await store.list())
      .filter((model) => !pinned.has(model.key))
      .sort((a, b) => new Date(a.lastUsed).getTime() - new Date(b.lastUsed).getTime());
    for (const model of candidates) {
      if (used + this.reserved + bytes <= budget) break;
      logger.info({ model: model.key, sizeBytes: model.sizeBytes, for: description }, 'evicting least recently used model');
      await store.remove(model.key);
      metrics.evictions.inc();
      this.options.onEvicted?.(model.key);
      await store.dropUnreferencedBlobs();
      used = await store.usedBytes();
    }
    metrics.cacheBytes.set(used);
    if (used + this.reserved + bytes > budget) {
      throw new DriverError(
        'NO_SPACE',
        `${description} needs ${formatBytes(bytes)} but the cache budget of ${formatBytes(budget)} has ${formatBytes(Math.max(0, budget - used - this.reserved))} free after evicting every unused model; free models in use or raise cacheBudget`,
      );
    }
    return reservation();
  }
}
