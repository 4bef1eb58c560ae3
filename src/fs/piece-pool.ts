/**
 * Memory for large blob bodies on their way from the socket to disk: 4 MiB pieces, recycled.
 *
 * The pieces live in one shared WebAssembly.Memory, for two properties a Buffer from the heap
 * does not have:
 * - page-aligned addresses, which O_DIRECT writes need (blob-file.ts): malloc aligns to 16
 *   bytes only, and JavaScript cannot see an address to align by hand;
 * - shared with the hash workers (blob-hasher.ts), which read a piece where it is: no copy,
 *   no transfer, no read back from the file.
 *
 * A piece is handed out by `take`, filled (raw-http.ts), written and hashed, then given back
 * with `give`. A piece dropped without being given back (a body destroyed mid-way) returns to
 * the pool when its view is garbage-collected. The arena is created on first use and dropped
 * after 30 s with every piece back (an idle node plugin holds none of it). When it is full,
 * or WebAssembly is not available (node --jitless), `take` falls back to ordinary Buffers:
 * slower (buffered writes, hashed from a copy), never wrong.
 */
export const PIECE_BYTES = 4 * 2 ** 20;

/** O_DIRECT wants address, file offset and length on a multiple of the logical block size; 4 KiB covers every disk in use. */
export const DIRECT_IO_ALIGNMENT = 4096;

const WASM_PAGE_BYTES = 64 * 1024;
const PAGES_PER_PIECE = PIECE_BYTES / WASM_PAGE_BYTES;
/** Address space reserved up front; memory is committed only as pieces are first used. */
const MAX_ARENA_PIECES = 128;
/** How long an arena with every piece back is kept before it is dropped. */
const ARENA_IDLE_MS = 30_000;
/** Fallback Buffers kept for reuse while idle (a fresh 4 MiB allocation costs page faults). */
const MAX_FREE_FALLBACK = 8;

/** The part of a shared WebAssembly.Memory used here (the project's TypeScript libs do not declare WebAssembly). */
export interface SharedMemory {
  readonly buffer: SharedArrayBuffer;
  grow(pages: number): number;
}
type SharedMemoryConstructor = new (descriptor: { initial: number; maximum: number; shared: true }) => SharedMemory;
/** Absent under node --jitless. */
const WasmMemory = (globalThis as { WebAssembly?: { Memory: SharedMemoryConstructor } }).WebAssembly?.Memory;

export class PiecePool {
  private arena: SharedMemory | undefined;
  private readonly free: number[] = [];
  private readonly inUse: Uint8Array;
  private inUseCount = 0;
  /** Bumped each time a piece is taken: a collection of an earlier owner's view must not free it. */
  private readonly generation: Uint32Array;
  /** Views over the arena: a memory grown later is seen through a new SharedArrayBuffer object. */
  private arenaBuffers = new WeakSet<ArrayBufferLike>();
  private readonly fallbackFree: ArrayBuffer[] = [];
  private readonly fallbackIssued = new WeakSet<ArrayBufferLike>();
  private readonly leaked = new FinalizationRegistry<{ index: number; generation: number }>(({ index, generation }) => this.release(index, generation));
  private readonly arenaListeners = new Set<(arena: SharedMemory | undefined) => void>();
  private idleTimer: NodeJS.Timeout | undefined;
  private pieces = 0;

  constructor(
    private readonly maxPieces = MAX_ARENA_PIECES,
    /** An arena with no piece out for this long is dropped, so an idle node plugin holds no buffers. */
    private readonly idleMs = ARENA_IDLE_MS,
  ) {
    this.inUse = new Uint8Array(maxPieces);
    this.generation = new Uint32Array(maxPieces);
  }

  /** Whether pieces can come from a shared, page-aligned arena (else all are fallbacks). */
  get shared(): boolean {
    return WasmMemory !== undefined;
  }

  /** The current arena (created on the first take, dropped when idle). */
  get memory(): SharedMemory | undefined {
    return this.arena;
  }

  /** Told each time the arena is created, grown or dropped (hash workers read it: blob-hasher.ts). */
  onArenaChange(listener: (arena: SharedMemory | undefined) => void): void {
    this.arenaListeners.add(listener);
  }

  /** A 4 MiB piece: page-aligned and shared when the arena has room. */
  take(): Buffer {
    const index = this.free.pop() ?? this.grow();
    if (index === undefined) return this.takeFallback();
    clearTimeout(this.idleTimer);
    this.inUse[index] = 1;
    this.inUseCount++;
    this.generation[index] = (this.generation[index]! + 1) >>> 0;
    const buffer = this.arena!.buffer;
    this.arenaBuffers.add(buffer);
    const piece = Buffer.from(buffer, index * PIECE_BYTES, PIECE_BYTES);
    this.leaked.register(piece, { index, generation: this.generation[index]! }, piece);
    return piece;
  }

  /**
   * The piece `chunk` lies in is handed on as `chunk` (a view of its first bytes, when the
   * body ended inside it): whoever holds `chunk` now owns the piece, and it returns to the
   * pool with `chunk`, by `give` or by garbage collection.
   */
  handOn(piece: Buffer, chunk: Buffer): void {
    const offset = this.arenaOffset(piece);
    if (offset === undefined || chunk === piece) return;
    const index = offset / PIECE_BYTES;
    this.leaked.unregister(piece);
    this.leaked.register(chunk, { index, generation: this.generation[index]! }, chunk);
  }

  /** Give back chunks this pool handed out (once written and hashed); anything else is ignored. */
  give(chunks: readonly Buffer[]): void {
    for (const chunk of chunks) {
      const offset = this.arenaOffset(chunk);
      if (offset !== undefined) {
        if (offset % PIECE_BYTES !== 0) continue;
        this.leaked.unregister(chunk);
        this.release(offset / PIECE_BYTES);
        continue;
      }
      const memory = chunk.buffer as ArrayBuffer;
      if (chunk.byteOffset !== 0 || !this.fallbackIssued.has(memory) || this.fallbackFree.length >= MAX_FREE_FALLBACK || this.fallbackFree.includes(memory)) continue;
      this.fallbackFree.push(memory);
    }
  }

  /** Byte offset of `chunk` in the arena, or undefined when it is not arena memory. */
  arenaOffset(chunk: Uint8Array): number | undefined {
    return this.arenaBuffers.has(chunk.buffer) ? chunk.byteOffset : undefined;
  }

  /** Pieces of the arena handed out and not yet back (for tests and metrics). */
  get piecesInUse(): number {
    return this.inUseCount;
  }

  private release(index: number, generation = this.generation[index]): void {
    // Given back twice, or an earlier owner's view collected after the piece was taken again.
    if (this.inUse[index] !== 1 || generation !== this.generation[index]) return;
    this.inUse[index] = 0;
    this.free.push(index);
    if (--this.inUseCount === 0) {
      this.idleTimer = setTimeout(() => this.dropIfIdle(), this.idleMs);
      this.idleTimer.unref();
    }
  }

  private grow(): number | undefined {
    if (this.pieces >= this.maxPieces) return undefined;
    try {
      if (!this.arena) {
        if (!WasmMemory) return undefined;
        this.arena = new WasmMemory({ initial: 0, maximum: this.maxPieces * PAGES_PER_PIECE, shared: true });
      }
      this.arena.grow(PAGES_PER_PIECE);
    } catch {
      return undefined; // out of address space or memory: fall back
    }
    // Told after every growth, before the new piece is handed out: another thread's view of a
    // shared memory may keep the length it had when it got the memory until V8 updates it
    // later, so a hash worker told only at creation (length 0) could read a piece past the end
    // of its view ("Invalid typed array length", seen in CI). The memory posted now arrives
    // with at least this length, and before any update naming the piece.
    for (const listener of this.arenaListeners) listener(this.arena);
    return this.pieces++;
  }

  /**
   * WebAssembly memory never shrinks: the only way to give it back is to drop the whole
   * arena (its memory goes once the last view of it is collected, here and in the workers).
   * Runs by itself after the idle delay; callable sooner.
   */
  dropIfIdle(): void {
    if (this.inUseCount !== 0 || !this.arena) return;
    this.arena = undefined;
    this.arenaBuffers = new WeakSet();
    this.free.length = 0;
    this.pieces = 0;
    for (const listener of this.arenaListeners) listener(undefined);
  }

  private takeFallback(): Buffer {
    const reused = this.fallbackFree.pop();
    if (reused !== undefined) return Buffer.from(reused, 0, PIECE_BYTES);
    const piece = Buffer.allocUnsafeSlow(PIECE_BYTES);
    this.fallbackIssued.add(piece.buffer);
    return piece;
  }
}

/** The process's pool: one arena shared by every download and every hash worker. */
export const piecePool = new PiecePool();
