import { createHash } from 'node:crypto';
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { classifyFsError } from '../errors/fs-error.js';
import { writeFileAtomic } from '../fs/atomic-write.js';
import { isSha256Digest } from '../registry/digest.js';

/**
 * What each tag resolved to when it was last pulled on this node, so that
 * `pullPolicy: IfNotPresent` reuses a cached tag without asking the registry (and works with
 * the registry down, after a reboot). One small file per reference, written atomically.
 */
export interface TagRecord {
  reference: string;
  digest: string;
  resolvedAt: string;
}

export class TagCache {
  private readonly dir: string;

  constructor(root: string) {
    this.dir = join(root, 'state', 'tags');
  }

  async get(reference: string): Promise<TagRecord | undefined> {
    try {
      const record = JSON.parse(await readFile(this.file(reference), 'utf8')) as TagRecord;
      return record.reference === reference && isSha256Digest(record.digest) ? record : undefined;
    } catch {
      return undefined;
    }
  }

  async set(reference: string, digest: string): Promise<void> {
    const record: TagRecord = { reference, digest, resolvedAt: new Date().toISOString() };
    try {
      await mkdir(this.dir, { recursive: true });
      await writeFileAtomic(this.file(reference), JSON.stringify(record));
    } catch (err) {
      throw classifyFsError(err, `recording that ${reference} is ${digest}`);
    }
  }

  private file(reference: string): string {
    return join(this.dir, `${createHash('sha256').update(reference).digest('hex').slice(0, 32)}.json`);
  }
}
