import type { Stats } from 'node:fs';
import { lstat } from 'node:fs/promises';
import { allocatedBytes, inodeId, walkTree } from '../fs/disk-usage.js';

/**
 * The running account of the bytes the cache occupies on disk, each inode once: what a full
 * disk-usage walk of the cache would say, kept without walking it. Why: the budget asks on
 * every reservation and after every eviction, and a walk of a cache of 100k files is 100k
 * lstat calls each time.
 *
 * It is the set of inodes the store knows, with their allocated bytes:
 * - `reconcile` walks the given directories once and starts the set afresh (start-up,
 *   `cache gc`, or when another process changed the cache: see ModelStore.usedBytes);
 * - the store adds what it commits (a published model's tree, a new blob) with `add`/`addTree`
 *   and takes out what it frees with `drop`/`dropFreedIn` before it deletes.
 *
 * Bytes still being written (a download in ingest/, a model being assembled in tmp/) are not
 * in the account: the pull's reservation covers them until the model is published, so they
 * are never counted twice.
 */
export class CacheUsage {
  private readonly inodes = new Map<string, number>();
  private total = 0;
  private reconciled = false;

  get bytes(): number {
    return this.total;
  }

  /** Whether a walk has set the account (before it, adding and dropping are moot). */
  get isReconciled(): boolean {
    return this.reconciled;
  }

  /**
   * Walk `dirs` and make the account exactly what is on disk. Returns the bytes. `visit` sees
   * every name on the way (the store learns its shared files' inodes in the same walk).
   */
  async reconcile(dirs: readonly string[], visit?: (path: string, stat: Stats) => void): Promise<number> {
    const inodes = new Map<string, number>();
    let total = 0;
    for (const dir of dirs) {
      await walkTree(dir, (path, stat) => {
        visit?.(path, stat);
        const id = inodeId(stat);
        if (inodes.has(id)) return false;
        inodes.set(id, allocatedBytes(stat));
        total += allocatedBytes(stat);
        return true;
      });
    }
    this.inodes.clear();
    for (const [id, bytes] of inodes) this.inodes.set(id, bytes);
    this.total = total;
    this.reconciled = true;
    return total;
  }

  has(stat: Stats): boolean {
    return this.inodes.has(inodeId(stat));
  }

  /** Count an inode at its current size (a known one is updated: a partial that grew). */
  add(stat: Stats): void {
    if (!this.reconciled) return;
    const id = inodeId(stat);
    const bytes = allocatedBytes(stat);
    this.total += bytes - (this.inodes.get(id) ?? 0);
    this.inodes.set(id, bytes);
  }

  async addPath(path: string): Promise<void> {
    if (!this.reconciled) return;
    const stat = await lstat(path).catch(() => undefined);
    if (stat) this.add(stat);
  }

  /** Count `dir` and everything under it: a tree just committed (a published model). */
  async addTree(dir: string): Promise<void> {
    if (!this.reconciled) return;
    await this.addPath(dir);
    await walkTree(dir, (_path, stat) => this.add(stat));
  }

  /** The inode is gone from disk (its last name was just removed). */
  drop(stat: Stats): void {
    const id = inodeId(stat);
    const bytes = this.inodes.get(id);
    if (bytes === undefined) return;
    this.total -= bytes;
    this.inodes.delete(id);
  }

  /**
   * Call before deleting the tree at `dir`: takes out the inodes that deleting it frees, those
   * whose every name is inside the tree. Returns the inodes that stay alive through exactly
   * one name outside it (a file shared through `files/`, a raw layer's blob), which the
   * caller may free too.
   */
  async dropFreedIn(dir: string): Promise<Stats[]> {
    const names = new Map<string, { stat: Stats; count: number }>();
    const own = await lstat(dir).catch(() => undefined);
    if (own === undefined) return [];
    names.set(inodeId(own), { stat: own, count: 1 });
    await walkTree(dir, (_path, stat) => {
      const id = inodeId(stat);
      const seen = names.get(id);
      if (seen) seen.count++;
      else names.set(id, { stat, count: 1 });
    });
    const linkedOnceOutside: Stats[] = [];
    for (const { stat, count } of names.values()) {
      if (stat.isDirectory() || stat.nlink <= count) this.drop(stat);
      else if (stat.nlink === count + 1) linkedOnceOutside.push(stat);
    }
    return linkedOnceOutside;
  }
}
