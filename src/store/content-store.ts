import { chmod, mkdir, readdir, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { SingleFlight, type Flight } from '../concurrency/single-flight.js';
import { DriverError } from '../errors/driver-error.js';
import { fsyncDirectory } from '../fs/atomic-write.js';
import { piecePool } from '../fs/piece-pool.js';
import { ConnectionBudget, type RegistryConnections } from '../concurrency/connection-budget.js';
import { BlobFile } from './blob-file.js';
import { PieceMap } from './piece-map.js';
import { fillBlobRanged } from './ranged-download.js';
import { fillBlob, type BlobOpener, type FillResult, type Ingester } from './blob-download.js';
import type { IngestProgress } from './blob-stream.js';
import type { Logger } from '../log/logger.js';
import type { Descriptor } from '../registry/oci-types.js';
import { Retrier } from '../registry/retry.js';
import { digestHex, isSha256Hex } from '../registry/digest.js';

export type { BlobOpener } from './blob-download.js';
export type { IngestProgress } from './blob-stream.js';

export interface ContentStoreOptions {
  logger?: Logger;
  /**
   * Write large blobs with O_DIRECT where the filesystem allows (blob-file.ts; default true).
   * Off, every byte goes through the page cache.
   */
  directWrites?: boolean;
  /** The retry layer for ingests whose caller brings none (registry/retry.ts defaults). */
  retrier?: Retrier;
  /** Blobs of this size and more are fetched as ranged pieces (ranged-download.ts; config rangedMinBlobSize). */
  rangedMinBlobBytes?: number;
}

/** The config default of rangedMinBlobSize (config/schema.ts). */
const DEFAULT_RANGED_MIN_BLOB_BYTES = 64 * 2 ** 20;
/** Connection caps for ingests whose caller brings none (the config defaults). */
const DEFAULT_CONNECTIONS = new ConnectionBudget({ perNode: 32, perRegistry: 16 });

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
 * parallel. A shared download belongs to no one caller: a caller that gives up (its signal)
 * or whose source fails leaves alone, another caller's source carries it on, and it is
 * cancelled only when every caller has left (blob-download.ts). Memory is bounded by the
 * stream's chunk size: a blob is never buffered.
 */
export class ContentStore {
  readonly blobsDir: string;
  readonly ingestDir: string;
  private readonly flights = new SingleFlight<string, undefined, Ingester>();
  private readonly leases = new Map<string, number>();
  private readonly retrier: Retrier;

  constructor(
    readonly root: string,
    private readonly options: ContentStoreOptions = {},
  ) {
    this.blobsDir = join(root, 'blobs', 'sha256');
    this.ingestDir = join(root, 'ingest');
    this.retrier = options.retrier ?? new Retrier();
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

  /**
   * Make the blob present and verified; returns its path. Concurrent callers share one
   * download; each one's `signal` detaches only that caller, and `retrier` is the retry layer
   * of its registry client (default: this store's).
   */
  ingest(
    desc: Descriptor,
    openBlob: BlobOpener,
    onBytes?: (progress: IngestProgress) => void,
    options: { signal?: AbortSignal | undefined; retrier?: Retrier | undefined; connections?: RegistryConnections | undefined } = {},
  ): Promise<string> {
    const hex = digestHex(desc.digest);
    const context: Ingester = {
      open: openBlob,
      onBytes,
      retrier: options.retrier ?? this.retrier,
      connections: options.connections ?? DEFAULT_CONNECTIONS.forRegistry(''),
    };
    return this.flights.run(hex, (flight) => this.download(desc, hex, flight), { signal: options.signal, context });
  }

  private async download(desc: Descriptor, hex: string, flight: Flight<undefined, Ingester>): Promise<string> {
    const target = join(this.blobsDir, hex);
    const emitDone = (): void => {
      for (const waiter of flight.waiters()) waiter.context.onBytes?.({ doneBytes: desc.size, receivedBytes: 0 });
    };
    if (await this.isCompleteBlob(target, desc)) {
      emitDone();
      return target;
    }
    const ingestPath = join(this.ingestDir, hex);
    const mapPath = PieceMap.pathFor(ingestPath);
    const file = await BlobFile.open(ingestPath, piecePool, { direct: this.options.directWrites ?? true });
    try {
      let written = await this.fill(desc, ingestPath, file, flight);
      if (written !== 'ok') {
        // A prefix or pieces kept from an earlier run may be torn (a crash before fsync can
        // leave garbage), and a registry or proxy may have served a bad range once: fetch the
        // whole blob once more before calling the registry's data corrupt.
        this.options.logger?.warn({ digest: desc.digest, resumed: written === 'mismatch-after-resume' }, 'blob failed verification; downloading it again from the start');
        await file.truncate(0);
        await PieceMap.remove(mapPath);
        written = await this.fill(desc, ingestPath, file, flight);
      }
      if (written !== 'ok') {
        await file.close().catch(() => undefined);
        await rm(ingestPath, { force: true });
        await PieceMap.remove(mapPath);
        throw new DriverError('DIGEST_MISMATCH', `blob ${desc.digest} (${desc.mediaType}, ${desc.size} bytes) did not match its digest twice; the partial download was deleted. The registry or a proxy is serving corrupt data`, { retryable: true });
      }
      await file.sync();
    } finally {
      await file.close().catch(() => undefined);
    }
    await chmod(ingestPath, 0o444);
    await rename(ingestPath, target);
    await fsyncDirectory(this.blobsDir);
    await PieceMap.remove(mapPath);
    return target;
  }

  /** Ranged pieces for a large blob, one stream otherwise or when the source serves no ranges. */
  private async fill(desc: Descriptor, ingestPath: string, file: BlobFile, flight: Flight<undefined, Ingester>): Promise<FillResult> {
    const { logger } = this.options;
    if (desc.size >= (this.options.rangedMinBlobBytes ?? DEFAULT_RANGED_MIN_BLOB_BYTES)) {
      const ranged = await fillBlobRanged(desc, ingestPath, file, flight, logger);
      if (ranged !== 'ranges-refused') return ranged;
    }
    return fillBlob(desc, ingestPath, file, flight, logger);
  }

  private async isCompleteBlob(path: string, desc: Descriptor): Promise<boolean> {
    try {
      const info = await stat(path);
      return info.isFile() && info.size === desc.size;
    } catch {
      return false;
    }
  }
}
