import { createHash } from 'node:crypto';
import { mkdir, readdir, readFile, rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { classifyFsError } from '../errors/fs-error.js';
import { writeFileAtomic } from '../fs/atomic-write.js';
import type { Logger } from '../log/logger.js';
import type { MountInfo } from '../mount/mountinfo.js';

/**
 * What the node remembers about a publish, one small JSON file per (volume id, target) in
 * `<root>/state/volumes/`, written atomically. The kernel stays the truth about what is
 * mounted: a record whose target is not a mount point any more is stale and dropped.
 */
export interface VolumeRecord {
  version: 1;
  volumeId: string;
  targetPath: string;
  /** Hash of the publish arguments: a repeat with another fingerprint is ALREADY_EXISTS. */
  fingerprint: string;
  modelKey: string;
  modelPath: string;
  digest: string;
  subPath: string | undefined;
  /** What was bind-mounted: modelPath, or modelPath/subPath. */
  sourcePath: string;
  publishedAt: string;
}

export function recordsDir(root: string): string {
  return join(root, 'state', 'volumes');
}

function recordFile(root: string, volumeId: string, targetPath: string): string {
  const name = createHash('sha256').update(`${volumeId}\0${targetPath}`).digest('hex');
  return join(recordsDir(root), `${name}.json`);
}

export class VolumeRecords {
  /** By resolved target path: a target holds at most one publish. */
  private readonly byTarget = new Map<string, VolumeRecord>();

  private constructor(private readonly root: string) {}

  /**
   * Load the records and reconcile them with the mount table: records of targets that are
   * no longer mounted (reboot, manual unmount) are deleted.
   */
  static async load(root: string, mounts: readonly MountInfo[], log: Logger): Promise<VolumeRecords> {
    const records = new VolumeRecords(root);
    await mkdir(recordsDir(root), { recursive: true, mode: 0o700 });
    const mounted = new Set(mounts.map((mount) => mount.mountPoint));
    for (const record of await readRecordFiles(root, log)) {
      if (!mounted.has(record.targetPath)) {
        log.info({ volumeId: record.volumeId, target: record.targetPath }, 'dropping the record of a target that is no longer mounted');
        await rm(recordFile(root, record.volumeId, record.targetPath), { force: true });
        continue;
      }
      records.byTarget.set(record.targetPath, record);
    }
    return records;
  }

  get(targetPath: string): VolumeRecord | undefined {
    return this.byTarget.get(resolve(targetPath));
  }

  list(): VolumeRecord[] {
    return [...this.byTarget.values()];
  }

  async put(record: VolumeRecord): Promise<void> {
    try {
      await writeFileAtomic(recordFile(this.root, record.volumeId, record.targetPath), `${JSON.stringify(record, null, 2)}\n`, 0o600);
    } catch (err) {
      throw classifyFsError(err, `recording volume ${record.volumeId} published at ${record.targetPath}`);
    }
    this.byTarget.set(record.targetPath, record);
  }

  async remove(record: VolumeRecord): Promise<void> {
    await rm(recordFile(this.root, record.volumeId, record.targetPath), { force: true });
    if (this.byTarget.get(record.targetPath) === record) this.byTarget.delete(record.targetPath);
  }

  /** Model keys with a live publish on this node: eviction must keep them. */
  inUseModelKeys(): Set<string> {
    return new Set(this.list().map((record) => record.modelKey));
  }
}

/**
 * The in-use query for another process (`model-csi cache gc`): model keys of records whose
 * target is still mounted, read from disk and the mount table.
 */
export async function readInUseModelKeys(root: string, mounts: readonly MountInfo[], log: Logger): Promise<Set<string>> {
  const mounted = new Set(mounts.map((mount) => mount.mountPoint));
  const records = await readRecordFiles(root, log);
  return new Set(records.filter((record) => mounted.has(record.targetPath)).map((record) => record.modelKey));
}

async function readRecordFiles(root: string, log: Logger): Promise<VolumeRecord[]> {
  const dir = recordsDir(root);
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  const records: VolumeRecord[] = [];
  for (const name of names) {
    const path = join(dir, name);
    if (name.endsWith('.tmp')) {
      await rm(path, { force: true }); // a write cut short by a crash; the rename never happened
      continue;
    }
    if (!name.endsWith('.json')) continue;
    try {
      const record = JSON.parse(await readFile(path, 'utf8')) as VolumeRecord;
      if (record.version !== 1 || typeof record.targetPath !== 'string' || typeof record.volumeId !== 'string') {
        throw new Error('unexpected shape');
      }
      records.push(record);
    } catch (err) {
      log.warn({ file: path, err: (err as Error).message }, 'ignoring an unreadable volume record');
    }
  }
  return records;
}
