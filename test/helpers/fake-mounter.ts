import { lstat, stat } from 'node:fs/promises';
import { resolve } from 'node:path';
import { DriverError } from '../../src/errors/driver-error.js';
import type { Mounter } from '../../src/mount/mounter.js';
import type { MountInfo } from '../../src/mount/mountinfo.js';

/**
 * The OS boundary faked for unit tests, and the only fake: a mount table in memory. It fails
 * as LinuxMounter does, with the same MOUNT_FAILED codes for the same cases (a missing source
 * or target, a directory onto a file or back, stacking on a mount point, a refused mount);
 * test/integration/node/mounter-parity.test.ts runs those cases against both.
 */
export class FakeMounter implements Mounter {
  readonly mounts = new Map<string, string>();
  bindCalls = 0;
  failNextBind = false;

  async bindReadOnly(source: string, target: string): Promise<void> {
    this.bindCalls++;
    await new Promise((r) => setTimeout(r, 5)); // let concurrent calls interleave
    const point = resolve(target);
    if (this.mounts.has(point)) throw new DriverError('MOUNT_FAILED', `${point} is already a mount point; refusing to stack another mount on it`);
    const from = await stat(source).catch(() => undefined);
    if (from === undefined) throw new DriverError('MOUNT_FAILED', `cannot stage ${source}: it does not exist`);
    if (this.failNextBind) {
      this.failNextBind = false;
      throw new DriverError('MOUNT_FAILED', `cannot bind-mount ${source} on ${point}: mount: permission denied`);
    }
    const onto = await lstat(point).catch(() => undefined);
    if (onto === undefined || onto.isDirectory() !== from.isDirectory()) {
      throw new DriverError('MOUNT_FAILED', `cannot bind-mount ${source} on ${point}: ${onto === undefined ? 'no such target' : 'not the same kind of file as the source'}`);
    }
    this.mounts.set(point, source);
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
