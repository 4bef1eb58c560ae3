import type { Stats } from 'node:fs';
import { lstat, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { writeFileAtomic } from '../fs/atomic-write.js';
import { inodeId } from '../fs/disk-usage.js';
import { CacheUsage } from './cache-usage.js';
import type { ContentStore } from './content-store.js';
import type { SharedFiles } from './shared-files.js';

/**
 * Written by `cache gc` (another process) once it has changed the cache and walked it: the
 * node plugin's running account sees a new stamp and reconciles (one stat per usedBytes()).
 */
const USAGE_STAMP = 'usage-reconciled.json';

/**
 * The running account (cache-usage.ts) laid over the store's directories: which of them it
 * walks, which blobs it has counted, and the stamp by which another process on the same
 * cache root says it changed the cache. Every removal of a last name goes through
 * `unlinkIfSingle` or `dropFreedIn`, so the account, the shared-file index and the counted
 * blobs change together.
 */
export class CacheAccount {
  private readonly usage = new CacheUsage();
  /** Names under blobs/ the account has counted: a publish counts only new ones. */
  private readonly countedBlobs = new Set<string>();
  /** The usage stamp (dev:ino:mtime) the account was last reconciled against. */
  private stampSeen: string | undefined;

  constructor(
    private readonly root: string,
    private readonly content: ContentStore,
    private readonly shared: SharedFiles,
    /** Every directory the cache occupies, in the order the walk visits them. */
    private readonly dirs: readonly string[],
  ) {}

  get isReconciled(): boolean {
    return this.usage.isReconciled;
  }

  /**
   * Bytes the cache occupies on disk, each inode once: no walk, except the first time and
   * after another process stamped a change (one stat to know).
   */
  async usedBytes(): Promise<number> {
    if (!this.usage.isReconciled || (await this.readStamp()) !== this.stampSeen) await this.reconcile();
    return this.usage.bytes;
  }

  /** Walk the cache and set the account to what is on disk (start-up, `cache gc`). */
  async reconcile(): Promise<number> {
    const stamp = await this.readStamp();
    this.shared.forgetAll();
    this.countedBlobs.clear();
    const bytes = await this.usage.reconcile(this.dirs, (path, stat) => {
      const dir = dirname(path);
      if (dir === this.shared.filesDir) this.shared.learn(path, stat);
      else if (dir === this.content.blobsDir) this.countedBlobs.add(basename(path));
    });
    this.stampSeen = stamp;
    return bytes;
  }

  /** Tell other processes on this cache root that it changed under them. */
  async stampChanged(): Promise<void> {
    await writeFileAtomic(join(this.root, 'state', USAGE_STAMP), `${JSON.stringify({ pid: process.pid, at: new Date().toISOString() })}\n`);
    this.stampSeen = await this.readStamp();
  }

  /** A model just renamed into models/: count its tree and the blobs its pull added. */
  async countPublished(target: string): Promise<void> {
    if (!this.usage.isReconciled) return;
    await this.usage.addTree(target);
    for (const digest of await this.content.listBlobs()) {
      const hex = digest.slice('sha256:'.length);
      if (this.countedBlobs.has(hex)) continue;
      await this.usage.addPath(join(this.content.blobsDir, hex));
      this.countedBlobs.add(hex);
    }
  }

  /** Before deleting the tree at `dir`: see CacheUsage.dropFreedIn. */
  async dropFreedIn(dir: string): Promise<Stats[]> {
    return this.usage.isReconciled ? this.usage.dropFreedIn(dir) : [];
  }

  /** Remove `path` when it is the inode's only name (nothing else uses it). Never throws. */
  async unlinkIfSingle(path: string): Promise<boolean> {
    try {
      const info = await lstat(path);
      if (info.nlink > 1) return false;
      await rm(path, { force: true });
      this.usage.drop(info);
      this.shared.forget(info);
      if (dirname(path) === this.content.blobsDir) this.countedBlobs.delete(basename(path));
      return true;
    } catch {
      return false;
    }
  }

  private async readStamp(): Promise<string | undefined> {
    const stat = await lstat(join(this.root, 'state', USAGE_STAMP)).catch(() => undefined);
    return stat === undefined ? undefined : `${inodeId(stat)}:${stat.mtimeMs}`;
  }
}
