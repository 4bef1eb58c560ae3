import { resolve } from 'node:path';
import type { Mounter } from '../../../src/mount/mounter.js';
import type { MountInfo } from '../../../src/mount/mountinfo.js';

/** The OS boundary faked for unit tests: a mount table in memory. */
export class FakeMounter implements Mounter {
  readonly mounts = new Map<string, string>();
  bindCalls = 0;
  failNextBind = false;

  async bindReadOnly(source: string, target: string): Promise<void> {
    this.bindCalls++;
    await new Promise((r) => setTimeout(r, 5)); // let concurrent calls interleave
    if (this.failNextBind) {
      this.failNextBind = false;
      throw new Error('mount: permission denied');
    }
    if (this.mounts.has(resolve(target))) throw new Error(`stacking on ${target}`);
    this.mounts.set(resolve(target), source);
  }

  async unmount(target: string): Promise<void> {
    this.mounts.delete(resolve(target));
  }

  async isMountPoint(target: string): Promise<boolean> {
    return this.mounts.has(resolve(target));
  }

  async listMounts(): Promise<MountInfo[]> {
    return [...this.mounts].map(([mountPoint, source], i) => ({
      id: i + 100, parentId: 1, device: '0:1', root: source, mountPoint,
      options: ['ro', 'nosuid', 'nodev'], fsType: 'none', source: 'none', superOptions: [], propagation: [],
    }));
  }
}
