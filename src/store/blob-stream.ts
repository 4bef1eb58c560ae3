import type { Readable } from 'node:stream';
import type { BlobFile } from './blob-file.js';
import type { BlobHasher } from './blob-hasher.js';

/** Progress of one blob, as its ingest reports it. */
export interface IngestProgress {
  /** Bytes of this blob on disk now (verified or not yet); may go down after a restart. */
  doneBytes: number;
  /** Bytes received from the network since the previous event (for bytes-pulled metrics). */
  receivedBytes: number;
}

/** Bytes gathered before one positioned write: fewer, larger syscalls than one per socket chunk. */
const WRITE_BATCH_BYTES = 4 * 2 ** 20;
/**
 * Written batches the hash may lag behind before writing waits for it: bounds the memory a
 * blob holds (each batch's memory is reused only once hashed) when the disk outruns sha256.
 */
const MAX_BATCHES_AWAITING_HASH = 3;

/**
 * Where a body stops. `end` may be lowered while the body streams (ranged-download.ts hands
 * the tail of a long request to another connection), but never below `accepted`: the bytes
 * taken from the socket so far, which streamInto keeps current as each chunk arrives.
 */
export interface StreamLimit {
  end: number;
  accepted: number;
}

/**
 * Write the body at `cursor.position` onward. Chunks are batched, and the next batch is read
 * from the socket while the previous one is being written (one write in flight: the socket is
 * still not read faster than the disk takes it). Each written batch then goes to the hasher,
 * and its memory back to `recycle` once hashed. `cursor.position` advances only once a batch
 * is on disk, and every written batch has been handed to the hasher when this returns, so
 * after a failure the file, the hash and the cursor agree and the retry resumes there.
 *
 * Stops at `limit.end`: the bytes before it are kept, the body is closed, and the result is
 * true (the body went on past it). More bytes than the caller asked for is a mismatch to the
 * caller, unless it lowered the end itself.
 */
export async function streamInto(
  body: Readable,
  file: BlobFile,
  cursor: { position: number },
  limit: StreamLimit,
  hasher: Pick<BlobHasher, 'update'>,
  emit: (p: IngestProgress) => void,
  signal?: AbortSignal,
  /** Takes back chunks once written and hashed (their memory is reused). */
  recycle?: (chunks: readonly Buffer[]) => void,
): Promise<boolean> {
  const onAbort = (): void => {
    body.destroy(signal?.reason instanceof Error ? signal.reason : new Error('aborted'));
  };
  signal?.addEventListener('abort', onAbort, { once: true });
  let writePosition = cursor.position;
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  let inFlight: Promise<void> | undefined;
  const hashing: Array<Promise<void>> = [];

  const writeBatch = async (buffers: Buffer[], at: number, bytes: number): Promise<void> => {
    await file.write(buffers, at);
    cursor.position += bytes;
    emit({ doneBytes: cursor.position, receivedBytes: bytes });
    const hashed = hasher.update(buffers).finally(() => recycle?.(buffers));
    hashed.catch(() => undefined); // surfaced when awaited below or at the end of the stream
    hashing.push(hashed);
    if (hashing.length > MAX_BATCHES_AWAITING_HASH) await hashing.shift();
  };
  const startBatch = async (): Promise<void> => {
    if (inFlight) await inFlight;
    if (pendingBytes === 0) return;
    const buffers = pending;
    const bytes = pendingBytes;
    const at = writePosition;
    writePosition += bytes;
    pending = [];
    pendingBytes = 0;
    inFlight = writeBatch(buffers, at, bytes);
    inFlight.catch(() => undefined); // surfaced by the next await of inFlight
  };

  limit.accepted = cursor.position;
  try {
    for await (const chunk of body) {
      const buffer = chunk as Buffer;
      const room = limit.end - limit.accepted;
      if (buffer.length > room) {
        body.destroy();
        if (room > 0) pending.push(buffer.subarray(0, room));
        pendingBytes += room;
        limit.accepted += room;
        await startBatch();
        await inFlight;
        await Promise.all(hashing);
        return true;
      }
      pending.push(buffer);
      pendingBytes += buffer.length;
      limit.accepted += buffer.length;
      if (pendingBytes >= WRITE_BATCH_BYTES) await startBatch();
    }
    await startBatch();
    await inFlight;
    await Promise.all(hashing);
    return false;
  } catch (err) {
    // The bytes received before the stream broke are good (TCP delivers a prefix): write
    // them, so the retry's Range starts after them rather than at the last batch boundary.
    await startBatch().catch(() => undefined);
    await inFlight?.catch(() => undefined);
    throw err;
  } finally {
    signal?.removeEventListener('abort', onAbort);
    // Leave nothing running on the file or the hasher: the caller resumes from
    // cursor.position, or asks for the digest, or closes the file.
    await inFlight?.catch(() => undefined);
    await Promise.allSettled(hashing);
  }
}
