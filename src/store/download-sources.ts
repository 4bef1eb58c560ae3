import { setTimeout as sleep } from 'node:timers/promises';
import type { Flight, Waiter } from '../concurrency/single-flight.js';
import { DriverError, isDriverError } from '../errors/driver-error.js';
import { classifyFsError, isLocalFsFailure } from '../errors/fs-error.js';
import type { Logger } from '../log/logger.js';
import type { Descriptor } from '../registry/oci-types.js';
import type { RetryStreak } from '../registry/retry.js';
import type { Ingester } from './blob-download.js';

/** The source a read goes through: a waiter's opener and that source's streak of failures. */
export interface DownloadSource {
  waiter: Waiter<Ingester>;
  streak: RetryStreak;
}

/**
 * Whose source a shared blob download reads through, and what a failed read does: the retry
 * policy applied to downloads (registry/retry.ts), for the single stream (blob-download.ts)
 * and the ranged pieces (ranged-download.ts) alike.
 *
 * The download reads through the first waiter's opener. When that source fails for good
 * (refused credentials, a repository without the blob, a streak spent) and other waiters
 * remain, that waiter alone leaves with its own error and the next one's opener carries on
 * from the same bytes; the last waiter's failure ends the download. Failures of a source that
 * has already been replaced (another connection saw it fail first) do not count against the
 * next one.
 */
export class DownloadSources {
  private current: DownloadSource | undefined;

  constructor(
    private readonly desc: Descriptor,
    private readonly flight: Flight<undefined, Ingester>,
    private readonly logger: Logger | undefined,
  ) {}

  /** The source to read through now. The flight is aborted once no waiter is left. */
  now(): DownloadSource {
    const first = this.flight.waiters()[0]!;
    if (first !== this.current?.waiter) this.current = { waiter: first, streak: first.context.retrier.streak() };
    return this.current;
  }

  /**
   * A read through `source` failed with `err` at byte `position`; `progressed` when it
   * delivered bytes first (a new streak). Waits out the backoff before the caller reads again,
   * or throws what the download fails with: the caller's abort, a local disk failure (never
   * the registry's fault, so never retried), or the last source's final error.
   */
  async failed(source: DownloadSource, err: unknown, position: number, progressed: boolean): Promise<void> {
    const { signal } = this.flight;
    if (signal.aborted) throw signal.reason ?? err;
    if (isLocalFsFailure(err)) throw classifyFsError(err, `downloading blob ${this.desc.digest}`);
    if (source !== this.current) return; // replaced already: the next read uses the new source
    const { waiter, streak } = source;
    if (progressed) streak.reset();
    const delayMs = isDriverError(err) && !err.retryable ? undefined : streak.failed(err);
    if (delayMs === undefined) {
      const final = isDriverError(err)
        ? err
        : new DriverError('REGISTRY_UNAVAILABLE', `download of blob ${this.desc.digest} failed ${streak.attempt - 1} times in a row at byte ${position} of ${this.desc.size}: ${(err as Error).message}; the partial download is kept and resumes on the next try`, { cause: err });
      if (this.flight.waiters().length === 1) throw final;
      // This caller's source failed: its own cause, for it alone; the next one carries on.
      this.logger?.warn({ digest: this.desc.digest, position, size: this.desc.size, err: final.message }, "one caller's source of a shared blob download failed; continuing with the next caller's");
      waiter.leave(final);
      return;
    }
    this.logger?.warn({ digest: this.desc.digest, position, size: this.desc.size, attempt: streak.attempt - 1, delayMs: Math.round(delayMs), err: (err as Error).message }, 'blob download interrupted; resuming from the bytes on disk');
    await sleep(delayMs, undefined, { signal });
  }
}
