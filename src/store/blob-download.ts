import type { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Flight, Waiter } from '../concurrency/single-flight.js';
import { DriverError, isDriverError } from '../errors/driver-error.js';
import { DIRECT_IO_ALIGNMENT } from '../fs/piece-pool.js';
import type { Logger } from '../log/logger.js';
import type { Descriptor } from '../registry/oci-types.js';
import type { Retrier, RetryStreak } from '../registry/retry.js';
import type { BlobFile } from './blob-file.js';
import { createBlobHasher } from './blob-hasher.js';
import { streamInto, type IngestProgress } from './blob-stream.js';
import { classifyFsError, isLocalFsFailure } from '../errors/fs-error.js';

/**
 * Opens the blob's bytes from `offset`. Returns the offset the server honoured: 0 when it
 * ignored the Range request (then the bytes on disk are rewritten from the start).
 * `recycle`, when given, takes back body chunks once they are written and hashed (the
 * registry client reuses their memory). `attempt` is the attempt in the current retry streak
 * (1 first): the registry client asks mirrors on the first only. One pass, no retries of its
 * own: the resume loop below is the retry layer.
 */
export type BlobOpener = (
  offset: number,
  signal: AbortSignal,
  attempt: number,
) => Promise<{ body: Readable; offset: number; recycle?: (chunks: readonly Buffer[]) => void }>;

/** What each caller of one blob's download brings: its source (credentials, mirrors) and its listener. */
export interface Ingester {
  open: BlobOpener;
  onBytes?: ((progress: IngestProgress) => void) | undefined;
  /** Its registry client's retry layer (registry/retry.ts). */
  retrier: Retrier;
}

export type FillResult = 'ok' | 'mismatch' | 'mismatch-after-resume';

/**
 * Fill `file` with the blob, resuming from its current size: the retry layer of blob
 * downloads (policy and bounds: registry/retry.ts). A failed stream is retried from the bytes
 * already on disk; bytes received start a new streak, so a registry that dies and comes back
 * is resumed, not restarted.
 *
 * The download is shared (content-store.ts): it reads through the first waiter's opener. When
 * that source fails for good (refused credentials, a repository without the blob, a streak
 * spent) and other waiters remain, that waiter alone leaves with its own error and the next
 * one's opener carries on from the same bytes; the last waiter's failure ends the download.
 */
export async function fillBlob(
  desc: Descriptor,
  path: string,
  file: BlobFile,
  flight: Flight<undefined, Ingester>,
  logger: Logger | undefined,
): Promise<FillResult> {
  const { signal } = flight;
  const emit = (progress: IngestProgress): void => {
    for (const waiter of flight.waiters()) waiter.context.onBytes?.(progress);
  };
  let position = await file.size();
  // Resume at a block boundary, so the rest can still be written with O_DIRECT (at most
  // 4 KiB is fetched again).
  const resumeAt = position > desc.size ? 0 : position - (position % DIRECT_IO_ALIGNMENT);
  if (resumeAt !== position) {
    await file.truncate(resumeAt);
    position = resumeAt;
  }
  const resumedFrom = position;
  // A resumed prefix is hashed from the file once; the rest as it is written.
  let hasher = createBlobHasher(position > 0 ? { path, length: position } : undefined);
  let restarted = false;
  emit({ doneBytes: position, receivedBytes: 0 });

  /** Whose opener reads now, and its streak of failures (a new source starts a new streak). */
  let source: { waiter: Waiter<Ingester>; streak: RetryStreak } | undefined;
  let digested = false;
  try {
    while (position < desc.size) {
      signal.throwIfAborted();
      const first = flight.waiters()[0]!; // the flight is aborted once none is left
      if (first !== source?.waiter) source = { waiter: first, streak: first.context.retrier.streak() };
      const { waiter, streak } = source;
      const before = position;
      try {
        const { body, offset, recycle } = await waiter.context.open(position, signal, streak.attempt);
        if (offset !== position) {
          if (offset !== 0) {
            body.destroy();
            throw new DriverError('REGISTRY_PROTOCOL', `registry answered blob ${desc.digest} from offset ${offset} when ${position} was asked`);
          }
          // Range ignored: the body starts at 0; rewrite from the start.
          hasher.discard();
          position = 0;
          await file.truncate(0);
          hasher = createBlobHasher();
          restarted = true;
          emit({ doneBytes: 0, receivedBytes: 0 });
        }
        const cursor = { position };
        try {
          await streamInto(body, file, cursor, desc.size, hasher, emit, signal, recycle);
        } finally {
          // Bytes written and hashed before a failure count: the retry resumes after them.
          position = cursor.position;
        }
        if (position > desc.size) return resumedFrom > 0 ? 'mismatch-after-resume' : 'mismatch';
        if (position < desc.size) throw new Error(`stream ended at ${position} of ${desc.size} bytes`);
      } catch (err) {
        if (signal.aborted) throw signal.reason ?? err;
        // A full or broken local disk is not the registry's fault: retrying cannot help.
        if (isLocalFsFailure(err)) throw classifyFsError(err, `downloading blob ${desc.digest}`);
        if (position > before) streak.reset();
        const delayMs = isDriverError(err) && !err.retryable ? undefined : streak.failed(err);
        if (delayMs === undefined) {
          const final = isDriverError(err)
            ? err
            : new DriverError('REGISTRY_UNAVAILABLE', `download of blob ${desc.digest} failed ${streak.attempt - 1} times in a row at byte ${position} of ${desc.size}: ${(err as Error).message}; the partial download is kept and resumes on the next try`, { cause: err });
          if (flight.waiters().length === 1) throw final;
          // This caller's source failed: its own cause, for it alone; the next one carries on.
          logger?.warn({ digest: desc.digest, position, size: desc.size, err: final.message }, "one caller's source of a shared blob download failed; continuing with the next caller's");
          waiter.leave(final);
          continue;
        }
        logger?.warn({ digest: desc.digest, position, size: desc.size, attempt: streak.attempt - 1, delayMs: Math.round(delayMs), err: (err as Error).message }, 'blob download interrupted; resuming from the bytes on disk');
        await sleep(delayMs, undefined, { signal });
      }
    }
    digested = true;
    const actual = await hasher.digest();
    if (actual === desc.digest) return 'ok';
    return resumedFrom > 0 && !restarted ? 'mismatch-after-resume' : 'mismatch';
  } finally {
    if (!digested) hasher.discard();
  }
}
