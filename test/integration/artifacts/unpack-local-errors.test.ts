import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { isDriverError } from '../../../src/errors/driver-error.js';
import { createPathFilter } from '../../../src/artifacts/selection.js';
import { placeRawLayer } from '../../../src/artifacts/unpack/raw-file.js';
import { defaultTarLimits, extractTarLayer } from '../../../src/artifacts/unpack/tar-extractor.js';
import { openCache } from '../../../src/store/open-cache.js';
import { buildTar } from '../../helpers/hostile-tar.js';

// The node's disk failing under an unpack (a real ENOSPC from a 1 MiB tmpfs, a real EROFS from
// a read-only bind mount; needs root) is the node's problem, not "not a readable tar archive".
let work: string;
let full: string;
let readOnly: string;
let blobPath: string;
before(async () => {
  assert.equal(process.getuid?.(), 0, 'this test mounts a tmpfs and a read-only bind: run as root');
  work = await mkdtemp(join(tmpdir(), 'model-csi-unpack-fs-'));
  full = join(work, 'full');
  readOnly = join(work, 'ro');
  await mkdir(full);
  await mkdir(readOnly);
  execFileSync('/bin/mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', full]);
  execFileSync('/bin/mount', ['--bind', readOnly, readOnly]);
  execFileSync('/bin/mount', ['-o', 'remount,bind,ro', readOnly]);
  blobPath = join(work, 'layer.tar');
  await writeFile(blobPath, await buildTar([{ name: 'model/weights.bin', content: Buffer.alloc(3 * 2 ** 20, 1) }]));
});
after(async () => {
  execFileSync('/bin/umount', [full]);
  execFileSync('/bin/umount', [readOnly]);
  await rm(work, { recursive: true, force: true });
});

function unpackInto(root: string): Promise<unknown> {
  return extractTarLayer({
    blobPath,
    format: 'tar',
    root,
    filter: createPathFilter([], []),
    where: 'layer sha256:abc of reg/m:v1',
    limits: defaultTarLimits(4 * 2 ** 20, 'tar'),
    imageLayer: false,
  });
}

test('an unpack that fills the filesystem is NO_SPACE naming the file, not an unreadable tar', async () => {
  await assert.rejects(unpackInto(full), (err: unknown) => {
    assert.ok(isDriverError(err, 'NO_SPACE'), String(err));
    assert.match(err.message, /^unpacking layer sha256:abc of reg\/m:v1 failed: the cache filesystem ran out of space \(ENOSPC/);
    assert.doesNotMatch(err.message, /readable tar/);
    return true;
  });
});

test('an unpack into a read-only filesystem is CACHE_IO_FAILED naming the path and the node', async () => {
  await assert.rejects(unpackInto(readOnly), (err: unknown) => {
    assert.ok(isDriverError(err, 'CACHE_IO_FAILED'), String(err));
    assert.match(err.message, new RegExp(`^unpacking layer sha256:abc of reg/m:v1 failed on the node's cache filesystem, not because of the artifact: EROFS at ${readOnly}/model`));
    assert.doesNotMatch(err.message, /readable tar/);
    return true;
  });
});

test('a raw layer placed on a read-only filesystem is CACHE_IO_FAILED, not a raw errno', async () => {
  const { models } = await openCache(join(work, 'cache'));
  await assert.rejects(
    placeRawLayer({ blobPath, path: 'sub/w.bin', root: readOnly, where: 'layer sha256:abc of reg/m:v1', models }),
    (err: unknown) => {
      assert.ok(isDriverError(err, 'CACHE_IO_FAILED'), String(err));
      assert.match(err.message, /^placing layer sha256:abc of reg\/m:v1 at "sub\/w\.bin" failed on the node's cache filesystem.*EROFS/);
      return true;
    },
  );
});
