import { lstat } from 'node:fs/promises';
import { diskUsage } from '../fs/disk-usage.js';

/**
 * Bytes and inodes of published models. A cached model never changes, so each path is
 * walked once; kubelet asks every minute for every volume.
 */
export class VolumeUsageCache {
  private readonly byPath = new Map<string, Promise<{ bytes: number; inodes: number }>>();

  usage(path: string): Promise<{ bytes: number; inodes: number }> {
    let pending = this.byPath.get(path);
    if (pending === undefined) {
      pending = measure(path);
      pending.catch(() => this.byPath.delete(path));
      this.byPath.set(path, pending);
    }
    return pending;
  }
}

async function measure(path: string): Promise<{ bytes: number; inodes: number }> {
  const info = await lstat(path);
  if (!info.isDirectory()) return { bytes: info.blocks * 512, inodes: 1 };
  const below = await diskUsage(path);
  return { bytes: below.bytes + info.blocks * 512, inodes: below.inodes + 1 };
}
