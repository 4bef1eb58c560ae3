import type { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import type { ConnectionSlot } from '../concurrency/connection-budget.js';
import { Semaphore } from '../concurrency/semaphore.js';
import type { Flight } from '../concurrency/single-flight.js';
import { PIECE_BYTES } from '../fs/piece-pool.js';
import type { Logger } from '../log/logger.js';
import type { Descriptor } from '../registry/oci-types.js';
import type { FillResult, Ingester } from './blob-download.js';
import type { BlobFile } from './blob-file.js';
import { createBlobHasher, type BlobHasher } from './blob-hasher.js';
import type { IngestProgress } from './blob-stream.js';
import { ConnectionTuner } from './connection-tuner.js';
import { DownloadSources } from './download-sources.js';
import { PieceMap } from './piece-map.js';

/** Piece of a ranged download: two arena pieces (piece-pool.ts), so O_DIRECT-aligned. */
export const RANGED_PIECE_BYTES = 2 * PIECE_BYTES;
/** Connections one download starts with, and the most it grows to (the caps may hold it lower). */
const START_CONNECTIONS = 2;
const MAX_CONNECTIONS_PER_BLOB = 16;
/** A piece is started at most this many pieces ahead of its blob's hash frontier. */
const WINDOW_PIECES = 16;
/**
 * Node-wide, pieces fetched ahead of their blob's hash frontier, whose bytes wait in memory to
 * be hashed in order (96 MiB). The frontier piece needs no share (its bytes are hashed as they
 * arrive), so every download always progresses, and memory stays bounded however many
 * downloads run.
 */
const reorderBudget = new Semaphore(12);
/** How often completed pieces are made durable and recorded in the piece map. */
const CHECKPOINT_MS = 1000;
/** The tuner judges a count after this long and two arena pieces per connection (connection-tuner.ts). */
const TUNER_WINDOW = { windowMs: 500, windowBytesPerConnection: 2 * PIECE_BYTES };

export type RangedResult = FillResult | 'ranges-refused';

/** A source answered a piece with something else (the whole blob, another range). */
class RangesRefused extends Error {}

interface Piece {
  state: 'todo' | 'fetching' | 'done';
  /** Bytes of the piece written (and handed to the hash queue) so far. */
  written: number;
  /** Completed by an earlier run (piece map): hashed again from the file. */
  resumed: boolean;
  /** Chunks waiting for the hash frontier to reach this piece. */
  queued: Array<{ chunk: Buffer; recycle: ((chunks: readonly Buffer[]) => void) | undefined }>;
  hashing: Array<Promise<void>>;
  reservation: ConnectionSlot | undefined;
}

/**
 * Fill `file` with the blob as ranged pieces over several connections at once (issue: one
 * blob, many connections; each piece-limited origin connection adds its rate).
 *
 * - Pieces are handed out lowest first; each is written at its offset as its bytes arrive.
 * - sha256 still covers the whole blob in order: the piece at the hash frontier is hashed as
 *   it streams; pieces ahead of it wait in memory (the reorder window, bounded node-wide).
 * - The connection count starts small and grows while each connection pays (connection-
 *   tuner.ts), within the node's and the registry's connection caps.
 * - A failed piece is fetched again alone, from the bytes it had (download-sources.ts).
 * - Completed pieces are recorded in a piece map (piece-map.ts) once fsynced, so a resumed
 *   download keeps every one of them.
 * - A source that does not answer a piece as one ('ranges-refused'): the download stops, the
 *   file is cut back to the contiguous completed prefix, and the caller streams the rest.
 */
export async function fillBlobRanged(desc: Descriptor, path: string, file: BlobFile, flight: Flight<undefined, Ingester>, logger: Logger | undefined): Promise<RangedResult> {
  const mapPath = PieceMap.pathFor(path);
  const loaded = await PieceMap.load(mapPath, desc.size, RANGED_PIECE_BYTES);
  const map = loaded ?? contiguousMap(desc.size, await file.size());
  await map.save(mapPath); // before the first scattered byte: a file with holes always has a map
  return new RangedDownload(desc, path, mapPath, file, flight, map, logger).run();
}

/** The pieces a single stream's contiguous prefix already holds (no map: an earlier one-stream run). */
function contiguousMap(size: number, prefix: number): PieceMap {
  const map = PieceMap.fresh(size, RANGED_PIECE_BYTES);
  for (let i = 0; i < map.count && map.range(i).end <= Math.min(prefix, size); i++) map.markDone(i);
  return map;
}

class RangedDownload {
  private readonly pieces: Piece[];
  private readonly sources: DownloadSources;
  private readonly tuner: ConnectionTuner;
  /** Aborts every connection of this download (a final failure, refused ranges, the flight's abort). */
  private readonly stop = new AbortController();
  private readonly hasher: BlobHasher;
  private frontier = 0;
  private active = 0;
  private written = 0;
  private failure: unknown;
  private refused = false;
  private readonly workers = new Set<Promise<void>>();
  /** Settles when the hash frontier next moves (workers waiting for window room). */
  private frontierMoved!: Promise<void>;
  private moved: () => void = () => undefined;
  private checkpoint: Promise<void> = Promise.resolve();
  private savedCount: number;

  constructor(
    private readonly desc: Descriptor,
    private readonly path: string,
    private readonly mapPath: string,
    private readonly file: BlobFile,
    private readonly flight: Flight<undefined, Ingester>,
    private readonly map: PieceMap,
    private readonly logger: Logger | undefined,
  ) {
    this.pieces = Array.from({ length: map.count }, (_, i) => ({ state: map.isDone(i) ? 'done' : 'todo', written: 0, resumed: map.isDone(i), queued: [], hashing: [], reservation: undefined }));
    this.written = map.completedBytes;
    this.savedCount = map.completed;
    this.sources = new DownloadSources(desc, flight, logger);
    this.tuner = new ConnectionTuner({ start: START_CONNECTIONS, max: MAX_CONNECTIONS_PER_BLOB, ...TUNER_WINDOW });
    this.hasher = createBlobHasher();
    this.armFrontierWait();
    const onAbort = (): void => this.stop.abort(flight.signal.reason);
    flight.signal.addEventListener('abort', onAbort, { once: true });
    this.stop.signal.addEventListener('abort', () => flight.signal.removeEventListener('abort', onAbort), { once: true });
  }

  async run(): Promise<RangedResult> {
    let digested = false;
    const timer = setInterval(() => void this.saveProgress(), CHECKPOINT_MS);
    try {
      this.emit(0);
      this.advanceFrontier();
      // The first connection alone learns whether the source serves ranges (and follows the
      // registry's redirect once); the others start as it delivers.
      const first = await this.flight.waiters()[0]!.context.connections.acquire(this.flight.signal);
      this.startWorker(first);
      while (this.workers.size > 0) await Promise.race(this.workers);
      if (this.failure !== undefined) throw this.failure;
      this.flight.signal.throwIfAborted();
      if (this.refused) return await this.cutToPrefix();
      await Promise.all(this.pieces.flatMap((piece) => piece.hashing));
      digested = true;
      const actual = await this.hasher.digest();
      if (actual === this.desc.digest) return 'ok';
      return this.pieces.some((piece) => piece.resumed) ? 'mismatch-after-resume' : 'mismatch';
    } finally {
      clearInterval(timer);
      this.stop.abort();
      for (const piece of this.pieces) piece.reservation?.();
      if (!digested) {
        this.hasher.discard();
        // Keep what is done for the next try (the caller deletes the file on a mismatch).
        if (!this.refused) await this.saveProgress().catch(() => undefined);
      }
      await this.checkpoint.catch(() => undefined);
    }
  }

  private startWorker(slot: ConnectionSlot): void {
    this.active++;
    const worker = this.work().finally(() => {
      this.active--;
      slot();
      this.workers.delete(worker);
    });
    this.workers.add(worker);
  }

  private async work(): Promise<void> {
    try {
      while (!this.stop.signal.aborted && this.active <= this.tuner.target) {
        const index = await this.nextPiece();
        if (index === undefined) return;
        await this.fetchPiece(index);
      }
    } catch (err) {
      if (err instanceof RangesRefused) this.refused = true;
      // The first cause; what the other connections throw once stopped is its echo.
      else if (!this.stop.signal.aborted) this.failure = err;
      this.stop.abort(err);
    }
  }

  /** One more connection, when the tuner wants it, a slot is free and a piece is waiting. */
  private maybeGrow(): void {
    if (this.stop.signal.aborted || this.active >= this.tuner.target || !this.pieces.some((p) => p.state === 'todo')) return;
    const slot = this.flight.waiters()[0]?.context.connections.tryAcquire();
    if (slot === undefined) return this.tuner.capped(this.active);
    this.startWorker(slot);
  }

  /** The lowest piece not yet fetched, within the window and the reorder budget; undefined when none is left. */
  private async nextPiece(): Promise<number | undefined> {
    for (;;) {
      this.stop.signal.throwIfAborted();
      const index = this.pieces.findIndex((piece) => piece.state === 'todo');
      if (index < 0) return undefined;
      const piece = this.pieces[index]!;
      if (index === this.frontier) {
        piece.state = 'fetching';
        return index;
      }
      if (index - this.frontier < WINDOW_PIECES) {
        piece.reservation = reorderBudget.tryAcquire();
        if (piece.reservation !== undefined) {
          piece.state = 'fetching';
          return index;
        }
      }
      // Wait for the frontier to move (or another download to free reorder memory).
      await Promise.race([this.frontierMoved, sleep(50, undefined, { signal: this.stop.signal })]);
    }
  }

  private async fetchPiece(index: number): Promise<void> {
    const piece = this.pieces[index]!;
    const { start, end } = this.map.range(index);
    for (;;) {
      const source = this.sources.now();
      const before = piece.written;
      const at = start + piece.written;
      try {
        const response = await source.waiter.context.open(at, this.stop.signal, source.streak.attempt, end);
        if (response.offset !== at || (response.end ?? this.desc.size) !== end) {
          response.body.destroy();
          throw new RangesRefused(`blob ${this.desc.digest}: asked for bytes ${at}-${end - 1}, answered from ${response.offset} to ${response.end ?? this.desc.size}`);
        }
        await this.streamPiece(index, response.body, response.recycle, end);
        if (start + piece.written < end) throw new Error(`piece ${index} ended at ${start + piece.written} of ${end} bytes`);
        this.completed(index);
        return;
      } catch (err) {
        if (err instanceof RangesRefused || this.stop.signal.aborted) throw err;
        await this.sources.failed(source, err, start + piece.written, piece.written > before);
      }
    }
  }

  /** Write the body at its offsets as it arrives, and queue each chunk for the in-order hash. */
  private async streamPiece(index: number, body: Readable, recycle: ((chunks: readonly Buffer[]) => void) | undefined, end: number): Promise<void> {
    const piece = this.pieces[index]!;
    const start = this.map.range(index).start;
    const onAbort = (): void => void body.destroy(new Error('aborted'));
    this.stop.signal.addEventListener('abort', onAbort, { once: true });
    try {
      for await (const chunk of body as AsyncIterable<Buffer>) {
        const at = start + piece.written;
        if (at + chunk.length > end) throw new Error(`piece ${index} of blob ${this.desc.digest} ran past its end`);
        await this.file.write([chunk], at);
        piece.written += chunk.length;
        this.written += chunk.length;
        this.hash(index, chunk, recycle);
        this.emit(chunk.length);
        this.tuner.observe(chunk.length, this.active);
        this.maybeGrow();
      }
    } finally {
      this.stop.signal.removeEventListener('abort', onAbort);
    }
  }

  private hash(index: number, chunk: Buffer, recycle: ((chunks: readonly Buffer[]) => void) | undefined): void {
    const piece = this.pieces[index]!;
    if (index !== this.frontier) {
      piece.queued.push({ chunk, recycle });
      return;
    }
    const hashed = this.hasher.update([chunk]).finally(() => recycle?.([chunk]));
    hashed.catch((err: unknown) => {
      this.failure ??= err;
      this.stop.abort(err);
    });
    piece.hashing.push(hashed);
  }

  private completed(index: number): void {
    const piece = this.pieces[index]!;
    piece.state = 'done';
    this.map.markDone(index);
    if (index === this.frontier) this.advanceFrontier();
  }

  /**
   * Move the hash frontier past every piece that is done: resumed ones are hashed from the
   * file, fetched ones from their queued chunks; the first piece still streaming gets its
   * queued chunks now and the rest as they arrive.
   */
  private advanceFrontier(): void {
    while (this.frontier < this.pieces.length) {
      const piece = this.pieces[this.frontier]!;
      if (piece.resumed) {
        const { start, end } = this.map.range(this.frontier);
        piece.hashing.push(this.hasher.updateFromFile(this.path, start, end - start));
      } else {
        const queued = piece.queued.splice(0);
        const index = this.frontier;
        for (const { chunk, recycle } of queued) this.hash(index, chunk, recycle);
        // Its reorder share is given back once those bytes are hashed.
        const reservation = piece.reservation;
        piece.reservation = undefined;
        if (reservation) void Promise.allSettled(piece.hashing).then(reservation);
        if (piece.state !== 'done') break;
      }
      this.frontier++;
    }
    this.moved();
    this.armFrontierWait();
  }

  private armFrontierWait(): void {
    this.frontierMoved = new Promise((resolve) => (this.moved = resolve));
  }

  /** Make the completed pieces durable, then record them (temp name, fsync, rename). */
  private saveProgress(): Promise<void> {
    this.checkpoint = this.checkpoint.then(async () => {
      if (this.map.completed === this.savedCount) return;
      const snapshot = this.map.snapshot();
      await this.file.sync();
      await snapshot.save(this.mapPath);
      this.savedCount = snapshot.completed;
    });
    return this.checkpoint;
  }

  /** Ranges refused: keep the contiguous completed prefix as a one-stream download's, drop the map. */
  private async cutToPrefix(): Promise<'ranges-refused'> {
    await this.checkpoint.catch(() => undefined);
    let prefix = 0;
    while (prefix < this.pieces.length && this.pieces[prefix]!.state === 'done') prefix++;
    const bytes = prefix === this.pieces.length ? this.desc.size : this.map.range(prefix).start;
    await this.file.truncate(bytes);
    await PieceMap.remove(this.mapPath);
    this.logger?.info({ digest: this.desc.digest, keptBytes: bytes }, 'the source does not serve byte ranges; fetching the rest of the blob as one stream');
    return 'ranges-refused';
  }

  private emit(receivedBytes: number): void {
    const progress: IngestProgress = { doneBytes: this.written, receivedBytes };
    for (const waiter of this.flight.waiters()) waiter.context.onBytes?.(progress);
  }
}
