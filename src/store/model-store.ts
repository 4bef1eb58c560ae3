import { randomBytes } from 'node:crypto';
import { chmod, copyFile, link, lstat, mkdir, readdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { classifyFsError } from '../errors/fs-error.js';
import { fsyncDirectory, writeFileAtomic } from '../fs/atomic-write.js';
import { diskUsage, inodeId } from '../fs/disk-usage.js';
import type { Logger } from '../log/logger.js';
import { KeyedLocks } from '../node/volume-locks.js';
import { CacheUsage } from './cache-usage.js';
import type { ContentStore } from './content-store.js';
import { isSha256Hex } from '../registry/digest.js';
import { assertModelKey, keyToFileName } from './model-key.js';
import { sealTree, unsealDirectories } from './read-only-tree.js';

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

export interface GcResult {
  blobs: number;
  files: number;
  ingest: number;
  tmp: number;
}

/**
 * Written by `cache gc` (another process) once it has changed the cache and walked it: the
 * node plugin's running account sees a new stamp and reconciles (one stat per usedBytes()).
 */
const USAGE_STAMP = 'usage-reconciled.json';

/** Partial downloads and temp dirs younger than this survive gc: a retry may resume them. */
const DEFAULT_STALE_MS = 60 * 60 * 1000;

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
  /** Per content hash: sharing one file's bytes between models is decided one at a time. */
  private readonly shareLocks = new KeyedLocks();
  readonly stateDir: string;
  private readonly activeTemps = new Set<string>();
  /** Bytes on disk, kept up to date by publish, remove and gc (cache-usage.ts). */
  private readonly usage = new CacheUsage();
  /** Inode → its name under files/: removing a model frees the shared files only it used. */
  private readonly sharedByInode = new Map<string, string>();
  /** Names under blobs/ the account has counted: a publish counts only new ones. */
  private readonly countedBlobs = new Set<string>();
  /** The usage stamp (dev:ino:mtime) the account was last reconciled against. */
  private usageStampSeen: string | undefined;

  private constructor(
    readonly root: string,
    readonly content: ContentStore,
    private readonly logger?: Logger,
  ) {
    this.modelsDir = join(root, 'models');
    this.tmpDir = join(root, 'tmp');
    this.filesDir = join(root, 'files', 'sha256');
    this.stateDir = join(root, 'state', 'models');
  }

  static async open(root: string, options: { content: ContentStore; logger?: Logger }): Promise<ModelStore> {
    const store = new ModelStore(root, options.content, options.logger);
    for (const dir of [join(store.modelsDir, 'sha256'), store.tmpDir, store.filesDir, store.stateDir]) {
      await mkdir(dir, { recursive: true });
    }
    await store.removeOrphanTemps();
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
    if (this.usage.isReconciled) await this.usage.dropFreedIn(dir);
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
      await this.countPublished(target);
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

  /** Record that the model was used now (LRU order for eviction). */
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
    const linkedOnceOutside = this.usage.isReconciled ? await this.usage.dropFreedIn(doomed) : [];
    await rm(doomed, { recursive: true, force: true });
    // Shared files only this model used are garbage now; freeing them here (not in a gc that
    // lists every shared file) keeps an eviction's cost the size of the model.
    for (const stat of linkedOnceOutside) {
      const shared = this.sharedByInode.get(inodeId(stat));
      if (shared !== undefined) await this.shareLocks.run(basename(shared), () => this.unlinkIfSingle(shared));
    }
  }

  /**
   * Drop what no model needs: blobs no model references (and that no pull in this process
   * holds), shared files no model links to, and stale partial downloads / temp dirs. A blob
   * or shared file with more than one link is still part of a model, so removing it would
   * free nothing; it is kept.
   */
  async collectGarbage(options: { staleMs?: number } = {}): Promise<GcResult> {
    const staleMs = options.staleMs ?? DEFAULT_STALE_MS;
    const result: GcResult = { blobs: await this.dropUnreferencedBlobs(), files: 0, ingest: 0, tmp: 0 };
    for (const hex of (await readdir(this.filesDir).catch(() => [] as string[])).filter(isSha256Hex)) {
      if (await this.unlinkIfSingle(join(this.filesDir, hex))) result.files++;
    }
    const active = this.content.activeIngests();
    for (const name of await readdir(this.content.ingestDir).catch(() => [] as string[])) {
      if (active.has(name) || this.content.isLeased(name)) continue;
      if (await this.removeIfStale(join(this.content.ingestDir, name), staleMs)) result.ingest++;
    }
    for (const name of await readdir(this.tmpDir).catch(() => [] as string[])) {
      const path = join(this.tmpDir, name);
      if (this.activeTemps.has(path)) continue;
      if (await this.removeIfStale(path, staleMs)) result.tmp++;
    }
    return result;
  }

  /**
   * Blobs no model references and no pull in this process holds (tar layers' blobs once
   * unpacked, raw blobs of removed models). Costs a read of each model record and a look at
   * each blob, not a walk of the models. Returns how many were removed.
   */
  async dropUnreferencedBlobs(): Promise<number> {
    let removed = 0;
    const referenced = new Set((await this.list()).flatMap((model) => model.blobs));
    for (const digest of await this.content.listBlobs()) {
      const hex = digest.slice('sha256:'.length);
      if (referenced.has(digest) || this.content.isLeased(hex)) continue;
      if (await this.unlinkIfSingle(join(this.content.blobsDir, hex))) removed++;
    }
    return removed;
  }

  /**
   * Bytes the cache occupies on disk (blobs, downloads, models, shared files, temp dirs; each
   * inode once), from the running account: no walk, except the first time and after another
   * process (`cache gc`) stamped a change (one stat to know). Bytes a running pull is writing
   * are not in it until the model is published: its reservation covers them.
   */
  async usedBytes(): Promise<number> {
    if (!this.usage.isReconciled || (await this.readUsageStamp()) !== this.usageStampSeen) await this.reconcileUsage();
    return this.usage.bytes;
  }

  /** Walk the cache and set the running account to what is on disk (start-up, `cache gc`). */
  async reconcileUsage(): Promise<number> {
    const stamp = await this.readUsageStamp();
    this.sharedByInode.clear();
    this.countedBlobs.clear();
    const bytes = await this.usage.reconcile([this.content.blobsDir, this.content.ingestDir, this.modelsDir, this.filesDir, this.tmpDir], (path, stat) => {
      const dir = dirname(path);
      if (dir === this.filesDir) this.sharedByInode.set(inodeId(stat), path);
      else if (dir === this.content.blobsDir) this.countedBlobs.add(basename(path));
    });
    this.usageStampSeen = stamp;
    return bytes;
  }

  /**
   * Tell other processes on this cache root (the node plugin) that it changed under them:
   * their account reconciles at its next use. `cache gc` calls it after its removals.
   */
  async stampUsageChanged(): Promise<void> {
    await writeFileAtomic(join(this.root, 'state', USAGE_STAMP), `${JSON.stringify({ pid: process.pid, at: new Date().toISOString() })}\n`);
    this.usageStampSeen = await this.readUsageStamp();
  }

  private async readUsageStamp(): Promise<string | undefined> {
    const stat = await lstat(join(this.root, 'state', USAGE_STAMP)).catch(() => undefined);
    return stat === undefined ? undefined : `${inodeId(stat)}:${stat.mtimeMs}`;
  }

  /** A model just renamed into models/: count its tree and the blobs its pull added. */
  private async countPublished(target: string): Promise<void> {
    if (!this.usage.isReconciled) return;
    await this.usage.addTree(target);
    for (const digest of await this.content.listBlobs()) {
      const hex = digest.slice('sha256:'.length);
      if (this.countedBlobs.has(hex)) continue;
      await this.usage.addPath(join(this.content.blobsDir, hex));
      this.countedBlobs.add(hex);
    }
  }

  /**
   * Put a verified blob's bytes at `dest` (a path inside a temp dir): a hardlink of the shared
   * copy of that content (`files/sha256/<hex>`, offered by a tar layer) when there is one, else
   * of the blob itself, when the mode is the one wanted; otherwise (or across filesystems) a
   * copy. Under the same per-content lock as `shareFile`, so a raw layer and a tar entry with the
   * same bytes, pulled at once, end up as one inode whichever lands first.
   */
  linkBlob(blobPath: string, dest: string, mode: number): Promise<'linked' | 'copied'> {
    const hex = basename(blobPath);
    return this.shareLocks.run(hex, async () => {
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
   * offer it as the shared copy for the next model. Only links inodes of the same mode.
   */
  shareFile(path: string, hex: string, mode: number): Promise<'shared' | 'offered' | 'kept'> {
    return this.shareLocks.run(hex, async () => {
      for (const candidate of [join(this.filesDir, hex), join(this.content.blobsDir, hex)]) {
        let info;
        try {
          info = await stat(candidate);
        } catch {
          continue;
        }
        if ((info.mode & 0o7777) !== mode) continue;
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
        if (offered) this.sharedByInode.set(inodeId(offered), join(this.filesDir, hex));
        return 'offered';
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'EEXIST' || code === 'EXDEV') return 'kept';
        throw err;
      }
    });
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

  private async unlinkIfSingle(path: string): Promise<boolean> {
    try {
      const info = await lstat(path);
      if (info.nlink > 1) return false;
      await rm(path, { force: true });
      this.usage.drop(info);
      this.sharedByInode.delete(inodeId(info));
      if (dirname(path) === this.content.blobsDir) this.countedBlobs.delete(basename(path));
      return true;
    } catch {
      return false;
    }
  }

  private async removeIfStale(path: string, staleMs: number): Promise<boolean> {
    try {
      const info = await lstat(path);
      if (Date.now() - info.mtimeMs < staleMs) return false;
      await unsealDirectories(path);
      if (this.usage.isReconciled) await this.usage.dropFreedIn(path);
      await rm(path, { recursive: true, force: true });
      return true;
    } catch {
      return false;
    }
  }

  /** Temp dirs of processes that are gone (a crash mid-assembly, a removal cut short). */
  private async removeOrphanTemps(): Promise<void> {
    for (const name of await readdir(this.tmpDir)) {
      const pid = Number(name.split('-')[0]);
      if (Number.isInteger(pid) && pid !== process.pid && processAlive(pid)) continue;
      const path = join(this.tmpDir, name);
      await unsealDirectories(path);
      await rm(path, { recursive: true, force: true });
    }
  }
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
