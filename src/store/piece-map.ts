import { readFile, rm } from 'node:fs/promises';
import { writeFileAtomic } from '../fs/atomic-write.js';

/**
 * Which pieces of a ranged download are on disk, kept beside the ingest file as
 * `ingest/<hex>.pieces` so that a download resumed after a crash (SIGKILL, a node reboot)
 * keeps every completed piece, not only a contiguous prefix.
 *
 * Crash safety: a piece is marked only after the ingest file has been fsynced with it in, and
 * the map is written to a temp name, fsynced and renamed into place (fs/atomic-write.ts), so
 * a map on disk never names a piece that is not. An ingest file with scattered pieces always
 * has a map: the downloader writes an empty one before the first ranged byte. Resumed pieces
 * are hashed again from the file with the rest, so a map that lies costs a refetch, not a
 * corrupt blob (the whole-blob digest decides).
 */
export class PieceMap {
  private readonly done: Uint8Array;
  private doneCount = 0;

  private constructor(
    readonly size: number,
    readonly pieceBytes: number,
    done?: Uint8Array,
  ) {
    this.done = done ?? new Uint8Array(Math.ceil(this.count / 8));
    for (let i = 0; i < this.count; i++) if (this.isDone(i)) this.doneCount++;
  }

  static fresh(size: number, pieceBytes: number): PieceMap {
    return new PieceMap(size, pieceBytes);
  }

  static pathFor(ingestPath: string): string {
    return `${ingestPath}.pieces`;
  }

  /** The map of an earlier run of this download, or undefined when none fits (size, piece size). */
  static async load(path: string, size: number, pieceBytes: number): Promise<PieceMap | undefined> {
    let parsed: { version?: unknown; size?: unknown; pieceBytes?: unknown; done?: unknown };
    try {
      parsed = JSON.parse(await readFile(path, 'utf8')) as typeof parsed;
    } catch {
      return undefined;
    }
    if (parsed.version !== 1 || parsed.size !== size || parsed.pieceBytes !== pieceBytes || typeof parsed.done !== 'string') return undefined;
    const done = new Uint8Array(Buffer.from(parsed.done, 'base64'));
    if (done.length !== Math.ceil(Math.ceil(size / pieceBytes) / 8)) return undefined;
    return new PieceMap(size, pieceBytes, done);
  }

  static async remove(path: string): Promise<void> {
    await rm(path, { force: true });
  }

  get count(): number {
    return Math.ceil(this.size / this.pieceBytes);
  }

  get completed(): number {
    return this.doneCount;
  }

  /** Bytes of the completed pieces. */
  get completedBytes(): number {
    let bytes = 0;
    for (let i = 0; i < this.count; i++) if (this.isDone(i)) bytes += this.range(i).end - this.range(i).start;
    return bytes;
  }

  range(index: number): { start: number; end: number } {
    const start = index * this.pieceBytes;
    return { start, end: Math.min(this.size, start + this.pieceBytes) };
  }

  isDone(index: number): boolean {
    return (this.done[index >> 3]! & (1 << (index & 7))) !== 0;
  }

  markDone(index: number): void {
    if (this.isDone(index)) return;
    this.done[index >> 3]! |= 1 << (index & 7);
    this.doneCount++;
  }

  /** A copy (what to write while later pieces keep completing). */
  snapshot(): PieceMap {
    return new PieceMap(this.size, this.pieceBytes, new Uint8Array(this.done));
  }

  async save(path: string): Promise<void> {
    const body = { version: 1, size: this.size, pieceBytes: this.pieceBytes, done: Buffer.from(this.done).toString('base64') };
    await writeFileAtomic(path, `${JSON.stringify(body)}\n`);
  }
}
