import { chmod, mkdir, readdir, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { DriverError, isDriverError } from '../errors/driver-error.js';
import { classifyFsError, isLocalFsFailure } from '../errors/fs-error.js';
import { fsyncDirectory } from '../fs/atomic-write.js';
import { DIRECT_IO_ALIGNMENT, piecePool } from '../fs/piece-pool.js';
import { BlobFile } from './blob-file.js';
import { createBlobHasher, type BlobHasher } from './blob-hasher.js';
import type { Logger } from '../log/logger.js';
import type { Descriptor } from '../registry/oci-types.js';
import { digestHex, isSha256Hex } from './digest.js';

/**
 * Opens the blob's bytes from `offset`. Returns the offset the server honoured: 0 when it
 * ignored the Range request (then the bytes on disk are rewritten from the start).
 * `recycle`, when given, takes back body chunks once they are written and hashed (the
 * registry client reuses their memory).
 */
export type BlobOpener = (offset: number, signal?: AbortSignal) => Promise<{ body: Readable; offset: number; recycle?: (chunks: readonly Buffer[]) => void }>;

export interface IngestProgress {
  /** Bytes of this blob on disk now (verified or not yet); may go down after a restart. */
  doneBytes: number;
  /** Bytes received from the network since the previous event (for bytes-pulled metrics). */
  receivedBytes: number;
}

export interface ContentStoreOptions {
  logger?: Logger;
  /**
   * Write large blobs with O_DIRECT where the filesystem allows (blob-file.ts; default true).
   * Off, every byte goes through the page cache.
   */
  directWrites?: boolean;
  /** Consecutive failed attempts without progress before giving up (default 6). */
  maxAttempts?: number;
  /** First retry delay; doubles each attempt, capped at 5 s (default 250 ms). */
  retryDelayMs?: number;
}

interface Flight {
  promise: Promise<string>;
  listeners: Set<(progress: IngestProgress) => void>;
}

/**
 * The content-addressed blob store, after containerd's local content store:
 *
 *   <root>/ingest/<hex>          partial download, kept across restarts and resumed
 *   <root>/blobs/sha256/<hex>    complete, sha256-verified, fsynced, mode 0444
 *
 * Lifecycle of `ingest`: exists → done; else keep the bytes already in ingest/, fetch the
 * rest with a Range request, write while streaming (O_DIRECT where it can: blob-file.ts;
 * position-based writes, so a later change can fill one file from several ranged requests)
 * and hash each batch once written (on a worker, from the same memory: blob-hasher.ts),
 * check size and digest, fsync, rename into blobs/, fsync the directory. Nothing unverified is ever under blobs/.
 * One download per digest at a time (per-digest single flight), different digests in
 * parallel. Memory is bounded by the stream's chunk size: a blob is never buffered.
 */
export class ContentStore {
  readonly blobsDir: string;
  readonly ingestDir: string;
  private readonly flights = new Map<string, Flight>();
  private readonly leases = new Map<string, number>();
  private readonly maxAttempts: number;
  private readonly retryDelayMs: number;

  constructor(
    readonly root: string,
    private readonly options: ContentStoreOptions = {},
  ) {
    this.blobsDir = join(root, 'blobs', 'sha256');
    this.ingestDir = join(root, 'ingest');
    this.maxAttempts = options.maxAttempts ?? 6;
    this.retryDelayMs = options.retryDelayMs ?? 250;
  }

  static async open(root: string, options: ContentStoreOptions = {}): Promise<ContentStore> {
    const store = new ContentStore(root, options);
    await mkdir(store.blobsDir, { recursive: true });
    await mkdir(store.ingestDir, { recursive: true });
    return store;
  }

  blobPath(digest: string): string {
    return join(this.blobsDir, digestHex(digest));
  }

  async has(digest: string): Promise<boolean> {
    try {
      return (await stat(this.blobPath(digest))).isFile();
    } catch {
      return false;
    }
  }

  /** Digests of complete blobs. */
  async listBlobs(): Promise<string[]> {
    const names = await readdir(this.blobsDir).catch(() => [] as string[]);
    return names.filter(isSha256Hex).map((hex) => `sha256:${hex}`);
  }

  /** Hex of blobs being downloaded by this process now (their ingest files are live). */
  activeIngests(): Set<string> {
    return new Set(this.flights.keys());
  }

  /**
   * Keep blobs from garbage collection while a pull uses them (between download and
   * assembly they are referenced by no model yet). Returns the release function.
   */
  lease(digests: readonly string[]): () => void {
    const hexes = digests.map((digest) => digestHex(digest));
    for (const hex of hexes) this.leases.set(hex, (this.leases.get(hex) ?? 0) + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      for (const hex of hexes) {
        const count = (this.leases.get(hex) ?? 1) - 1;
        if (count <= 0) this.leases.delete(hex);
        else this.leases.set(hex, count);
      }
    };
  }

  isLeased(hex: string): boolean {
    return this.leases.has(hex) || this.flights.has(hex);
  }

  /** Make the blob present and verified; returns its path. Concurrent callers share one download. */
  ingest(desc: Descriptor, openBlob: BlobOpener, onBytes?: (progress: IngestProgress) => void, options: { signal?: AbortSignal } = {}): Promise<string> {
    const hex = digestHex(desc.digest);
    let flight = this.flights.get(hex);
    if (!flight) {
      const listeners = new Set<(progress: IngestProgress) => void>();
      const emit = (progress: IngestProgress): void => {
        for (const listener of listeners) listener(progress);
      };
      const promise = this.download(desc, hex, openBlob, emit, options.signal).finally(() => this.flights.delete(hex));
      flight = { promise, listeners };
      this.flights.set(hex, flight);
    }
    if (onBytes) flight.listeners.add(onBytes);
    return flight.promise;
  }

  private async download(desc: Descriptor, hex: string, openBlob: BlobOpener, emit: (p: IngestProgress) => void, signal?: AbortSignal): Promise<string> {
    const target = join(this.blobsDir, hex);
    if (await this.isCompleteBlob(target, desc)) {
      emit({ doneBytes: desc.size, receivedBytes: 0 });
      return target;
    }
    const ingestPath = join(this.ingestDir, hex);
    const file = await BlobFile.open(ingestPath, piecePool, { direct: this.options.directWrites ?? true });
    try {
      let written = await this.writeVerified(desc, ingestPath, file, openBlob, emit, signal);
      if (written === 'mismatch-after-resume') {
        // The prefix from an earlier run may be torn (a crash before fsync can leave
        // garbage); start over once before calling the registry's data corrupt.
        this.options.logger?.warn({ digest: desc.digest }, 'resumed blob failed verification; downloading it again from the start');
        await file.truncate(0);
        emit({ doneBytes: 0, receivedBytes: 0 });
        written = await this.writeVerified(desc, ingestPath, file, openBlob, emit, signal);
      }
      if (written !== 'ok') {
        await file.close().catch(() => undefined);
        await rm(ingestPath, { force: true });
        throw new DriverError('DIGEST_MISMATCH', `blob ${desc.digest} (${desc.mediaType}, ${desc.size} bytes) did not match its digest; the partial download was deleted. The registry or a proxy is serving corrupt data`, { retryable: true });
      }
      await file.sync();
    } finally {
      await file.close().catch(() => undefined);
    }
    await chmod(ingestPath, 0o444);
    await rename(ingestPath, target);
    await fsyncDirectory(this.blobsDir);
    return target;
  }

  private async isCompleteBlob(path: string, desc: Descriptor): Promise<boolean> {
    try {
      const info = await stat(path);
      return info.isFile() && info.size === desc.size;
    } catch {
      return false;
    }
  }

  /**
   * Fill `file` with the blob, resuming from its current size. Retries a failed stream from
   * the bytes already on disk (bounded consecutive failures, exponential backoff); progress
   * resets the failure count, so a registry that dies and comes back is resumed, not restarted.
   */
  private async writeVerified(
    desc: Descriptor,
    path: string,
    file: BlobFile,
    openBlob: BlobOpener,
    emit: (p: IngestProgress) => void,
    signal?: AbortSignal,
  ): Promise<'ok' | 'mismatch' | 'mismatch-after-resume'> {
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

    let failures = 0;
    let digested = false;
    try {
      while (position < desc.size) {
        signal?.throwIfAborted();
        const before = position;
        try {
          const { body, offset, recycle } = await openBlob(position, signal);
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
          if (signal?.aborted) throw signal.reason ?? err;
          if (isDriverError(err) && !err.retryable) throw err;
          // A full or broken local disk is not the registry's fault: retrying cannot help.
          if (isLocalFsFailure(err)) throw classifyFsError(err, `downloading blob ${desc.digest}`);
          failures = position > before ? 1 : failures + 1;
          if (failures >= this.maxAttempts) {
            if (isDriverError(err)) throw err;
            throw new DriverError('REGISTRY_UNAVAILABLE', `download of blob ${desc.digest} failed ${failures} times in a row at byte ${position} of ${desc.size}: ${(err as Error).message}; the partial download is kept and resumes on the next try`, { cause: err });
          }
          const delay = Math.min(5000, this.retryDelayMs * 2 ** (failures - 1));
          this.options.logger?.warn({ digest: desc.digest, position, size: desc.size, attempt: failures, delayMs: delay, err: (err as Error).message }, 'blob download interrupted; resuming from the bytes on disk');
          await sleep(delay, undefined, { signal });
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
}

/** Bytes gathered before one positioned write: fewer, larger syscalls than one per socket chunk. */
const WRITE_BATCH_BYTES = 4 * 2 ** 20;
/**
 * Written batches the hash may lag behind before writing waits for it: bounds the memory a
 * blob holds (each batch's memory is reused only once hashed) when the disk outruns sha256.
 */
const MAX_BATCHES_AWAITING_HASH = 3;

/**
 * Write the body at `cursor.position` onward. Chunks are batched, and the next batch is read
 * from the socket while the previous one is being written (one write in flight: the socket is
 * still not read faster than the disk takes it). Each written batch then goes to the hasher,
 * and its memory back to `recycle` once hashed. `cursor.position` advances only once a batch
 * is on disk, and every written batch has been handed to the hasher when this returns, so
 * after a failure the file, the hash and the cursor agree and the retry resumes there. Stops
 * early past `limit`: more bytes than the descriptor says is a mismatch, not something to store.
 */
async function streamInto(
  body: Readable,
  file: BlobFile,
  cursor: { position: number },
  limit: number,
  hasher: BlobHasher,
  emit: (p: IngestProgress) => void,
  signal?: AbortSignal,
  /** Takes back chunks once written and hashed (their memory is reused). */
  recycle?: (chunks: readonly Buffer[]) => void,
): Promise<void> {
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

  try {
    for await (const chunk of body) {
      const buffer = chunk as Buffer;
      if (writePosition + pendingBytes + buffer.length > limit) {
        body.destroy();
        await startBatch();
        await inFlight;
        cursor.position += buffer.length;
        return;
      }
      pending.push(buffer);
      pendingBytes += buffer.length;
      if (pendingBytes >= WRITE_BATCH_BYTES) await startBatch();
    }
    await startBatch();
    await inFlight;
    await Promise.all(hashing);
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
