import type { MountInfo } from './mountinfo.js';

/**
 * The OS boundary of the node service: everything that changes or reads the mount table.
 * Unit tests fake only this interface; integration tests use the Linux implementation.
 */
export interface Mounter {
  /**
   * Bind-mount `source` (a directory or a file) onto `target` read-only with nosuid,nodev,
   * verified in the mount table. Refuses to stack on a target that is already a mount
   * point. On any failure nothing stays mounted.
   */
  bindReadOnly(source: string, target: string): Promise<void>;
  /** Unmount `target`; a target that is not mounted (or does not exist) is success. */
  unmount(target: string): Promise<void>;
  isMountPoint(target: string): Promise<boolean>;
  listMounts(): Promise<MountInfo[]>;
}
