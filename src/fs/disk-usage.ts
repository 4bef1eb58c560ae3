import { lstat, readdir } from 'node:fs/promises';
import { join } from 'node:path';

/**
 * Bytes allocated under `dir`, each inode counted once: the store hardlinks a file shared by
 * several models (and a `.raw` blob with its model file), so a plain sum would overstate it.
 */
export async function diskUsage(dir: string, seen = new Set<string>()): Promise<{ bytes: number; inodes: number }> {
  let bytes = 0;
  let inodes = 0;
  let entries: string[];
  try {
    entries = await readdir(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { bytes, inodes };
    throw err;
  }
  for (const name of entries) {
    const path = join(dir, name);
    let stat;
    try {
      stat = await lstat(path);
    } catch {
      continue; // removed while we walked: eviction or a finished pull
    }
    const id = `${stat.dev}:${stat.ino}`;
    if (seen.has(id)) continue;
    seen.add(id);
    inodes++;
    bytes += stat.blocks * 512;
    if (stat.isDirectory()) {
      const child = await diskUsage(path, seen);
      bytes += child.bytes;
      inodes += child.inodes;
    }
  }
  return { bytes, inodes };
}
