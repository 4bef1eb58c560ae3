import { execFile } from 'node:child_process';
import { resolve } from 'node:path';
import { promisify } from 'node:util';
import { DriverError } from '../errors/driver-error.js';
import type { Mounter } from './mounter.js';
import { readMountInfo, topMountAt, type MountInfo } from './mountinfo.js';

const execFileAsync = promisify(execFile);

/** Options every model mount must show in mountinfo. */
export const REQUIRED_MOUNT_OPTIONS = ['ro', 'nosuid', 'nodev'] as const;

/**
 * util-linux mount/umount through execFile with argument arrays (no shell, so paths with
 * spaces or quotes are passed as they are). The mount table is read back after mounting:
 * a bind mount ignores `ro` on the first call, so success is what mountinfo shows, not what
 * the command returned.
 */
export class LinuxMounter implements Mounter {
  constructor(
    private readonly commands: { mount: string; umount: string; mountinfo: string } = {
      mount: '/bin/mount',
      umount: '/bin/umount',
      mountinfo: '/proc/self/mountinfo',
    },
  ) {}

  async bindReadOnly(source: string, target: string): Promise<void> {
    const point = resolve(target);
    if (await this.isMountPoint(point)) {
      throw new DriverError('MOUNT_FAILED', `${point} is already a mount point; refusing to stack another mount on it`);
    }
    await this.run(this.commands.mount, ['--bind', source, point], `bind-mount ${source} on ${point}`);
    try {
      // The read-only flag of a bind mount only takes effect on a remount (mount(8), "bind mount operation").
      await this.run(this.commands.mount, ['-o', 'remount,bind,ro,nosuid,nodev', point], `remount ${point} read-only`);
      const mount = topMountAt(await this.listMounts(), point);
      const missing = REQUIRED_MOUNT_OPTIONS.filter((option) => !mount?.options.includes(option));
      if (mount === undefined || missing.length > 0) {
        throw new DriverError(
          'MOUNT_FAILED',
          `${point} is not mounted ${REQUIRED_MOUNT_OPTIONS.join(',')} after the remount (missing ${missing.join(',') || 'the mount itself'})`,
        );
      }
    } catch (err) {
      await this.unmount(point).catch(() => undefined);
      throw err;
    }
  }

  async unmount(target: string): Promise<void> {
    const point = resolve(target);
    if (!(await this.isMountPoint(point))) return;
    try {
      await execFileAsync(this.commands.umount, [point]);
    } catch (err) {
      // Lost a race with another unmount: the goal state is reached.
      if (!(await this.isMountPoint(point))) return;
      throw new DriverError('MOUNT_FAILED', `cannot unmount ${point}: ${commandError(err)}`, { cause: err });
    }
  }

  async isMountPoint(target: string): Promise<boolean> {
    return topMountAt(await this.listMounts(), resolve(target)) !== undefined;
  }

  listMounts(): Promise<MountInfo[]> {
    return readMountInfo(this.commands.mountinfo);
  }

  private async run(command: string, args: string[], what: string): Promise<void> {
    try {
      await execFileAsync(command, args);
    } catch (err) {
      throw new DriverError('MOUNT_FAILED', `cannot ${what}: ${commandError(err)}`, { cause: err });
    }
  }
}

function commandError(err: unknown): string {
  const stderr = (err as { stderr?: string }).stderr?.trim();
  return stderr || (err as Error).message;
}
