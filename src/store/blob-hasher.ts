import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { DriverError } from '../errors/driver-error.js';
import { piecePool, type PiecePool, type SharedMemory } from '../fs/piece-pool.js';
import type { HashPart, HashReply, HashRequest, HashWorkerData } from './hash-worker.js';

/**
 * sha256 of a blob as it is downloaded, on worker threads. The bytes are hashed where they
 * already are: a piece of the shared arena (piece-pool.ts) is read by the worker in place;
 * other chunks (small blobs through undici, fallback pieces) are copied to it. A resumed
 * prefix is read back from the file once.
 *
 * Why workers: sha256 costs ~0.5 s of CPU per GiB here (SHA-NI); on the main thread it
 * serialises with receiving and writing. Why not read the file back, as this did before:
 * with O_DIRECT writes (blob-file.ts) the bytes are not in the page cache, and reading back
 * cost a second copy per byte even when they were.
 */
export interface BlobHasher {
  /**
   * Hash these bytes next (they follow everything passed before). Resolves once the worker
   * is done with them: only then may their memory be reused.
   */
  update(chunks: readonly Buffer[]): Promise<void>;
  /** Hash `length` bytes of the file at `path` from `at` next (pieces a resumed download kept). */
  updateFromFile(path: string, at: number, length: number): Promise<void>;
  /** `sha256:<hex>` of everything hashed. The hasher is done after this. */
  digest(): Promise<string>;
  /** Give up (the download failed or restarts from zero). */
  discard(): void;
}

/**
 * The worker's module (hash-worker.ts), beside this one: `.js` in dist/ (built by tsc), run
 * as the worker's entry. From source (tests and the bench, under tsx) the file is `.ts`, and
 * on Node 20 a worker does not take tsx's hooks from `execArgv: ['--import', 'tsx']` (its
 * entry still fails with "Unknown file extension .ts"), so there the entry is one line that
 * loads the module through tsx's own API. The module is the same either way.
 */
function workerEntry(): { entry: string | URL; eval: boolean } {
  if (!import.meta.url.endsWith('.ts')) return { entry: new URL('./hash-worker.js', import.meta.url), eval: false };
  const module = JSON.stringify(new URL('./hash-worker.ts', import.meta.url).href);
  const tsx = JSON.stringify(import.meta.resolve('tsx/esm/api'));
  return { entry: `import(${tsx}).then((tsx) => tsx.tsImport(${module}, ${module}))`, eval: true };
}
const WORKER = workerEntry();

/**
 * A worker and the answers it owes; ref'd only while it owes one, so it never keeps a CLI
 * alive. A worker that dies (out of memory) answers everything it owes with an error, so no
 * download waits forever on it; the next blob gets a new worker.
 */
class HashWorker {
  readonly worker: Worker;
  private readonly waiting = new Map<number, Array<(reply: HashReply) => void>>();
  private owed = 0;
  stopped: string | undefined;

  constructor(memory: SharedMemory | undefined) {
    const workerData: HashWorkerData = { memory };
    this.worker = new Worker(WORKER.entry, { eval: WORKER.eval, workerData });
    this.worker.on('message', (reply: HashReply) => {
      const queue = this.waiting.get(reply.id);
      const settle = queue?.shift();
      if (queue?.length === 0) this.waiting.delete(reply.id);
      if (--this.owed === 0) this.worker.unref();
      settle?.(reply);
    });
    this.worker.on('error', (err) => (this.stopped = err.message));
    this.worker.on('exit', (code) => {
      this.stopped ??= `exited with code ${code}`;
      const owed = [...this.waiting.entries()];
      this.waiting.clear();
      for (const [id, queue] of owed) for (const settle of queue) settle({ id, error: `the hash worker stopped: ${this.stopped}` });
    });
    // After adding the listeners: adding a 'message' listener refs the worker's port again.
    this.worker.unref();
  }

  /** Post a message that the worker answers; answers for one id come back in order. */
  ask(id: number, message: HashRequest): Promise<HashReply> {
    if (this.stopped !== undefined) return Promise.resolve({ id, error: `the hash worker stopped: ${this.stopped}` });
    return new Promise((resolve) => {
      const queue = this.waiting.get(id) ?? [];
      queue.push(resolve);
      this.waiting.set(id, queue);
      if (this.owed++ === 0) this.worker.ref();
      this.worker.postMessage(message);
    });
  }

  tell(message: HashRequest): void {
    this.worker.postMessage(message);
  }
}

export class HashWorkers {
  private readonly workers: HashWorker[] = [];
  private nextId = 1;
  private nextWorker = 0;

  constructor(
    private readonly size: number,
    private readonly pool: PiecePool,
  ) {
    // Sent before any new piece can be: a piece is handed out after the growth that made it.
    pool.onArenaChange((memory) => {
      for (const worker of this.workers) worker.tell({ op: 'memory', memory });
    });
  }

  /** Stop every worker now (what their death would do): hashes in progress fail, later ones get new workers. */
  async stop(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.worker.terminate()));
  }

  open(prefix?: { path: string; length: number }): BlobHasher {
    const alive = this.workers.filter((w) => w.stopped === undefined);
    this.workers.splice(0, this.workers.length, ...alive);
    if (this.workers.length < this.size) this.workers.push(new HashWorker(this.pool.memory));
    const worker = this.workers[this.nextWorker++ % this.workers.length]!;
    const id = this.nextId++;
    worker.tell({ op: 'open', id, path: prefix?.path, prefix: prefix?.length ?? 0 });
    return {
      update: async (chunks) => {
        const parts: HashPart[] = chunks.map((chunk) => {
          const offset = this.pool.arenaOffset(chunk);
          return offset !== undefined ? { offset, length: chunk.length } : { bytes: chunk };
        });
        const reply = await worker.ask(id, { op: 'update', id, parts });
        if (reply.error !== undefined) throw hashFailed(reply.error);
      },
      updateFromFile: async (path, at, length) => {
        const reply = await worker.ask(id, { op: 'update', id, parts: [{ path, at, length }] });
        if (reply.error !== undefined) throw hashFailed(reply.error);
      },
      digest: async () => {
        const reply = await worker.ask(id, { op: 'digest', id });
        if (reply.hex === undefined) throw hashFailed(reply.error ?? 'no digest');
        return `sha256:${reply.hex}`;
      },
      discard: () => worker.tell({ op: 'discard', id }),
    };
  }
}

/** Not the registry's fault and not worth a retry of the download: the pull fails, kubelet retries it later. */
function hashFailed(why: string): DriverError {
  return new DriverError('INTERNAL', `hashing failed: ${why}`, { retryable: false });
}

// One per core up to 4: blobs hash in parallel (a blob's bytes always go to one worker, in order).
const workers = new HashWorkers(Math.max(1, Math.min(4, availableParallelism())), piecePool);

/**
 * A hasher for a blob whose first `prefix.length` bytes are already in the file at
 * `prefix.path` (a resumed download); those are read back once, the rest arrives by `update`.
 */
export function createBlobHasher(prefix?: { path: string; length: number }): BlobHasher {
  return workers.open(prefix);
}
