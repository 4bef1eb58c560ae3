import { setTimeout as sleep } from 'node:timers/promises';
import { isDriverError } from '../errors/driver-error.js';

/**
 * The one retry layer of registry traffic: one policy, one backoff, one count. Manifests are
 * retried here (`Retrier.run`); a blob download is retried by the content store's resume loop
 * (store/blob-download.ts) with a streak from here, because a retry of a blob resumes from the
 * bytes on disk; the registry client itself never retries a blob open. Nothing else retries.
 *
 * A *streak* is the attempts in a row that made no progress. It ends, and the last error is
 * reported, at the `attempts`-th failed attempt or once `maxElapsedMs` has passed since the
 * streak began, whichever comes first; a blob stream that delivered bytes before it broke
 * starts a new streak (a registry that dies and comes back is resumed, not given up on).
 * Backoff is capped exponential with full jitter; a `retryAfterMs` on the error (from
 * `Retry-After`) is honoured, capped at `maxDelayMs`. Every retry is counted in
 * `model_csi_registry_retries_total{reason}` by the Retrier's owner (registry-client.ts).
 */
export interface RetryPolicy {
  /** Failed attempts in a row, the first one included, before giving up. */
  attempts: number;
  baseDelayMs: number;
  maxDelayMs: number;
  /** Longest a streak may last, from its first attempt, before giving up. */
  maxElapsedMs: number;
}

/** Documented in docs/architecture.md ("Retries"): 5 attempts, ≤ 3.75 s of backoff, ≤ 60 s a streak. */
export const DEFAULT_RETRY: RetryPolicy = Object.freeze({ attempts: 5, baseDelayMs: 250, maxDelayMs: 8000, maxElapsedMs: 60_000 });

/** Told of every retry about to happen (not of the final failure). */
export type RetryListener = (retry: { err: unknown; reason: string; attempt: number; delayMs: number }) => void;

/** The label a retry is counted under: the catalog code, or a broken stream. */
function retryReason(err: unknown): string {
  return isDriverError(err) ? err.code : 'STREAM_BROKEN';
}

/** Failed attempts in a row without progress, against one policy. */
export class RetryStreak {
  private failures = 0;
  private startedAt: number;

  constructor(
    private readonly policy: RetryPolicy,
    private readonly listener: RetryListener | undefined,
    private readonly now: () => number = Date.now,
  ) {
    this.startedAt = now();
  }

  /** The attempt about to be made: 1 for the first of the streak. */
  get attempt(): number {
    return this.failures + 1;
  }

  /** Progress was made: the next failure begins a new streak. */
  reset(): void {
    this.failures = 0;
    this.startedAt = this.now();
  }

  /**
   * The current attempt failed with a retryable `err`: the delay before the next one, or
   * undefined when the streak is spent (the caller reports `err`).
   */
  failed(err: unknown): number | undefined {
    this.failures++;
    if (this.failures >= this.policy.attempts) return undefined;
    const backoff = Math.min(this.policy.maxDelayMs, this.policy.baseDelayMs * 2 ** (this.failures - 1));
    const hinted = (err as { retryAfterMs?: number }).retryAfterMs;
    const delayMs = hinted !== undefined ? Math.min(this.policy.maxDelayMs, hinted) : Math.random() * backoff;
    if (this.now() + delayMs - this.startedAt > this.policy.maxElapsedMs) return undefined;
    this.listener?.({ err, reason: retryReason(err), attempt: this.failures, delayMs });
    return delayMs;
  }
}

/** A policy and who is told of each retry; one per registry client, shared with its blob downloads. */
export class Retrier {
  constructor(
    readonly policy: RetryPolicy = DEFAULT_RETRY,
    private readonly listener?: RetryListener,
  ) {}

  streak(): RetryStreak {
    return new RetryStreak(this.policy, this.listener);
  }

  /** `fn` until it succeeds, fails with an error not marked retryable, or the streak is spent. */
  async run<T>(fn: (attempt: number) => Promise<T>, signal?: AbortSignal, onRetry?: RetryListener): Promise<T> {
    const streak = this.streak();
    for (;;) {
      try {
        return await fn(streak.attempt);
      } catch (err) {
        if (!(isDriverError(err) && err.retryable) || signal?.aborted) throw err;
        const attempt = streak.attempt;
        const delayMs = streak.failed(err);
        if (delayMs === undefined) throw err;
        onRetry?.({ err, reason: retryReason(err), attempt, delayMs });
        await sleep(delayMs, undefined, signal ? { signal } : undefined);
      }
    }
  }
}
