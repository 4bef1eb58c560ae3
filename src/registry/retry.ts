import { setTimeout as sleep } from 'node:timers/promises';
import { isDriverError } from '../errors/driver-error.js';

/**
 * Retry with capped exponential backoff and full jitter. Only errors marked retryable are
 * retried (429, 502/503/504, resets, refused connections, timeouts); 401/403/404 and
 * verification failures are not. A `retryAfterMs` on the error (from `Retry-After`) is
 * honoured, capped at `maxDelayMs`.
 */
export interface RetryOptions {
  attempts: number;
  baseDelayMs: number;
  maxDelayMs: number;
}

export const DEFAULT_RETRY: RetryOptions = Object.freeze({ attempts: 5, baseDelayMs: 250, maxDelayMs: 8000 });

export async function withRetry<T>(
  fn: (attempt: number) => Promise<T>,
  options: RetryOptions,
  signal?: AbortSignal,
  onRetry?: (err: unknown, attempt: number, delayMs: number) => void,
): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn(attempt);
    } catch (err) {
      const retryable = isDriverError(err) && err.retryable;
      if (!retryable || attempt >= options.attempts || signal?.aborted) throw err;
      const backoff = Math.min(options.maxDelayMs, options.baseDelayMs * 2 ** (attempt - 1));
      const hinted = (err as { retryAfterMs?: number }).retryAfterMs;
      const delay = hinted !== undefined ? Math.min(options.maxDelayMs, hinted) : Math.random() * backoff;
      onRetry?.(err, attempt, delay);
      await sleep(delay, undefined, signal ? { signal } : undefined);
    }
  }
}
