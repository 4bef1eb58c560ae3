import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { piecePool } from '../../../src/fs/piece-pool.js';
import { isDriverError } from '../../../src/errors/driver-error.js';
import { createBlobHasher, HashWorkers } from '../../../src/store/blob-hasher.js';

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'model-csi-hasher-'));
});
after(async () => rm(dir, { recursive: true, force: true }));

const sha256 = (...parts: Buffer[]): string => `sha256:${createHash('sha256').update(Buffer.concat(parts)).digest('hex')}`;

test('arena pieces are hashed in place and ordinary chunks from a copy, in the order given', async () => {
  const piece = piecePool.take();
  piece.set(randomBytes(piece.length));
  const tail = piece.subarray(0, 12_345);
  const small = randomBytes(70_000);
  const hasher = createBlobHasher();
  await hasher.update([piece]);
  await hasher.update([small, tail]);
  const expected = sha256(piece, small, tail);
  // Reusing the memory once update resolved must not change the digest.
  piece.fill(0);
  piecePool.give([piece]);
  assert.equal(await hasher.digest(), expected);
});

test('a resumed prefix is read back from the file, the rest comes by update', async () => {
  const bytes = randomBytes(5 * 2 ** 20 + 17);
  const path = join(dir, 'partial');
  await writeFile(path, bytes.subarray(0, 3 * 2 ** 20));
  const hasher = createBlobHasher({ path, length: 3 * 2 ** 20 });
  await hasher.update([bytes.subarray(3 * 2 ** 20)]);
  assert.equal(await hasher.digest(), sha256(bytes));
});

test('a prefix the file does not hold fails the digest, naming the shortfall', async () => {
  const path = join(dir, 'short');
  await writeFile(path, randomBytes(1000));
  const hasher = createBlobHasher({ path, length: 4096 });
  await hasher.update([randomBytes(10)]);
  await assert.rejects(hasher.digest(), /hashing failed: file ended at 1000 of 4096 bytes/);
});

test('hashers of different blobs run side by side without mixing bytes', async () => {
  const blobs = Array.from({ length: 6 }, () => Array.from({ length: 4 }, () => randomBytes(300_000)));
  const hashers = blobs.map(() => createBlobHasher());
  for (let part = 0; part < 4; part++) await Promise.all(blobs.map((chunks, i) => hashers[i]!.update([chunks[part]!])));
  assert.deepEqual(await Promise.all(hashers.map((h) => h.digest())), blobs.map((chunks) => sha256(...chunks)));
});

test('pieces of an arena made after the workers started, and after an idle arena was dropped, hash right', async () => {
  const hasher = createBlobHasher();
  const grown = [piecePool.take(), piecePool.take(), piecePool.take()];
  for (const piece of grown) piece.set(randomBytes(piece.length));
  await hasher.update(grown);
  piecePool.give(grown);
  piecePool.dropIfIdle();
  assert.equal(piecePool.memory, undefined, 'every piece was back: the arena is gone');
  const fresh = piecePool.take();
  fresh.set(randomBytes(fresh.length));
  await hasher.update([fresh]);
  assert.equal(await hasher.digest(), sha256(...grown, fresh));
  piecePool.give([fresh]);
});

test('a hash worker that dies fails the hashes it owes (no download waits forever), and the next blob gets a new worker', async () => {
  const workers = new HashWorkers(1, piecePool);
  const hasher = workers.open();
  await hasher.update([randomBytes(1000)]);
  await workers.stop();
  await assert.rejects(hasher.update([randomBytes(10)]), (err: unknown) => isDriverError(err) && err.code === 'INTERNAL' && /hashing failed: the hash worker stopped/.test(err.message));
  await assert.rejects(hasher.digest(), /the hash worker stopped/);
  const next = workers.open();
  const bytes = randomBytes(5000);
  await next.update([bytes]);
  assert.equal(await next.digest(), sha256(bytes));
  await workers.stop();
});
