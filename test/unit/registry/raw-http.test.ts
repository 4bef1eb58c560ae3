import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { test } from 'node:test';
import { PIECE_BYTES, piecePool } from '../../../src/fs/piece-pool.js';
import { rawRequest } from '../../../src/registry/raw-http.js';

test('a body closed mid-way gives the piece it was filling back to the pool at once, not when collected', async () => {
  // 1.5 pieces, then silence: the reader holds the first piece, the second is being filled.
  const server = createServer((_req, res) => {
    res.writeHead(200, { 'content-length': String(4 * PIECE_BYTES) });
    res.write(Buffer.alloc(PIECE_BYTES + PIECE_BYTES / 2, 7));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  try {
    const before = piecePool.piecesInUse;
    const { port } = server.address() as AddressInfo;
    const response = await rawRequest(new URL(`http://127.0.0.1:${port}/blob`), { method: 'GET', headers: {}, tls: {}, headersTimeoutMs: 5000, idleTimeoutMs: 5000 });
    let first: Buffer | undefined;
    for await (const chunk of response.body) {
      first = chunk as Buffer;
      break; // closes the body, as a range cut short does
    }
    assert.equal(first?.length, PIECE_BYTES);
    piecePool.give([first!]);
    await sleep(50);
    assert.equal(piecePool.piecesInUse, before, 'no piece left out');
  } finally {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }
});
