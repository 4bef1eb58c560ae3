import type { Stats } from 'node:fs';
import { chmod, copyFile, link, lstat, rename, rm, stat } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { inodeId } from '../fs/disk-usage.js';
import { KeyedLocks } from '../node/volume-locks.js';

/**
 * Deduplication across models: identical file content is one inode, hardlinked into every
 * model that holds it.
 *
 *   <root>/files/sha256/<hex>   the shared copy of a file a tar layer unpacked (its content hash)
 *   <root>/blobs/sha256/<hex>   a raw layer's blob, which is also the file's bytes
 *
 * Sharing one content hash is decided under a per-hash lock, so a raw layer and a tar entry
 * with the same bytes, pulled at once, end up as one inode whichever lands first. Only inodes
 * of the same mode are linked: a model's 0555 script never becomes another's 0444 data file.
 */
export class SharedFiles {
  private readonly locks = new KeyedLocks();
  /** Inode → its name under files/: removing a model frees the shared files only it used. */
  private readonly byInode = new Map<string, string>();

  constructor(
    readonly filesDir: string,
    private readonly blobsDir: string,
  ) {}

  /**
   * Put a verified blob's bytes at `dest` (a path inside a temp dir): a hardlink of the shared
   * copy of that content when there is one, else of the blob itself, when the mode is the one
   * wanted; otherwise (or across filesystems) a copy.
   */
  linkBlob(blobPath: string, dest: string, mode: number): Promise<'linked' | 'copied'> {
    const hex = basename(blobPath);
    return this.locks.run(hex, async () => {
      for (const candidate of [join(this.filesDir, hex), blobPath]) {
        const info = await stat(candidate).catch(() => undefined);
        if (info === undefined || (info.mode & 0o7777) !== mode) continue;
        try {
          await link(candidate, dest);
          return 'linked';
        } catch (err) {
          const code = (err as NodeJS.ErrnoException).code;
          if (code === 'EXDEV') break;
          if (code !== 'ENOENT' || candidate === blobPath) throw err;
        }
      }
      await copyFile(blobPath, dest, 0);
      await chmod(dest, mode);
      return 'copied';
    });
  }

  /**
   * Share a just-written file (already fsynced, chmod'ed to its final mode, content `hex`)
   * with identical files of other models: replace it with a link to an existing copy, or
   * offer it as the shared copy for the next model.
   */
  shareFile(path: string, hex: string, mode: number): Promise<'shared' | 'offered' | 'kept'> {
    return this.locks.run(hex, async () => {
      for (const candidate of [join(this.filesDir, hex), join(this.blobsDir, hex)]) {
        const info = await stat(candidate).catch(() => undefined);
        if (info === undefined || (info.mode & 0o7777) !== mode) continue;
        const linkName = `${path}.${randomBytes(4).toString('hex')}.link`;
        try {
          await link(candidate, linkName);
          await rename(linkName, path);
          return 'shared';
        } catch (err) {
          await rm(linkName, { force: true });
          if ((err as NodeJS.ErrnoException).code === 'EXDEV') return 'kept';
          if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
        }
      }
      try {
        await link(path, join(this.filesDir, hex));
        const offered = await lstat(path).catch(() => undefined);
        if (offered) this.byInode.set(inodeId(offered), join(this.filesDir, hex));
        return 'offered';
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'EEXIST' || code === 'EXDEV') return 'kept';
        throw err;
      }
    });
  }

  /** The name under files/ of an inode, when it is a shared copy. */
  nameOf(stat: Stats): string | undefined {
    return this.byInode.get(inodeId(stat));
  }

  /** Run `work` on a shared copy under its content lock (freeing it must not race a share). */
  whileLocked<T>(path: string, work: () => Promise<T>): Promise<T> {
    return this.locks.run(basename(path), work);
  }

  /** Start the inode index afresh; `learn` refills it (the account's walk of the cache). */
  forgetAll(): void {
    this.byInode.clear();
  }

  learn(path: string, stat: Stats): void {
    this.byInode.set(inodeId(stat), path);
  }

  forget(stat: Stats): void {
    this.byInode.delete(inodeId(stat));
  }
}
