import { chmod, lstat, readdir } from 'node:fs/promises';
import { join } from 'node:path';

/**
 * Make an assembled model read-only and measure it, in one walk. Directories become 0555.
 * Files keep their exec bits and lose write bits; a file with several links (shared with a
 * blob or another model) was made read-only when it was linked and is left alone, since a
 * hardlink shares its mode with every other name of the inode.
 * Returns the logical size (sum of regular file sizes, each inode once).
 */
export async function sealTree(dir: string, seen = new Set<number>()): Promise<number> {
  let size = 0;
  for (const name of await readdir(dir)) {
    const path = join(dir, name);
    const info = await lstat(path);
    if (info.isDirectory()) {
      size += await sealTree(path, seen);
    } else if (info.isFile()) {
      if (!seen.has(info.ino)) {
        seen.add(info.ino);
        size += info.size;
      }
      if (info.mode & 0o222 && info.nlink === 1) await chmod(path, info.mode & 0o7555);
    }
  }
  await chmod(dir, 0o555);
  return size;
}

/** Undo `sealTree` on directories so the tree can be deleted by a non-root owner too. */
export async function unsealDirectories(dir: string): Promise<void> {
  let info;
  try {
    info = await lstat(dir);
  } catch {
    return;
  }
  if (!info.isDirectory()) return;
  await chmod(dir, 0o755);
  for (const name of await readdir(dir)) await unsealDirectories(join(dir, name));
}
