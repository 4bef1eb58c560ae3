import assert from 'node:assert/strict';
import { open, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { status } from '@grpc/grpc-js';
import { DriverError } from '../../../src/errors/driver-error.js';
import { cacheFsError, isLocalFsFailure, isNoSpace } from '../../../src/errors/fs-error.js';
import { toGrpcError } from '../../../src/errors/to-grpc.js';

/** The error Node raises for a failed syscall (same shape as fs/promises' errors). */
function errno(code: string, syscall: string, path?: string): NodeJS.ErrnoException {
  return Object.assign(new Error(`${code}: failed, ${syscall}${path ? ` '${path}'` : ''}`), { code, syscall, ...(path ? { path } : {}) });
}

test('ENOSPC and EDQUOT are NO_SPACE (RESOURCE_EXHAUSTED), naming the path and what to do', () => {
  for (const code of ['ENOSPC', 'EDQUOT']) {
    const err = cacheFsError(errno(code, 'write', '/cache/ingest/ab'), 'downloading blob sha256:ab');
    assert.ok(err instanceof DriverError);
    assert.equal(err.code, 'NO_SPACE');
    assert.equal(toGrpcError(err).code, status.RESOURCE_EXHAUSTED);
    assert.match(err.message, new RegExp(`^downloading blob sha256:ab failed: the cache filesystem ran out of (space|quota) \\(${code} at /cache/ingest/ab \\(write\\)\\); free space`));
    assert.equal(isNoSpace(err), true);
  }
});

test('EIO, EROFS, EACCES, EMFILE are CACHE_IO_FAILED (INTERNAL): the node\'s disk, not the artifact', () => {
  for (const code of ['EIO', 'EROFS', 'EACCES', 'EPERM', 'EMFILE', 'ENFILE']) {
    const err = cacheFsError(errno(code, 'open', '/cache/tmp/1-x/model/w'), 'unpacking layer sha256:cd of reg/m:v1');
    assert.ok(err instanceof DriverError, code);
    assert.equal(err.code, 'CACHE_IO_FAILED');
    assert.equal(toGrpcError(err).code, status.INTERNAL);
    assert.match(err.message, new RegExp(`^unpacking layer sha256:cd of reg/m:v1 failed on the node's cache filesystem, not because of the artifact: ${code} at /cache/tmp/1-x/model/w \\(open\\)`));
    assert.equal(err.retryable, code === 'EMFILE' || code === 'ENFILE', `${code} retryable`);
  }
});

test('a real errno from the kernel is classed the same way', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'model-csi-fs-error-'));
  try {
    const missing = await open(join(dir, 'no', 'such'), 'r').catch((err: unknown) => err);
    assert.equal(cacheFsError(missing, 'x'), undefined, 'ENOENT is left to the caller');
    assert.equal(isLocalFsFailure(missing), false);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('the errno is found through the cause chain; a socket EACCES is not the disk', () => {
  const wrapped = new Error('stream failed', { cause: errno('EIO', 'read', '/cache/blobs/sha256/ab') });
  assert.equal(cacheFsError(wrapped, 'hashing')?.code, 'CACHE_IO_FAILED');
  assert.equal(isLocalFsFailure(errno('EACCES', 'connect')), false);
  assert.equal(cacheFsError(errno('EEXIST', 'open', '/x'), 'x'), undefined);
  assert.equal(cacheFsError(new DriverError('UNSAFE_PATH', 'no'), 'x'), undefined);
});

test('an error classed lower down keeps its code and status and gets the caller\'s context', () => {
  const inner = cacheFsError(errno('ENOSPC', 'write'), 'writing the download file /cache/ingest/ab')!;
  const outer = cacheFsError(inner, 'pulling reg/m:v1')!;
  assert.equal(outer.code, 'NO_SPACE');
  assert.match(outer.message, /^pulling reg\/m:v1: writing the download file \/cache\/ingest\/ab failed: the cache filesystem ran out of space \(ENOSPC \(write\)\)/);
});
