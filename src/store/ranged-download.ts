import type { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import type { ConnectionSlot, RegistryConnections } from '../concurrency/connection-budget.js';
import { Semaphore } from '../concurrency/semaphore.js';
import type { Flight } from '../concurrency/single-flight.js';
import { PIECE_BYTES } from '../fs/piece-pool.js';
import { DriverError } from '../errors/driver-error.js';
import type { Logger } from '../log/logger.js';
import type { Descriptor } from '../registry/oci-types.js';
import type { FillResult, Ingester } from './blob-download.js';
import type { BlobFile } from './blob-file.js';
import { createBlobHasher, type BlobHasher } from './blob-hasher.js';
import { streamInto, type IngestProgress, type StreamLimit } from './blob-stream.js';
import { ConnectionTuner } from './connection-tuner.js';
import { DownloadSources } from './download-sources.js';
import { PieceMap } from './piece-map.js';

/** Piece of a ranged download: two arena pieces (piece-pool.ts), so O_DIRECT-aligned. */
export const RANGED_PIECE_BYTES = 2 * PIECE_BYTES;
/** Connections one download starts with, and the most it grows to (the caps may hold it lower). */
const START_CONNECTIONS = 1;
const MAX_CONNECTIONS_PER_BLOB = 16;
/**
 * A connection starting at the hash frontier takes a span of up to this many pieces in one
 * request (its bytes are hashed as they arrive, so they cost no reorder memory): a download
 * that one connection serves best (loopback, a fast disk-bound link) is then a few long
 * requests, not one per piece. Pieces ahead of the frontier are taken one per request, and a
 * connection that finds none takes the last unstarted piece of a running span instead (the
 * span's request stops short of it), so a long span never leaves the others idle.
 */
const MAX_SPAN_PIECES = 16;
/** A piece is started at most this many pieces ahead of its blob's hash frontier. */
const WINDOW_PIECES = 16;
/**
 * Node-wide, pieces fetched ahead of their blob's hash frontier whose bytes wait in memory to be
 * hashed in order (64 MiB). A piece that finds no share is hashed from the file once the
 * frontier reaches it (read back, as a resumed piece is), so memory stays bounded however many
 * downloads and connections run, and no connection waits for memory. The frontier piece needs
 * no share: its bytes are hashed as they arrive.
 */
const reorderBudget = new Semaphore(8);
/** How often completed pieces are made durable and recorded in the piece map. */
const CHECKPOINT_MS = 1000;
/** The tuner judges a count after this long and two arena pieces per connection (connection-tuner.ts). */
const TUNER_WINDOW = { windowMs: 500, windowBytesPerConnection: 2 * PIECE_BYTES };

export type RangedResult = FillResult | 'ranges-refused';

type Recycle = ((chunks: readonly Buffer[]) => void) | undefined;

/** A source answered a piece with something else (the whole blob, another range). */
class RangesRefused extends Error {}

interface Piece {
  state: 'todo' | 'fetching' | 'done';
  /** Completed by an earlier run (piece map). */
  resumed: boolean;
  /** Hashed from the file once done: resumed, or fetched ahead of the frontier without a reorder share. */
  fromFile: boolean;
  /** Batches waiting for the hash frontier to reach this piece, in order from its start. */
  queued: Array<{ buffers: readonly Buffer[]; bytes: number; recycle: Recycle }>;
  reservation: ConnectionSlot | undefined;
}

/** Pieces first..last, fetched by one connection in one request (`last` drops when another connection takes its tail). */
interface Span {
  first: number;
  last: number;
  /** The request's end, and how far its body has been taken (blob-stream.ts). */
  limit: StreamLimit;
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
  /** Pieces in state 'todo', and none below `lowestTodo` is. */
  private todo = 0;
  private lowestTodo = 0;
  private readonly spans = new Set<Span>();
  private readonly sources: DownloadSources;
  private readonly tuner: ConnectionTuner;
  /** The registry's connections, and its growth turns (connection-budget.ts). */
  private readonly connections: RegistryConnections;
  private readonly leaveGrowth: () => void;
  /** Aborts every connection of this download (a final failure, refused ranges, the flight's abort). */
  private readonly stop = new AbortController();
  private readonly hasher: BlobHasher;
  /** Bytes hashed so far, in order: the hash frontier. */
  private hashed = 0;
  /** The piece the hash frontier is in (the piece count once all is hashed). */
  private frontier = 0;
  private active = 0;
  private written = 0;
  private failure: unknown;
  private refused = false;
  private readonly workers = new Set<Promise<void>>();
  /** Every hash issued, in order (awaited before the digest). */
  private readonly hashing: Array<Promise<void>> = [];
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
    this.pieces = Array.from({ length: map.count }, (_, i) => ({ state: map.isDone(i) ? 'done' : 'todo', resumed: map.isDone(i), fromFile: map.isDone(i), queued: [], reservation: undefined }));
    this.todo = map.count - map.completed;
    this.written = map.completedBytes;
    this.savedCount = map.completed;
    this.sources = new DownloadSources(desc, flight, logger);
    this.tuner = new ConnectionTuner({ start: START_CONNECTIONS, max: MAX_CONNECTIONS_PER_BLOB, ...TUNER_WINDOW });
    this.connections = flight.waiters()[0]!.context.connections;
    this.leaveGrowth = this.connections.growth.join();
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
      const first = await this.connections.acquire(this.flight.signal);
      this.startWorker(first);
      while (this.workers.size > 0) await Promise.race(this.workers);
      if (this.failure !== undefined) throw this.failure;
      this.flight.signal.throwIfAborted();
      if (this.refused) return await this.cutToPrefix();
      await Promise.all(this.hashing);
      digested = true;
      const actual = await this.hasher.digest();
      if (actual === this.desc.digest) return 'ok';
      return this.pieces.some((piece) => piece.resumed) ? 'mismatch-after-resume' : 'mismatch';
    } finally {
      clearInterval(timer);
      this.connections.growth.done(this, false);
      this.leaveGrowth();
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
        const span = await this.nextSpan();
        if (span === undefined) return;
        this.spans.add(span);
        await this.fetchSpan(span).finally(() => this.spans.delete(span));
      }
    } catch (err) {
      if (err instanceof RangesRefused) this.refused = true;
      // The first cause; what the other connections throw once stopped is its echo.
      else if (!this.stop.signal.aborted) this.failure = err;
      this.stop.abort(err);
    }
  }

  /**
   * `bytes` arrived. The tuner hears of them only while this download holds its registry's
   * growth turn (one download tries larger counts at a time); the count it settles at tells
   * the others whether trying pays.
   */
  private observe(bytes: number): void {
    const growth = this.connections.growth;
    if (this.tuner.isSettled || !growth.take(this)) return;
    this.tuner.observe(bytes, this.active);
    if (this.tuner.isSettled) growth.done(this, this.tuner.target <= START_CONNECTIONS);
  }

  /** One more connection, when the tuner wants it, a slot is free and a piece is waiting. */
  private maybeGrow(): void {
    if (this.stop.signal.aborted || this.active >= this.tuner.target || this.todo === 0) return;
    const slot = this.connections.tryAcquire();
    if (slot === undefined) return this.tuner.capped(this.active);
    this.startWorker(slot);
  }

  /**
   * The next pieces to fetch in one request, lowest first, within the window and the reorder
   * budget; undefined when every piece is fetched or being fetched. At the hash frontier, a
   * span of todo pieces sized to leave work for the other connections (MAX_SPAN_PIECES at
   * most); ahead of it, one piece: the lowest todo one, or a running span's last unstarted one.
   */
  private async nextSpan(): Promise<Span | undefined> {
    for (;;) {
      this.stop.signal.throwIfAborted();
      const index = this.firstTodo();
      if (index === this.frontier) {
        const length = Math.max(1, Math.min(MAX_SPAN_PIECES, Math.floor(this.todo / (2 * Math.max(this.tuner.target, this.active)))));
        let last = index;
        while (last + 1 < this.pieces.length && last + 1 - index < length && this.pieces[last + 1]!.state === 'todo') last++;
        for (let i = index; i <= last; i++) this.take(i);
        return this.span(index, last);
      }
      const tail = this.stealableTail();
      const lowest = Math.min(index ?? Infinity, tail ? tail.last : Infinity);
      if (lowest === Infinity) return undefined;
      if (lowest - this.frontier < WINDOW_PIECES) {
        this.reserve(lowest);
        if (tail !== undefined && lowest === tail.last) {
          tail.last--;
          tail.limit.end = this.map.range(tail.last).end;
        } else this.take(lowest);
        return this.span(lowest, lowest);
      }
      // Wait for the frontier to move.
      await Promise.race([this.frontierMoved, sleep(50, undefined, { signal: this.stop.signal })]);
    }
  }

  private span(first: number, last: number): Span {
    const start = this.map.range(first).start;
    return { first, last, limit: { end: this.map.range(last).end, accepted: start } };
  }

  /**
   * A piece ahead of the hash frontier waits in memory with a reorder share, or without one is
   * read back from the file to be hashed; the frontier's needs neither.
   */
  private reserve(index: number): void {
    if (index === this.frontier) return;
    const piece = this.pieces[index]!;
    piece.reservation = reorderBudget.tryAcquire();
    piece.fromFile = piece.reservation === undefined;
  }

  /**
   * The running span whose last piece is the lowest one that may be taken from it: its first
   * piece stays its own, and so does every piece within a piece of the bytes it has taken. Those
   * may already be read from the socket (raw-http.ts holds one arena piece buffered and one
   * being filled: one ranged piece), and a cut there would waste them.
   */
  private stealableTail(): Span | undefined {
    let best: Span | undefined;
    for (const span of this.spans) {
      const free = span.last > span.first && this.map.range(span.last).start >= span.limit.accepted + RANGED_PIECE_BYTES;
      if (free && (best === undefined || span.last < best.last)) best = span;
    }
    return best;
  }

  private firstTodo(): number | undefined {
    if (this.todo === 0) return undefined;
    while (this.pieces[this.lowestTodo]!.state !== 'todo') this.lowestTodo++;
    return this.lowestTodo;
  }

  private take(index: number): void {
    this.pieces[index]!.state = 'fetching';
    this.todo--;
  }

  private giveBack(index: number): void {
    this.pieces[index]!.state = 'todo';
    this.todo++;
    this.lowestTodo = Math.min(this.lowestTodo, index);
  }

  /**
   * Fetch the span in one request. After a failure the piece it broke in is fetched again
   * alone, from the bytes it had (download-sources.ts decides when to give up), and the rest
   * of the span goes back to the others.
   */
  private async fetchSpan(span: Span): Promise<void> {
    const cursor = { position: this.map.range(span.first).start };
    for (;;) {
      const source = this.sources.now();
      const at = cursor.position;
      const end = this.map.range(span.last).end;
      try {
        const response = await source.waiter.context.open(at, this.stop.signal, source.streak.attempt, end);
        if (response.offset !== at || (response.end ?? this.desc.size) !== end) {
          response.body.destroy();
          throw new RangesRefused(`blob ${this.desc.digest}: asked for bytes ${at}-${end - 1}, answered from ${response.offset} to ${response.end ?? this.desc.size}`);
        }
        // Another connection may have taken the span's tail meanwhile: span.limit has its end.
        await this.streamSpan(span, response.body, response.recycle, cursor, end);
        return;
      } catch (err) {
        if (err instanceof RangesRefused || this.stop.signal.aborted) throw err;
        // Pieces the span completed stay done; it goes on from the one it broke in, alone.
        span.first = Math.floor(cursor.position / RANGED_PIECE_BYTES);
        if (span.first > span.last) return;
        for (let i = span.first + 1; i <= span.last; i++) this.giveBack(i);
        span.last = span.first;
        span.limit = { end: this.map.range(span.first).end, accepted: cursor.position };
        await this.sources.failed(source, err, cursor.position, cursor.position > at);
      }
    }
  }

  /**
   * Write the body at its offsets as it arrives (blob-stream.ts: batched writes, the next batch
   * read while one is written), each written batch going to the in-order hash (`hash`); each
   * piece of the span is done once its last byte is written. The body stops early where
   * another connection took the span's tail.
   */
  private async streamSpan(span: Span, body: Readable, recycle: Recycle, cursor: { position: number }, asked: number): Promise<void> {
    const from = cursor.position;
    let current = Math.floor(from / RANGED_PIECE_BYTES);
    const inOrder = { update: (buffers: readonly Buffer[]) => this.hash(cursor.position, buffers, recycle) };
    const progress = ({ doneBytes, receivedBytes }: IngestProgress): void => {
      for (; current <= span.last && this.map.range(current).end <= doneBytes; current++) this.completed(current);
      this.written += receivedBytes;
      this.emit(receivedBytes);
      this.observe(receivedBytes);
      this.maybeGrow();
    };
    // Chunks go back to `recycle` from `hash`, once really hashed, not when streamInto is done with them.
    const overran = await streamInto(body, this.file, cursor, span.limit, inOrder, progress, this.stop.signal, undefined);
    if (overran && span.limit.end === asked) {
      throw new DriverError('DIGEST_MISMATCH', `a source sent more than bytes ${from}-${asked - 1} asked for blob ${this.desc.digest}`, { retryable: true });
    }
    if (cursor.position < span.limit.end) throw new Error(`blob ${this.desc.digest}: the response ended at byte ${cursor.position} of ${span.limit.end}`);
  }

  /**
   * Bytes at the hash frontier are hashed now: the promise is the hash's (streamInto keeps at
   * most a few batches waiting on it, so memory stays bounded when sha256 is the slower part).
   * Bytes ahead of it wait in their piece's queue until the frontier reaches them (that memory
   * is what the reorder budget counts), or, in a piece without a share, are let go (it is read
   * back from the file); either way the promise resolves at once, so the connection moves on.
   * `offset` is where the batch ends (streamInto hands a batch on once written).
   */
  private hash(offset: number, buffers: readonly Buffer[], recycle: Recycle): Promise<void> {
    const bytes = buffers.reduce((sum, buffer) => sum + buffer.length, 0);
    const start = offset - bytes;
    if (start !== this.hashed) {
      const piece = this.pieces[Math.floor(start / RANGED_PIECE_BYTES)]!;
      if (piece.fromFile) recycle?.(buffers);
      else piece.queued.push({ buffers, bytes, recycle });
      return Promise.resolve();
    }
    const hashed = this.hashNow(buffers, bytes, recycle);
    this.advanceFrontier();
    return hashed;
  }

  private hashNow(buffers: readonly Buffer[], bytes: number, recycle: Recycle): Promise<void> {
    const hashed = this.hasher.update(buffers).finally(() => recycle?.(buffers));
    hashed.catch((err: unknown) => {
      this.failure ??= err;
      this.stop.abort(err);
    });
    this.hashing.push(hashed);
    this.hashed += bytes;
    return hashed;
  }

  private completed(index: number): void {
    this.pieces[index]!.state = 'done';
    this.map.markDone(index);
    this.advanceFrontier();
  }

  /**
   * Move the hash frontier past what can be hashed now: done pieces read back from the file
   * (resumed, or fetched without a reorder share), and the queued batches of pieces fetched
   * ahead of it; it stops in the first piece whose next bytes have not arrived. A piece left
   * behind gives its reorder share back once its bytes are hashed.
   */
  private advanceFrontier(): void {
    while (this.frontier < this.pieces.length) {
      const index = this.frontier;
      const piece = this.pieces[index]!;
      const { start, end } = this.map.range(index);
      if (piece.fromFile && piece.state === 'done' && this.hashed === start) {
        this.hashing.push(this.hasher.updateFromFile(this.path, start, end - start));
        this.hashed = end;
      }
      for (let next = piece.queued[0]; next !== undefined && this.hashed < end; next = piece.queued[0]) {
        piece.queued.shift();
        void this.hashNow(next.buffers, next.bytes, next.recycle).catch(() => undefined);
      }
      if (this.hashed < end) break;
      const reservation = piece.reservation;
      piece.reservation = undefined;
      if (reservation) void Promise.allSettled(this.hashing).then(reservation);
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
