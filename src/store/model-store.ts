import { randomBytes } from 'node:crypto';
import { lstat, mkdir, readdir, readFile, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { classifyFsError } from '../errors/fs-error.js';
import { fsyncDirectory, writeFileAtomic } from '../fs/atomic-write.js';
import { diskUsage } from '../fs/disk-usage.js';
import type { Logger } from '../log/logger.js';
import { CacheAccount } from './cache-account.js';
import type { ContentStore } from './content-store.js';
import { collectGarbage, dropUnreferencedBlobs, type GcResult, type GcScope, removeOrphanTemps } from './garbage-collector.js';
import { assertModelKey, keyToFileName } from './model-key.js';
import { sealTree, unsealDirectories } from './read-only-tree.js';
import { SharedFiles } from './shared-files.js';

export type { GcResult } from './garbage-collector.js';

/** What the store keeps about a model, in `<root>/state/models/<key as file name>.json`. */
export interface ModelRecord {
  key: string;
  /** Manifest digest the reference resolved to (the index digest when there was one). */
  digest: string;
  reference: string;
  /** Bytes of the model's files (each inode once). */
  sizeBytes: number;
  /** Blobs the model's files are hardlinks of (`.raw` layers); kept while the model exists. */
  blobs: string[];
  created: string;
  lastUsed: string;
}

export interface ModelEntry extends ModelRecord {
  path: string;
}

/**
 * Complete models, unpacked, by key (see model-key.ts):
 *
 *   <root>/models/sha256/<hex>[-<sel>]/   published by one rename of a finished temp dir,
 *                                         read-only (dirs 0555, files 0444 or 0555)
 *   <root>/tmp/<pid>-<random>/            models being assembled (dead processes' are removed)
 *   <root>/files/sha256/<hex>             files from tar layers, shared by hardlink across models
 *   <root>/state/models/<key>.json        ModelRecord; outside the model dir, which pods see
 *
 * A visible model directory is always complete: assembly happens in tmp/, the tree is sealed
 * read-only, then renamed into place (the commit point). An existing target means another
 * pull won, which is success. Metadata is written after the rename; a model found without it
 * (crash in between) is still listed, with what the directory itself tells.
 */
export class ModelStore {
  readonly modelsDir: string;
  readonly tmpDir: string;
  readonly filesDir: string;
  readonly stateDir: string;
  private readonly activeTemps = new Set<string>();
  /** Identical files across models as one inode (shared-files.ts). */
  private readonly shared: SharedFiles;
  /** Bytes on disk, kept up to date by publish, remove and gc (cache-account.ts). */
  private readonly account: CacheAccount;
  private readonly gcScope: GcScope;

  private constructor(
    readonly root: string,
    readonly content: ContentStore,
    private readonly logger?: Logger,
  ) {
    this.modelsDir = join(root, 'models');
    this.tmpDir = join(root, 'tmp');
    this.filesDir = join(root, 'files', 'sha256');
    this.stateDir = join(root, 'state', 'models');
    this.shared = new SharedFiles(this.filesDir, content.blobsDir);
    this.account = new CacheAccount(root, content, this.shared, [content.blobsDir, content.ingestDir, this.modelsDir, this.filesDir, this.tmpDir]);
    this.gcScope = {
      content,
      account: this.account,
      filesDir: this.filesDir,
      tmpDir: this.tmpDir,
      activeTemps: this.activeTemps,
      referencedBlobs: async () => new Set((await this.list()).flatMap((model) => model.blobs)),
    };
  }

  static async open(root: string, options: { content: ContentStore; logger?: Logger }): Promise<ModelStore> {
    const store = new ModelStore(root, options.content, options.logger);
    for (const dir of [join(store.modelsDir, 'sha256'), store.tmpDir, store.filesDir, store.stateDir]) {
      await mkdir(dir, { recursive: true });
    }
    await removeOrphanTemps(store.tmpDir);
    return store;
  }

  path(key: string): string {
    assertModelKey(key);
    return join(this.modelsDir, key);
  }

  async has(key: string): Promise<boolean> {
    try {
      return (await lstat(this.path(key))).isDirectory();
    } catch {
      return false;
    }
  }

  /** A fresh assembly directory under tmp/, removed by `discardTemp` or moved by `publish`. */
  async createTemp(): Promise<string> {
    const dir = join(this.tmpDir, `${process.pid}-${randomBytes(8).toString('hex')}`);
    await mkdir(dir, { mode: 0o755 });
    this.activeTemps.add(dir);
    return dir;
  }

  async discardTemp(dir: string): Promise<void> {
    await unsealDirectories(dir);
    await this.account.dropFreedIn(dir);
    await rm(dir, { recursive: true, force: true });
    this.activeTemps.delete(dir);
  }

  /**
   * Seal `tempDir` read-only and rename it to the model's place. Returns the model as stored
   * (the existing one when another pull published first).
   */
  async publish(key: string, tempDir: string, record: { digest: string; reference: string; blobs: string[] }): Promise<ModelEntry> {
    const target = this.path(key);
    const sizeBytes = await sealTree(tempDir);
    await fsyncDirectory(tempDir);
    try {
      await rename(tempDir, target);
      this.activeTemps.delete(tempDir);
      await fsyncDirectory(join(this.modelsDir, 'sha256'));
      await this.account.countPublished(target);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== 'EEXIST' && code !== 'ENOTEMPTY') throw err;
      this.logger?.debug({ model: key }, 'model already published by another pull');
      await this.discardTemp(tempDir);
      const existing = await this.get(key);
      if (existing) return existing;
    }
    const now = new Date().toISOString();
    const full: ModelRecord = { key, ...record, sizeBytes, created: now, lastUsed: now };
    await this.writeRecord(full);
    return { ...full, path: target };
  }

  async list(): Promise<ModelEntry[]> {
    const names = await readdir(join(this.modelsDir, 'sha256')).catch(() => [] as string[]);
    const entries: ModelEntry[] = [];
    for (const name of names) {
      const entry = await this.get(`sha256/${name}`).catch(() => undefined);
      if (entry) entries.push(entry);
    }
    return entries;
  }

  /** Mark a model used now (LRU); returns it, or undefined when it is not cached. */
  async touch(key: string): Promise<ModelEntry | undefined> {
    const entry = await this.get(key);
    if (!entry) return undefined;
    const { path, ...record } = entry;
    const touched = { ...record, lastUsed: new Date().toISOString() };
    await this.writeRecord(touched);
    return { ...touched, path };
  }

  /** Remove a model: renamed away first (atomic: it is either fully there or gone), then deleted. */
  async remove(key: string): Promise<void> {
    const target = this.path(key);
    const doomed = join(this.tmpDir, `${process.pid}-${randomBytes(8).toString('hex')}-removed`);
    try {
      await rename(target, doomed);
      await fsyncDirectory(join(this.modelsDir, 'sha256'));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    await rm(join(this.stateDir, `${keyToFileName(key)}.json`), { force: true });
    await unsealDirectories(doomed);
    const linkedOnceOutside = await this.account.dropFreedIn(doomed);
    await rm(doomed, { recursive: true, force: true });
    // Shared files only this model used are garbage now; freeing them here (not in a gc that
    // lists every shared file) keeps an eviction's cost the size of the model.
    for (const stat of linkedOnceOutside) {
      const shared = this.shared.nameOf(stat);
      if (shared !== undefined) await this.shared.whileLocked(shared, () => this.account.unlinkIfSingle(shared));
    }
  }

  /** See garbage-collector.ts. */
  collectGarbage(options: { staleMs?: number } = {}): Promise<GcResult> {
    return collectGarbage(this.gcScope, options);
  }

  /** Blobs no model references and no pull holds (garbage-collector.ts); how many went. */
  dropUnreferencedBlobs(): Promise<number> {
    return dropUnreferencedBlobs(this.gcScope);
  }

  /**
   * Bytes the cache occupies on disk (blobs, downloads, models, shared files, temp dirs; each
   * inode once), from the running account (cache-account.ts). Bytes a running pull is writing
   * are not in it until the model is published: its reservation covers them.
   */
  usedBytes(): Promise<number> {
    return this.account.usedBytes();
  }

  /** Walk the cache and set the running account to what is on disk (start-up, `cache gc`). */
  reconcileUsage(): Promise<number> {
    return this.account.reconcile();
  }

  /**
   * Tell other processes on this cache root (the node plugin) that it changed under them:
   * their account reconciles at its next use. `cache gc` calls it after its removals.
   */
  stampUsageChanged(): Promise<void> {
    return this.account.stampChanged();
  }

  /** See SharedFiles.linkBlob. */
  linkBlob(blobPath: string, dest: string, mode: number): Promise<'linked' | 'copied'> {
    return this.shared.linkBlob(blobPath, dest, mode);
  }

  /** See SharedFiles.shareFile. */
  shareFile(path: string, hex: string, mode: number): Promise<'shared' | 'offered' | 'kept'> {
    return this.shared.shareFile(path, hex, mode);
  }

  /** One cached model, or undefined when it is not (completely) there. */
  async get(key: string): Promise<ModelEntry | undefined> {
    assertModelKey(key);
    const path = this.path(key);
    let dirInfo;
    try {
      dirInfo = await lstat(path);
    } catch {
      return undefined;
    }
    if (!dirInfo.isDirectory()) return undefined;
    const record = await this.readRecord(key);
    if (record) return { ...record, path };
    const hex = key.slice('sha256/'.length, 'sha256/'.length + 64);
    const when = dirInfo.mtime.toISOString();
    return { key, digest: `sha256:${hex}`, reference: '', sizeBytes: (await diskUsage(path)).bytes, blobs: [], created: when, lastUsed: when, path };
  }

  private async readRecord(key: string): Promise<ModelRecord | undefined> {
    try {
      const parsed = JSON.parse(await readFile(join(this.stateDir, `${keyToFileName(key)}.json`), 'utf8')) as ModelRecord;
      return parsed.key === key ? parsed : undefined;
    } catch {
      return undefined;
    }
  }

  private async writeRecord(record: ModelRecord): Promise<void> {
    try {
      await writeFileAtomic(join(this.stateDir, `${keyToFileName(record.key)}.json`), `${JSON.stringify(record, null, 2)}\n`);
    } catch (err) {
      throw classifyFsError(err, `recording model ${record.key}${record.reference ? ` (${record.reference})` : ''}`);
    }
  }
}
