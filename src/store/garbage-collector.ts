import { lstat, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { isSha256Hex } from '../registry/digest.js';
import type { CacheAccount } from './cache-account.js';
import type { ContentStore } from './content-store.js';
import { unsealDirectories } from './read-only-tree.js';

export interface GcResult {
  blobs: number;
  files: number;
  ingest: number;
  tmp: number;
}

/** What the collector looks at; the ModelStore hands it its rooms and what is in use. */
export interface GcScope {
  content: ContentStore;
  account: CacheAccount;
  filesDir: string;
  tmpDir: string;
  /** Temp dirs a pull in this process is assembling. */
  activeTemps: ReadonlySet<string>;
  /** Blob digests the cached models reference. */
  referencedBlobs(): Promise<Set<string>>;
}

/** Partial downloads and temp dirs younger than this survive gc: a retry may resume them. */
const DEFAULT_STALE_MS = 60 * 60 * 1000;

/**
 * Drop what no model needs: blobs no model references (and that no pull in this process
 * holds), shared files no model links to, and stale partial downloads and temp dirs. A blob
 * or shared file with more than one link is still part of a model, so removing it would free
 * nothing; it is kept.
 */
export async function collectGarbage(scope: GcScope, options: { staleMs?: number } = {}): Promise<GcResult> {
  const staleMs = options.staleMs ?? DEFAULT_STALE_MS;
  const result: GcResult = { blobs: await dropUnreferencedBlobs(scope), files: 0, ingest: 0, tmp: 0 };
  for (const hex of (await readdir(scope.filesDir).catch(() => [] as string[])).filter(isSha256Hex)) {
    if (await scope.account.unlinkIfSingle(join(scope.filesDir, hex))) result.files++;
  }
  const { content } = scope;
  const active = content.activeIngests();
  for (const name of await readdir(content.ingestDir).catch(() => [] as string[])) {
    const hex = name.replace(/\.pieces$/, ''); // a ranged download's piece map goes with its file
    if (active.has(hex) || content.isLeased(hex)) continue;
    if (await removeIfStale(scope.account, join(content.ingestDir, name), staleMs)) result.ingest++;
  }
  for (const name of await readdir(scope.tmpDir).catch(() => [] as string[])) {
    const path = join(scope.tmpDir, name);
    if (scope.activeTemps.has(path)) continue;
    if (await removeIfStale(scope.account, path, staleMs)) result.tmp++;
  }
  return result;
}

/**
 * Blobs no model references and no pull in this process holds (tar layers' blobs once
 * unpacked, raw blobs of removed models). Costs a read of each model record and a look at
 * each blob, not a walk of the models. Returns how many were removed.
 */
export async function dropUnreferencedBlobs(scope: GcScope): Promise<number> {
  let removed = 0;
  const referenced = await scope.referencedBlobs();
  for (const digest of await scope.content.listBlobs()) {
    const hex = digest.slice('sha256:'.length);
    if (referenced.has(digest) || scope.content.isLeased(hex)) continue;
    if (await scope.account.unlinkIfSingle(join(scope.content.blobsDir, hex))) removed++;
  }
  return removed;
}

/** Temp dirs of processes that are gone (a crash mid-assembly, a removal cut short). */
export async function removeOrphanTemps(tmpDir: string): Promise<void> {
  for (const name of await readdir(tmpDir)) {
    const pid = Number(name.split('-')[0]);
    if (Number.isInteger(pid) && pid !== process.pid && processAlive(pid)) continue;
    const path = join(tmpDir, name);
    await unsealDirectories(path);
    await rm(path, { recursive: true, force: true });
  }
}

async function removeIfStale(account: CacheAccount, path: string, staleMs: number): Promise<boolean> {
  try {
    const info = await lstat(path);
    if (Date.now() - info.mtimeMs < staleMs) return false;
    await unsealDirectories(path);
    await account.dropFreedIn(path);
    await rm(path, { recursive: true, force: true });
    return true;
  } catch {
    return false;
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
