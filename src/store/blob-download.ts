import type { Readable } from 'node:stream';
import type { RegistryConnections } from '../concurrency/connection-budget.js';
import type { Flight } from '../concurrency/single-flight.js';
import { DriverError } from '../errors/driver-error.js';
import { DIRECT_IO_ALIGNMENT } from '../fs/piece-pool.js';
import type { Logger } from '../log/logger.js';
import type { Descriptor } from '../registry/oci-types.js';
import type { Retrier } from '../registry/retry.js';
import type { BlobFile } from './blob-file.js';
import { createBlobHasher } from './blob-hasher.js';
import { streamInto, type IngestProgress } from './blob-stream.js';
import { DownloadSources } from './download-sources.js';

/**
 * Opens the blob's bytes from `offset`, to its end or, with `end`, the piece [offset, end).
 * Returns the offset the server honoured: 0 when it ignored the Range request (then the bytes
 * on disk are rewritten from the start), and `end`, the end of the bytes the body carries
 * (absent: the blob's end; a piece asked for and not answered as one means the source does not
 * serve ranges). `recycle`, when given, takes back body chunks once they are written and hashed
 * (the registry client reuses their memory). `attempt` is the attempt in the current retry
 * streak (1 first): the registry client asks mirrors on the first only. One pass, no retries
 * of its own: the download loops below are the retry layer.
 */
export type BlobOpener = (
  offset: number,
  signal: AbortSignal,
  attempt: number,
  end?: number,
) => Promise<{ body: Readable; offset: number; end?: number; recycle?: (chunks: readonly Buffer[]) => void }>;

/** What each caller of one blob's download brings: its source (credentials, mirrors) and its listener. */
export interface Ingester {
  open: BlobOpener;
  onBytes?: ((progress: IngestProgress) => void) | undefined;
  /** Its registry client's retry layer (registry/retry.ts). */
  retrier: Retrier;
  /** The connection slots of its registry (concurrency/connection-budget.ts). */
  connections: RegistryConnections;
}

export type FillResult = 'ok' | 'mismatch' | 'mismatch-after-resume';

/**
 * Fill `file` with the blob as one stream, resuming from its current size: a failed stream is
 * retried from the bytes already on disk (download-sources.ts: whose source, what a failure
 * does); bytes received start a new streak, so a registry that dies and comes back is
 * resumed, not restarted. Each stream holds one of its registry's connection slots.
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

  const sources = new DownloadSources(desc, flight, logger);
  let digested = false;
  try {
    while (position < desc.size) {
      signal.throwIfAborted();
      const source = sources.now();
      const before = position;
      const slot = await source.waiter.context.connections.acquire(signal);
      try {
        const { body, offset, recycle } = await source.waiter.context.open(position, signal, source.streak.attempt);
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
        let overran: boolean;
        try {
          overran = await streamInto(body, file, cursor, { end: desc.size, accepted: position }, hasher, emit, signal, recycle);
        } finally {
          // Bytes written and hashed before a failure count: the retry resumes after them.
          position = cursor.position;
        }
        // More bytes than the descriptor says: not the blob it names.
        if (overran) return resumedFrom > 0 ? 'mismatch-after-resume' : 'mismatch';
        if (position < desc.size) throw new Error(`stream ended at ${position} of ${desc.size} bytes`);
      } catch (err) {
        slot(); // not held through the backoff
        await sources.failed(source, err, position, position > before);
      } finally {
        slot();
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
