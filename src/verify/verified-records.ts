import { createHash } from 'node:crypto';
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomic } from '../fs/atomic-write.js';

/**
 * What this node has verified, in memory and under `state/verified/`: a restarted plugin
 * mounts a verified cached model without asking the registry (as a cached tag mounts with the
 * registry down, after a reboot), and still knows which digest a tag was verified at
 * (SIGNATURE_TAG_MOVED). One small file per (rule, repository, digest) and per (rule, tag),
 * written atomically, only when it changes. The rule id covers the glob and the key
 * fingerprints, so a rule whose keys change finds none of its old records. Refusals are never
 * recorded.
 */
interface VerifiedRecord {
  kind: 'digest' | 'tag';
  rule: string;
  /** `host/repository` (digest records) or the tag reference (tag records). */
  name: string;
  digest: string;
  at: string;
}

/** Bounded memory: past this the oldest entry is forgotten (its file stays). */
const MAX_REMEMBERED = 4096;

export class VerifiedRecords {
  private readonly dir: string | undefined;
  /** key → digest */
  private readonly memory = new Map<string, string>();

  /** Without a root (`model-csi inspect`), memory only. */
  constructor(root: string | undefined) {
    this.dir = root === undefined ? undefined : join(root, 'state', 'verified');
  }

  async isVerified(rule: string, repository: string, digest: string): Promise<boolean> {
    return (await this.get('digest', rule, `${repository}@${digest}`)) === digest;
  }

  async markVerified(rule: string, repository: string, digest: string): Promise<void> {
    await this.set('digest', rule, `${repository}@${digest}`, digest);
  }

  /** The digest `reference` (a tag) was last verified at under `rule`. */
  async tagDigest(rule: string, reference: string): Promise<string | undefined> {
    return this.get('tag', rule, reference);
  }

  async setTagDigest(rule: string, reference: string, digest: string): Promise<void> {
    if ((await this.get('tag', rule, reference)) !== digest) await this.set('tag', rule, reference, digest);
  }

  private async get(kind: VerifiedRecord['kind'], rule: string, name: string): Promise<string | undefined> {
    const key = recordKey(kind, rule, name);
    const known = this.memory.get(key);
    if (known !== undefined || this.dir === undefined) return known;
    try {
      const record = JSON.parse(await readFile(join(this.dir, `${key}.json`), 'utf8')) as VerifiedRecord;
      if (record.kind !== kind || record.rule !== rule || record.name !== name || !/^sha256:[0-9a-f]{64}$/.test(record.digest)) return undefined;
      this.remember(key, record.digest);
      return record.digest;
    } catch {
      return undefined;
    }
  }

  private async set(kind: VerifiedRecord['kind'], rule: string, name: string, digest: string): Promise<void> {
    const key = recordKey(kind, rule, name);
    this.remember(key, digest);
    if (this.dir === undefined) return;
    await mkdir(this.dir, { recursive: true });
    const record: VerifiedRecord = { kind, rule, name, digest, at: new Date().toISOString() };
    await writeFileAtomic(join(this.dir, `${key}.json`), JSON.stringify(record));
  }

  private remember(key: string, digest: string): void {
    if (this.memory.size >= MAX_REMEMBERED && !this.memory.has(key)) this.memory.delete(this.memory.keys().next().value!);
    this.memory.set(key, digest);
  }
}

function recordKey(kind: string, rule: string, name: string): string {
  return createHash('sha256').update(`${kind}\0${rule}\0${name}`).digest('hex').slice(0, 32);
}
