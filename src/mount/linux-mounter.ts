import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { lstat, mkdir, readdir, rmdir, stat, unlink, writeFile } from 'node:fs/promises';
import { join, resolve, sep } from 'node:path';
import { promisify } from 'node:util';
import { DriverError } from '../errors/driver-error.js';
import type { Mounter } from './mounter.js';
import { mountHolding, readMountInfo, topMountAt, type MountInfo } from './mountinfo.js';

const execFileAsync = promisify(execFile);

/** Options every model mount must show in mountinfo. */
const REQUIRED_MOUNT_OPTIONS = ['ro', 'nosuid', 'nodev'] as const;

/** The mount(8)/umount(8) binaries and the mount table this mounter uses (overridable for tests). */
export interface MountCommands {
  mount: string;
  umount: string;
  mountinfo: string;
}

const DEFAULT_COMMANDS: MountCommands = { mount: '/bin/mount', umount: '/bin/umount', mountinfo: '/proc/self/mountinfo' };

/**
 * util-linux mount/umount through execFile with argument arrays (no shell, so paths with
 * spaces or quotes are passed as they are). The mount table is read back after mounting:
 * success is what mountinfo shows, not what the command returned.
 *
 * **Why a model is staged before it reaches the target.** In a pod, the target lies under the
 * kubelet pods dir, which is mounted with Bidirectional propagation: a mount made there is
 * copied to the host, and the host's copy is the one the container runtime hands to the
 * consumer. Propagation copies a mount when it is made, with the flags it has then; a later
 * remount changes only the driver's copy (mount_namespaces(7), "Shared subtrees"). util-linux
 * before 2.39 makes `mount --bind -o ro` as a bind then a remount, so the host's copy stayed
 * `rw`. So the read-only mount is made first at a private staging point under the cache root
 * (bind, then remount `ro,nosuid,nodev` there, where nothing propagates), and only that
 * already read-only mount is bound onto the target: every copy of the target is cloned from a
 * read-only mount and is read-only from the moment it appears, with any util-linux. The staging
 * mount is removed at once; one a crash left behind is removed by `open`.
 */
export class LinuxMounter implements Mounter {
  private constructor(
    private readonly stagingDir: string,
    private readonly commands: MountCommands,
  ) {}

  /**
   * A mounter staging under `stagingDir` (a directory of the cache root). Removes staging
   * mounts a crash left, and makes sure nothing mounted there propagates: when the directory
   * sits on a shared mount (a host process on a systemd host, where `/` is shared), it becomes
   * a private mount of its own.
   */
  static async open(stagingDir: string, commands: MountCommands = DEFAULT_COMMANDS): Promise<LinuxMounter> {
    const mounter = new LinuxMounter(resolve(stagingDir), commands);
    await mounter.sweepStaging();
    return mounter;
  }

  async bindReadOnly(source: string, target: string): Promise<void> {
    const point = resolve(target);
    if (await this.isMountPoint(point)) {
      throw new DriverError('MOUNT_FAILED', `${point} is already a mount point; refusing to stack another mount on it`);
    }
    const staged = await this.stage(source);
    try {
      await this.run(this.commands.mount, ['--bind', staged, point], `bind-mount ${source} on ${point}`);
      try {
        await this.verifyReadOnly(point);
      } catch (err) {
        await this.unmount(point).catch(() => undefined);
        throw err;
      }
    } finally {
      await this.unstage(staged);
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

  /** A read-only bind of `source` at a fresh staging point (a file for a file source). */
  private async stage(source: string): Promise<string> {
    const staged = join(this.stagingDir, randomBytes(8).toString('hex'));
    const info = await stat(source).catch((err: NodeJS.ErrnoException) => {
      // A raw errno would reach the wire as INTERNAL; this is the mount failing, naming its source.
      throw new DriverError('MOUNT_FAILED', `cannot stage ${source}: ${err.code ?? err.message}`, { cause: err });
    });
    if (info.isDirectory()) await mkdir(staged, { mode: 0o700 });
    else await writeFile(staged, '', { mode: 0o600, flag: 'wx' });
    try {
      await this.run(this.commands.mount, ['--bind', source, staged], `stage ${source}`);
      try {
        // The read-only flag of a bind mount only takes effect on a remount (mount(8), "bind mount operation").
        await this.run(this.commands.mount, ['-o', 'remount,bind,ro,nosuid,nodev', staged], `remount the staged ${source} read-only`);
        await this.verifyReadOnly(staged);
      } catch (err) {
        await this.unmount(staged).catch(() => undefined);
        throw err;
      }
    } catch (err) {
      await removeMountPoint(staged).catch(() => undefined);
      throw err;
    }
    return staged;
  }

  private async unstage(staged: string): Promise<void> {
    await this.unmount(staged);
    await removeMountPoint(staged);
  }

  /** Unmount and remove what a crash left under the staging dir; keep the dir from propagating. */
  private async sweepStaging(): Promise<void> {
    await mkdir(this.stagingDir, { recursive: true, mode: 0o700 });
    const mounts = await this.listMounts();
    const stale = mounts.filter((m) => m.mountPoint.startsWith(this.stagingDir + sep)).reverse();
    for (const mount of stale) await this.unmount(mount.mountPoint);
    for (const name of await readdir(this.stagingDir)) await this.unstage(join(this.stagingDir, name));
    if (propagatesFrom(mounts, this.stagingDir)) {
      if (!(await this.isMountPoint(this.stagingDir))) {
        await this.run(this.commands.mount, ['--bind', this.stagingDir, this.stagingDir], `bind ${this.stagingDir} on itself`);
      }
      await this.run(this.commands.mount, ['--make-private', this.stagingDir], `make ${this.stagingDir} a private mount`);
    }
  }

  private async verifyReadOnly(point: string): Promise<void> {
    const mount = topMountAt(await this.listMounts(), point);
    const missing = REQUIRED_MOUNT_OPTIONS.filter((option) => !mount?.options.includes(option));
    if (mount === undefined || missing.length > 0) {
      throw new DriverError(
        'MOUNT_FAILED',
        `${point} is not mounted ${REQUIRED_MOUNT_OPTIONS.join(',')} (missing ${missing.join(',') || 'the mount itself'})`,
      );
    }
  }

  private async run(command: string, args: string[], what: string): Promise<void> {
    try {
      await execFileAsync(command, args);
    } catch (err) {
      throw new DriverError('MOUNT_FAILED', `cannot ${what}: ${commandError(err)}`, { cause: err });
    }
  }
}

/** Remove an unmounted staging point: an empty directory or an empty file. */
async function removeMountPoint(path: string): Promise<void> {
  const info = await lstat(path).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return undefined;
    throw err;
  });
  if (info === undefined) return;
  if (info.isDirectory()) await rmdir(path);
  else await unlink(path);
}

/** Whether mounts made at `dir` would be copied elsewhere: the mount holding it is shared. */
function propagatesFrom(mounts: readonly MountInfo[], dir: string): boolean {
  return mountHolding(mounts, dir)?.propagation.some((field) => field.startsWith('shared:')) ?? false;
}

function commandError(err: unknown): string {
  const stderr = (err as { stderr?: string }).stderr?.trim();
  return stderr || (err as Error).message;
}
