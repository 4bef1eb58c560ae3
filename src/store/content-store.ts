import { constants as fsConstants } from 'node:fs';
import { chmod, mkdir, open, readdir, rename, rm, stat, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { DriverError, isDriverError } from '../errors/driver-error.js';
import { fsyncDirectory } from '../fs/atomic-write.js';
import { hashFileAsWritten } from './file-hasher.js';
import type { Logger } from '../log/logger.js';
import type { Descriptor } from '../registry/oci-types.js';
import { digestHex, isSha256Hex } from './digest.js';

/**
 * Opens the blob's bytes from `offset`. Returns the offset the server honoured: 0 when it
 * ignored the Range request (then the bytes on disk are rewritten from the start).
 */
/**
 * Opens the blob at `offset`. `recycle`, when given, takes back body chunks once they are on
 * disk (the registry client reuses their memory).
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
 * rest with a Range request, write while streaming and hash the file as written (on a worker: file-hasher.ts; position-based writes, so a
 * later change can fill one file from several ranged requests), check size and digest,
 * fsync, rename into blobs/, fsync the directory. Nothing unverified is ever under blobs/.
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
    const handle = await open(ingestPath, fsConstants.O_RDWR | fsConstants.O_CREAT | fsConstants.O_NOFOLLOW, 0o644);
    try {
      let written = await this.writeVerified(desc, ingestPath, handle, openBlob, emit, signal);
      if (written === 'mismatch-after-resume') {
        // The prefix from an earlier run may be torn (a crash before fsync can leave
        // garbage); start over once before calling the registry's data corrupt.
        this.options.logger?.warn({ digest: desc.digest }, 'resumed blob failed verification; downloading it again from the start');
        await handle.truncate(0);
        emit({ doneBytes: 0, receivedBytes: 0 });
        written = await this.writeVerified(desc, ingestPath, handle, openBlob, emit, signal);
      }
      if (written !== 'ok') {
        await handle.close().catch(() => undefined);
        await rm(ingestPath, { force: true });
        throw new DriverError('DIGEST_MISMATCH', `blob ${desc.digest} (${desc.mediaType}, ${desc.size} bytes) did not match its digest; the partial download was deleted. The registry or a proxy is serving corrupt data`, { retryable: true });
      }
      await handle.sync();
    } finally {
      await handle.close().catch(() => undefined);
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
   * Fill `handle` with the blob, resuming from its current size. Retries a failed stream from
   * the bytes already on disk (bounded consecutive failures, exponential backoff); progress
   * resets the failure count, so a registry that dies and comes back is resumed, not restarted.
   */
  private async writeVerified(
    desc: Descriptor,
    path: string,
    handle: FileHandle,
    openBlob: BlobOpener,
    emit: (p: IngestProgress) => void,
    signal?: AbortSignal,
  ): Promise<'ok' | 'mismatch' | 'mismatch-after-resume'> {
    let position = (await handle.stat()).size;
    if (position > desc.size) {
      await handle.truncate(0);
      position = 0;
    }
    const resumedFrom = position;
    // The file is hashed as it is on disk, from byte 0: a resumed prefix is read back too.
    let hasher = hashFileAsWritten(path);
    let restarted = false;
    if (position > 0) hasher.advance(position);
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
          await handle.truncate(0);
          hasher = hashFileAsWritten(path);
          restarted = true;
          emit({ doneBytes: 0, receivedBytes: 0 });
        }
        const cursor = { position };
        try {
          await streamInto(body, handle, cursor, desc.size, hasher.advance, emit, signal, recycle);
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
        if (['ENOSPC', 'EDQUOT', 'EROFS', 'EIO'].includes((err as NodeJS.ErrnoException).code ?? '')) throw err;
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
    const actual = await hasher.digest(desc.size);
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
 * Write the body at `cursor.position` onward. Chunks are batched, and the next batch is read
 * from the socket while the previous one is being written (one write in flight: the socket is
 * still not read faster than the disk takes it). `cursor.position` and the hash advance only
 * once a batch is on disk, so after a failure they agree and the retry resumes there. Stops
 * early past `limit`: more bytes than the descriptor says is a mismatch, not something to store.
 */
async function streamInto(
  body: Readable,
  handle: FileHandle,
  cursor: { position: number },
  limit: number,
  /** Told each time bytes up to a position are on disk. */
  onWritten: (position: number) => void,
  emit: (p: IngestProgress) => void,
  signal?: AbortSignal,
  /** Takes back chunks once they are on disk (their memory is reused). */
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

  const writeBatch = async (buffers: Buffer[], at: number, bytes: number): Promise<void> => {
    const { bytesWritten } = await handle.writev(buffers, at);
    if (bytesWritten < bytes) await writeFully(handle, Buffer.concat(buffers).subarray(bytesWritten), at + bytesWritten);
    recycle?.(buffers);
    cursor.position += bytes;
    onWritten(cursor.position);
    emit({ doneBytes: cursor.position, receivedBytes: bytes });
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
  } catch (err) {
    // The bytes received before the stream broke are good (TCP delivers a prefix): write
    // them, so the retry's Range starts after them rather than at the last batch boundary.
    await startBatch().catch(() => undefined);
    await inFlight?.catch(() => undefined);
    throw err;
  } finally {
    signal?.removeEventListener('abort', onAbort);
    // Leave nothing running on the handle: the caller resumes from cursor.position or closes it.
    await inFlight?.catch(() => undefined);
  }
}

async function writeFully(handle: FileHandle, buffer: Buffer, at: number): Promise<void> {
  let offset = 0;
  while (offset < buffer.length) {
    const { bytesWritten } = await handle.write(buffer, offset, buffer.length - offset, at + offset);
    offset += bytesWritten;
  }
}

