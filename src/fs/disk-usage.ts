import type { Stats } from 'node:fs';
import { lstat, readdir } from 'node:fs/promises';
import { join } from 'node:path';

/** `dev:ino`: one key per inode, whatever its names. */
export function inodeId(stat: Stats): string {
  return `${stat.dev}:${stat.ino}`;
}

/** Bytes an inode occupies on disk (allocated blocks, not the apparent size). */
export function allocatedBytes(stat: Stats): number {
  return stat.blocks * 512;
}

/**
 * Every name under `dir` (not `dir` itself), depth first, each with its lstat; symlinks are
 * not followed. A name removed while the walk runs (eviction, a finished pull) is skipped;
 * a missing `dir` (or a file) is an empty walk. `visit` returning false skips a directory's contents.
 */
export async function walkTree(dir: string, visit: (path: string, stat: Stats) => boolean | void): Promise<void> {
  let entries: string[];
  try {
    entries = await readdir(dir);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return;
    throw err;
  }
  for (const name of entries) {
    const path = join(dir, name);
    let stat;
    try {
      stat = await lstat(path);
    } catch {
      continue;
    }
    if (visit(path, stat) !== false && stat.isDirectory()) await walkTree(path, visit);
  }
}

/**
 * Bytes allocated under `dir`, each inode counted once: the store hardlinks a file shared by
 * several models (and a `.raw` blob with its model file), so a plain sum would overstate it.
 * A full walk: the cache budget keeps a running account instead (store/cache-usage.ts).
 */
export async function diskUsage(dir: string, seen = new Set<string>()): Promise<{ bytes: number; inodes: number }> {
  let bytes = 0;
  let inodes = 0;
  await walkTree(dir, (_path, stat) => {
    const id = inodeId(stat);
    // A directory seen already is a mount of one seen elsewhere (a staging mount of a model).
    if (seen.has(id)) return false;
    seen.add(id);
    inodes++;
    bytes += allocatedBytes(stat);
  });
  return { bytes, inodes };
}
