import { constants as fsConstants } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { classifyFsError } from '../errors/fs-error.js';
import { DIRECT_IO_ALIGNMENT, type PiecePool } from '../fs/piece-pool.js';

/**
 * The file a blob is downloaded into (ingest/<hex>), open twice: once as usual, once with
 * O_DIRECT. Whole pieces of the shared arena at aligned offsets (nearly every byte of a large
 * blob) go to the disk straight from that memory; anything else (a blob's last piece, small
 * blobs, fallback buffers) goes through the page cache.
 *
 * Why: measured on this project's bench machine, writing 2 GiB through the page cache and
 * fsyncing cost 4.8-5.3 s of kernel CPU and 3.0-3.2 s; the same bytes with O_DIRECT took
 * 0.08 s of CPU and 0.65-0.70 s. On 2 cores that copy into the page cache was what a pull
 * waited for. The cost: a model's bytes are not left in the page cache, so the first read by
 * the pod comes from disk (for models larger than the node's free memory it would anyway).
 *
 * A filesystem without O_DIRECT (EINVAL at open or at the first write) is written the usual
 * way; nothing else changes. fsync is still required before the rename: O_DIRECT does not
 * make the file's size and extents durable (and the disk may cache writes).
 *
 * Every failure of this file is the node's disk, never the registry: errors are classed once
 * here (fs-error.ts: NO_SPACE, CACHE_IO_FAILED), so the download loop does not retry them.
 */
export class BlobFile {
  /** Bytes this descriptor wrote past the page cache (for logs and tests). */
  bytesWrittenDirect = 0;

  private constructor(
    private readonly path: string,
    /** The ordinary descriptor: stat, truncate, unaligned writes, fsync. */
    private readonly handle: FileHandle,
    private direct: FileHandle | undefined,
    private readonly pool: PiecePool,
  ) {}

  static async open(path: string, pool: PiecePool, options: { direct: boolean }): Promise<BlobFile> {
    const handle = await open(path, fsConstants.O_RDWR | fsConstants.O_CREAT | fsConstants.O_NOFOLLOW, 0o644).catch((err: unknown) => {
      throw classifyFsError(err, `opening the download file ${path}`);
    });
    let direct: FileHandle | undefined;
    if (options.direct && pool.shared) {
      direct = await open(path, fsConstants.O_WRONLY | fsConstants.O_NOFOLLOW | fsConstants.O_DIRECT).catch(() => undefined);
    }
    return new BlobFile(path, handle, direct, pool);
  }

  size(): Promise<number> {
    return this.classified('reading the size of', async () => (await this.handle.stat()).size);
  }

  truncate(length: number): Promise<void> {
    return this.classified('truncating', () => this.handle.truncate(length));
  }

  /** Write `buffers` at `position`, all of them. */
  write(buffers: readonly Buffer[], position: number): Promise<void> {
    return this.classified('writing', () => this.writeNow(buffers, position));
  }

  private async writeNow(buffers: readonly Buffer[], position: number): Promise<void> {
    const bytes = buffers.reduce((sum, buffer) => sum + buffer.length, 0);
    if (this.direct && buffers.length === 1 && this.alignedForDirect(buffers[0]!, position)) {
      try {
        await writeFully(this.direct, buffers[0]!, position);
        this.bytesWrittenDirect += bytes;
        return;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EINVAL') throw err;
        // The filesystem took O_DIRECT at open but not for writes (some FUSE and network
        // filesystems): write this blob the usual way from here on.
        await this.direct.close().catch(() => undefined);
        this.direct = undefined;
      }
    }
    const { bytesWritten } = await this.handle.writev(buffers as Buffer[], position);
    if (bytesWritten < bytes) await writeFully(this.handle, Buffer.concat(buffers).subarray(bytesWritten), position + bytesWritten);
  }

  /** fsync: the data, and the size and extents the O_DIRECT writes left in the inode. */
  sync(): Promise<void> {
    return this.classified('fsyncing', () => this.handle.sync());
  }

  async close(): Promise<void> {
    await this.direct?.close().catch(() => undefined);
    await this.handle.close();
  }

  private async classified<T>(action: string, op: () => Promise<T>): Promise<T> {
    try {
      return await op();
    } catch (err) {
      throw classifyFsError(err, `${action} the download file ${this.path}`);
    }
  }

  private alignedForDirect(buffer: Buffer, position: number): boolean {
    const offset = this.pool.arenaOffset(buffer);
    return offset !== undefined && offset % DIRECT_IO_ALIGNMENT === 0 && position % DIRECT_IO_ALIGNMENT === 0 && buffer.length % DIRECT_IO_ALIGNMENT === 0;
  }
}

async function writeFully(handle: FileHandle, buffer: Buffer, at: number): Promise<void> {
  let offset = 0;
  while (offset < buffer.length) {
    const { bytesWritten } = await handle.write(buffer, offset, buffer.length - offset, at + offset);
    offset += bytesWritten;
  }
}
