import { SingleFlight } from '../concurrency/single-flight.js';
import { formatBytes } from '../config/quantity.js';
import { DriverError } from '../errors/driver-error.js';
import type { PullProgress } from '../artifacts/model-puller.js';

/**
 * Background pulls, one per key however many callers ask. A pull is started by the first
 * caller and then belongs to no RPC: callers only wait on it, for a bounded time, and leaving
 * the wait (kubelet's deadline, a cancelled call) never cancels the pull. Kubelet's retry asks
 * for the same key and joins the job that is still running.
 */
export interface PullJob<T> {
  readonly key: string;
  readonly description: string;
  readonly startedAt: number;
  readonly progress: PullProgress;
  readonly promise: Promise<T>;
}

export class PullTracker<T> {
  /** Callers pass no signal: a job is never abandoned, whoever stops waiting on it. */
  private readonly flights = new SingleFlight<T, PullJob<T>>();

  /** The running job for `key`, or a new one running `run`. */
  start(key: string, description: string, run: (progress: PullProgress) => Promise<T>): PullJob<T> {
    const existing = this.flights.state(key);
    if (existing) return existing;
    const progress: PullProgress = { doneBytes: 0, totalBytes: 0 };
    let promise!: Promise<T>;
    const job: PullJob<T> = {
      key,
      description,
      startedAt: Date.now(),
      progress,
      get promise() {
        return promise;
      },
    };
    promise = this.flights.run(key, () => run(progress), { state: job });
    // The job may finish (or fail) while nobody waits; a failure is reported to whoever
    // waits and to the next caller, never as an unhandled rejection.
    promise.catch(() => undefined);
    return job;
  }

  get(key: string): PullJob<T> | undefined {
    return this.flights.state(key);
  }

  get size(): number {
    return this.flights.size;
  }

  list(): PullJob<T>[] {
    return this.flights.states();
  }
}

/**
 * Wait for a job at most `waitMs`. Past that, a retryable PULL_IN_PROGRESS error whose
 * message is what `kubectl describe pod` shows: `pulling … 12.3 GiB of 30.0 GiB (41 percent)`.
 */
export async function waitForJob<T>(job: PullJob<T>, waitMs: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<'timeout'>((resolve) => {
    timer = setTimeout(() => resolve('timeout'), Math.max(0, waitMs));
  });
  try {
    const winner = await Promise.race([job.promise, timeout]);
    if (winner === 'timeout') {
      throw new DriverError('PULL_IN_PROGRESS', `${describeProgress(job)}; the pull continues in the background and the next retry picks it up`, {
        retryable: true,
      });
    }
    return winner as T;
  } finally {
    clearTimeout(timer);
  }
}

function describeProgress(job: PullJob<unknown>): string {
  const { doneBytes, totalBytes } = job.progress;
  if (totalBytes <= 0) return `pulling ${job.description}: resolving`;
  const percent = Math.min(100, Math.floor((doneBytes / totalBytes) * 100));
  // No '%' sign: kubelet passes the message to its event recorder as a format string, so
  // "41% (" reached `kubectl describe pod` as "41%!((MISSING)" (seen on a real kubelet 1.32).
  return `pulling ${job.description}: ${formatBytes(doneBytes)} of ${formatBytes(totalBytes)} (${percent} percent)`;
}
