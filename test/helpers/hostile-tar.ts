import { spawnSync } from 'node:child_process';
import { gzipSync } from 'node:zlib';
import tar from 'tar-stream';

/**
 * Tar archives built in memory, entry by entry, so a test can write exactly the hostile
 * header it means (tar-stream writes names and link targets as given).
 */
export interface TarEntrySpec {
  name: string;
  type?: 'file' | 'directory' | 'symlink' | 'link' | 'character-device' | 'block-device' | 'fifo';
  content?: string | Buffer;
  linkname?: string;
  mode?: number;
  mtime?: Date;
}

export async function buildTar(entries: readonly TarEntrySpec[]): Promise<Buffer> {
  const pack = tar.pack();
  const chunks: Buffer[] = [];
  pack.on('data', (chunk: unknown) => void chunks.push(chunk as Buffer));
  const done = new Promise<void>((resolve, reject) => {
    pack.on('end', resolve);
    pack.on('error', reject);
  });
  for (const spec of entries) {
    const type = spec.type ?? 'file';
    const body = type === 'file' ? Buffer.from(spec.content ?? '') : undefined;
    await new Promise<void>((resolve, reject) => {
      // tar-stream fills the fields left out (uid, gid, names…) with defaults.
      const header = {
        name: spec.name,
        type,
        mode: spec.mode ?? (type === 'directory' ? 0o755 : 0o644),
        mtime: spec.mtime ?? new Date('2024-01-01T00:00:00Z'),
        ...(spec.linkname !== undefined ? { linkname: spec.linkname } : {}),
        ...(body ? { size: body.length } : {}),
      } as tar.Header;
      if (body) pack.entry(header, body, (err) => (err ? reject(err) : resolve()));
      else pack.entry(header, (err) => (err ? reject(err) : resolve()));
    });
  }
  pack.finalize();
  await done;
  return Buffer.concat(chunks);
}

export function gzip(bytes: Buffer): Buffer {
  return gzipSync(bytes);
}

/** zstd with the real `zstd` binary (Node 20's zlib has no zstd). */
export function zstd(bytes: Buffer): Buffer {
  const out = spawnSync('zstd', ['-q', '-c', '-3'], { input: bytes, maxBuffer: 1 << 30 });
  if (out.error || out.status !== 0) throw new Error(`zstd is not installed or failed (apt-get install zstd): ${out.error?.message ?? out.stderr.toString()}`);
  return out.stdout;
}

/**
 * Each hostile case, as entries whose intent is to write `<outside>/pwned` (or to plant
 * something the node must never hold). `outside` is an absolute path the test watches;
 * `up` is the `../` chain from the model root to the watched directory's parent.
 */
export function hostileCases(outside: string, up: string): Record<string, { entries: TarEntrySpec[]; code: 'UNSAFE_PATH' | 'UNSAFE_ENTRY' }> {
  const outsideName = outside.slice(outside.lastIndexOf('/') + 1);
  return {
    'dot-dot path': { code: 'UNSAFE_PATH', entries: [{ name: `${up}${outsideName}/pwned`, content: 'x' }] },
    'absolute path': { code: 'UNSAFE_PATH', entries: [{ name: `${outside}/pwned`, content: 'x' }] },
    'absolute symlink escaping': {
      code: 'UNSAFE_PATH',
      entries: [
        { name: 'evil', type: 'symlink', linkname: outside },
        { name: 'evil/pwned', content: 'x' },
      ],
    },
    'relative symlink escaping': {
      code: 'UNSAFE_PATH',
      entries: [
        { name: 'evil', type: 'symlink', linkname: `${up}${outsideName}` },
        { name: 'evil/pwned', content: 'x' },
      ],
    },
    'hardlink escaping': { code: 'UNSAFE_PATH', entries: [{ name: 'evil', type: 'link', linkname: `${up}${outsideName}/target` }] },
    'hardlink to an absolute path': { code: 'UNSAFE_PATH', entries: [{ name: 'evil', type: 'link', linkname: `${outside}/target` }] },
    'symlink then write through it': {
      code: 'UNSAFE_PATH',
      entries: [
        { name: 'sub/', type: 'directory' },
        { name: 'link', type: 'symlink', linkname: 'sub' },
        { name: 'link/pwned', content: 'x' },
      ],
    },
    'character device': { code: 'UNSAFE_ENTRY', entries: [{ name: 'null', type: 'character-device' }] },
    'block device': { code: 'UNSAFE_ENTRY', entries: [{ name: 'sda', type: 'block-device' }] },
    fifo: { code: 'UNSAFE_ENTRY', entries: [{ name: 'pipe', type: 'fifo' }] },
    'setuid file': { code: 'UNSAFE_ENTRY', entries: [{ name: 'su', content: '#!/bin/sh\n', mode: 0o4755 }] },
    'setgid file': { code: 'UNSAFE_ENTRY', entries: [{ name: 'sg', content: '#!/bin/sh\n', mode: 0o2755 }] },
    'duplicate path': {
      code: 'UNSAFE_ENTRY',
      entries: [
        { name: 'weights.bin', content: 'first' },
        { name: 'weights.bin', content: 'second' },
      ],
    },
    'file replaced by a symlink': {
      code: 'UNSAFE_ENTRY',
      entries: [
        { name: 'config.json', content: '{}' },
        { name: 'config.json', type: 'symlink', linkname: 'other' },
      ],
    },
  };
}
