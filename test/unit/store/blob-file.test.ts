import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { PIECE_BYTES, piecePool } from '../../../src/fs/piece-pool.js';
import { BlobFile } from '../../../src/store/blob-file.js';

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'model-csi-blobfile-'));
});
after(async () => rm(dir, { recursive: true, force: true }));

/** Bytes of `path` in the page cache, from util-linux's fincore (mincore(2)). */
function cachedBytes(path: string): number {
  const out = spawnSync('fincore', ['--bytes', '--noheadings', '--output', 'RES', path], { encoding: 'utf8' });
  if (out.status !== 0) throw new Error(`fincore failed (apt-get install util-linux-extra): ${out.stderr}`);
  return Number(out.stdout.trim());
}

function filledPiece(): Buffer {
  const piece = piecePool.take();
  piece.set(randomBytes(PIECE_BYTES));
  return piece;
}

test('whole arena pieces at aligned offsets go to disk past the page cache; the tail goes through it', async () => {
  const path = join(dir, 'direct');
  const file = await BlobFile.open(path, piecePool, { direct: true });
  const pieces = [filledPiece(), filledPiece()];
  const tail = randomBytes(1000);
  await file.write([pieces[0]!], 0);
  await file.write([pieces[1]!], PIECE_BYTES);
  await file.write([tail], 2 * PIECE_BYTES);
  await file.sync();
  await file.close();
  assert.equal(file.bytesWrittenDirect, 2 * PIECE_BYTES);
  // Only the buffered tail's page may be cached: the 8 MiB before it never went through the cache.
  assert.ok(cachedBytes(path) <= 4096, `${cachedBytes(path)} bytes cached`);
  assert.deepEqual(await readFile(path), Buffer.concat([...pieces, tail]));
  piecePool.give(pieces);
});

test('ordinary buffers, unaligned offsets and direct: false are written through the page cache', async () => {
  const path = join(dir, 'buffered');
  const file = await BlobFile.open(path, piecePool, { direct: true });
  const ordinary = randomBytes(PIECE_BYTES);
  const piece = filledPiece();
  await file.write([ordinary], 0);
  await file.write([piece], PIECE_BYTES + 512);
  await file.close();
  assert.equal(file.bytesWrittenDirect, 0);

  const off = await BlobFile.open(join(dir, 'off'), piecePool, { direct: false });
  await off.write([piece], 0);
  await off.close();
  assert.equal(off.bytesWrittenDirect, 0);
  assert.deepEqual(await readFile(join(dir, 'off')), piece);
  piecePool.give([piece]);
});
