import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { PIECE_BYTES, PiecePool } from '../../../src/fs/piece-pool.js';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

async function collect(): Promise<void> {
  for (let i = 0; i < 5; i++) {
    gc();
    await new Promise((resolve) => setImmediate(resolve));
  }
}

test('pieces are 4 MiB views of the shared arena, reused once given back', () => {
  const pool = new PiecePool(4);
  assert.ok(pool.shared, 'shared WebAssembly memory is available in this Node.js');
  const a = pool.take();
  const b = pool.take();
  assert.equal(a.length, PIECE_BYTES);
  assert.ok(a.buffer instanceof SharedArrayBuffer);
  assert.deepEqual([pool.arenaOffset(a), pool.arenaOffset(b)], [0, PIECE_BYTES]);
  assert.equal(pool.piecesInUse, 2);
  pool.give([a]);
  assert.equal(pool.piecesInUse, 1);
  assert.equal(pool.arenaOffset(pool.take()), 0, 'the piece given back is the next one taken');
  assert.equal(pool.arenaOffset(Buffer.alloc(16)), undefined, 'ordinary memory is not arena memory');
});

test('a full arena falls back to ordinary Buffers, and gives never free a piece twice', () => {
  const pool = new PiecePool(2);
  const [a, b, c] = [pool.take(), pool.take(), pool.take()];
  assert.notEqual(pool.arenaOffset(a), undefined);
  assert.notEqual(pool.arenaOffset(b), undefined);
  assert.equal(pool.arenaOffset(c), undefined, 'third piece is a fallback');
  assert.equal(c.length, PIECE_BYTES);
  pool.give([a, a, c]);
  assert.equal(pool.piecesInUse, 1, 'a given twice is freed once');
  const d = pool.take();
  assert.equal(pool.arenaOffset(d), 0);
  assert.equal(pool.arenaOffset(pool.take()), undefined, 'only one piece was free');
});

test('a partial last piece handed on comes back with the view that was handed on', () => {
  const pool = new PiecePool(1);
  const piece = pool.take();
  const tail = piece.subarray(0, 1000);
  pool.handOn(piece, tail);
  pool.give([tail]);
  assert.equal(pool.piecesInUse, 0);
});

test('a piece dropped without being given back returns to the pool when collected', async () => {
  const pool = new PiecePool(1);
  (() => {
    const dropped = pool.take();
    dropped.fill(1);
  })();
  assert.equal(pool.piecesInUse, 1);
  await collect();
  assert.equal(pool.piecesInUse, 0);
});

test('collecting an earlier owner\'s view never frees the piece under its next owner', async () => {
  const pool = new PiecePool(1);
  (() => {
    const first = pool.take();
    // Given back through a different view of the same piece: the registered one stays alive
    // until collected, after the piece has a new owner.
    pool.give([Buffer.from(first.buffer, first.byteOffset, first.length)]);
  })();
  const second = pool.take();
  await collect();
  assert.equal(pool.piecesInUse, 1, 'still owned by `second`');
  assert.equal(pool.arenaOffset(pool.take()), undefined, 'so the next take falls back');
  pool.give([second]);
});

test('an arena with every piece back is dropped after the idle delay, and made again on the next take', async () => {
  const pool = new PiecePool(2, 20);
  const seen: Array<string> = [];
  pool.onArenaChange((arena) => seen.push(arena ? 'created' : 'dropped'));
  const piece = pool.take();
  const first = pool.memory;
  assert.ok(first);
  await new Promise((resolve) => setTimeout(resolve, 50));
  assert.equal(pool.memory, first, 'kept while a piece is out');
  pool.give([piece]);
  await new Promise((resolve) => setTimeout(resolve, 50));
  assert.equal(pool.memory, undefined, 'dropped once idle');
  const again = pool.take();
  assert.ok(pool.memory && pool.memory !== first);
  assert.equal(pool.arenaOffset(again), 0);
  assert.equal(pool.arenaOffset(piece), undefined, 'a view of the dropped arena is not taken for the new one');
  assert.deepEqual(seen, ['created', 'dropped', 'created']);
});

test('every growth of the arena is announced before its piece is handed out, at a length that covers it', () => {
  // Hash workers read pieces through the memory they were last sent; one sent only at creation
  // (length 0) could be read past its end before V8 updated the worker's view (a CI flake).
  const pool = new PiecePool(3, 1000);
  const lengths: number[] = [];
  pool.onArenaChange((arena) => {
    if (arena) lengths.push(arena.buffer.byteLength);
  });
  const pieces = [pool.take(), pool.take(), pool.take()];
  assert.deepEqual(lengths, [1, 2, 3].map((n) => n * 4 * 2 ** 20));
  pool.give(pieces);
  pool.dropIfIdle();
});
