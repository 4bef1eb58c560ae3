import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';
import { ConnectionBudget } from '../../../src/concurrency/connection-budget.js';
import { isDriverError } from '../../../src/errors/driver-error.js';
import type { Descriptor } from '../../../src/registry/oci-types.js';
import { DEFAULT_RETRY, Retrier } from '../../../src/registry/retry.js';
import { ContentStore, type BlobOpener } from '../../../src/store/content-store.js';
import { PieceMap } from '../../../src/store/piece-map.js';
import { RANGED_PIECE_BYTES } from '../../../src/store/ranged-download.js';

const MiB = 2 ** 20;
const quickRetrier = new Retrier({ ...DEFAULT_RETRY, baseDelayMs: 10, maxDelayMs: 20 });

let base: string;
before(async () => {
  base = await mkdtemp(join(tmpdir(), 'model-csi-ranged-'));
});
after(async () => rm(base, { recursive: true, force: true }));

const descriptorOf = (bytes: Buffer): Descriptor => ({
  mediaType: 'application/vnd.cncf.model.weight.v1.raw',
  digest: `sha256:${createHash('sha256').update(bytes).digest('hex')}`,
  size: bytes.length,
});

interface RangeOpener extends BlobOpener {
  requests: Array<{ offset: number; end: number | undefined }>;
  open: number;
  maxOpen: number;
  /** Body bytes delivered, in all and per request (in request order). */
  sent: number;
  sentPerRequest: number[];
}

/**
 * Serves `bytes` as a registry does: the asked range (206) or, with `ignoreRange`, the whole
 * blob (200). `bytesPerMs` paces each connection (an origin that limits each one); `corrupt`
 * flips a byte of every answer that covers that offset; `failOnce` cuts the first answer that
 * covers that offset after half of it.
 */
function ranges(bytes: Buffer, o: { ignoreRange?: boolean; bytesPerMs?: number; corrupt?: number; failOnce?: number } = {}): RangeOpener {
  let failed = false;
  const opener = (async (offset: number, _signal: AbortSignal, _attempt: number, end?: number) => {
    const request = opener.requests.push({ offset, end }) - 1;
    opener.sentPerRequest[request] = 0;
    const start = o.ignoreRange ? 0 : offset;
    const stop = o.ignoreRange || end === undefined ? bytes.length : end;
    opener.open++;
    opener.maxOpen = Math.max(opener.maxOpen, opener.open);
    let cutAt = Infinity;
    if (o.failOnce !== undefined && !failed && start <= o.failOnce && o.failOnce < stop) {
      failed = true;
      cutAt = start + Math.floor((stop - start) / 2);
    }
    async function* chunks(): AsyncGenerator<Buffer> {
      try {
        for (let at = start; at < stop; at += 256 * 1024) {
          if (at >= cutAt) throw new Error('connection reset by peer');
          const chunk = Buffer.from(bytes.subarray(at, Math.min(at + 256 * 1024, stop)));
          if (o.corrupt !== undefined && o.corrupt >= at && o.corrupt < at + chunk.length) chunk[o.corrupt - at]! ^= 0xff;
          if (o.bytesPerMs) await sleep(chunk.length / o.bytesPerMs);
          opener.sent += chunk.length;
          opener.sentPerRequest[request]! += chunk.length;
          yield chunk;
        }
      } finally {
        opener.open--;
      }
    }
    // One chunk read ahead at most: `sent` then over-counts a body cut short by a chunk or two.
    return { body: Readable.from(chunks(), { highWaterMark: 1 }), offset: start, ...(o.ignoreRange ? {} : { end: stop }) };
  }) as unknown as RangeOpener;
  opener.requests = [];
  opener.open = 0;
  opener.maxOpen = 0;
  opener.sent = 0;
  opener.sentPerRequest = [];
  return opener;
}

/**
 * Requests start at pieces and leave no gap, and each byte was sent once: a request whose tail
 * another connection took (it overlaps the next) was cut there, costing at most the chunks read
 * ahead (`CUT_SLACK`), far less than the piece a second fetch would cost.
 */
function assertFetchedOnce(opener: RangeOpener, size: number): void {
  const sorted = [...opener.requests].sort((a, b) => a.offset - b.offset);
  let at = 0;
  for (const { offset, end } of sorted) {
    assert.ok(offset <= at, `a gap before ${offset}: ${JSON.stringify(sorted)}`);
    assert.equal(offset % RANGED_PIECE_BYTES, 0);
    at = Math.max(at, end ?? size);
  }
  assert.equal(at, size);
  assert.ok(opener.sent <= size + sorted.length * CUT_SLACK, `${opener.sent - size} bytes sent twice over ${sorted.length} requests`);
}
const CUT_SLACK = 512 * 1024;

async function openStore(name: string): Promise<ContentStore> {
  return ContentStore.open(join(base, name), { retrier: quickRetrier, rangedMinBlobBytes: 16 * MiB });
}

describe('ranged downloads', () => {
  test('a large blob is fetched as ranged pieces over several connections at once, and verified', async () => {
    const store = await openStore('a');
    const bytes = randomBytes(40 * MiB);
    const desc = descriptorOf(bytes);
    const opener = ranges(bytes, { bytesPerMs: 20_000 }); // 20 MB/s a connection
    const path = await store.ingest(desc, opener);
    assert.deepEqual(await readFile(path), bytes);
    assert.ok(opener.maxOpen >= 2, `${opener.maxOpen} connections at once`);
    assert.ok(opener.requests.length >= 3, `${opener.requests.length} requests`);
    assertFetchedOnce(opener, bytes.length);
    assert.deepEqual(await readdir(store.ingestDir), [], 'no partial and no piece map left');
  });

  test("a long request's unstarted tail goes to the connections that join later, and the request stops short of it", async () => {
    const store = await openStore('h');
    const bytes = randomBytes(8 * RANGED_PIECE_BYTES);
    const opener = ranges(bytes, { bytesPerMs: 20_000 });
    const path = await store.ingest(descriptorOf(bytes), opener);
    assert.deepEqual(await readFile(path), bytes);
    // Alone at the start, the first connection took a span of pieces; the tuner then grew.
    const first = opener.requests[0]!;
    assert.ok(first.end! > RANGED_PIECE_BYTES, `the first request is a span: ${JSON.stringify(first)}`);
    const inside = opener.requests.slice(1).filter(({ offset }) => offset < first.end!);
    assert.ok(inside.length > 0, `another connection took pieces of the first span: ${JSON.stringify(opener.requests)}`);
    assert.ok(opener.sentPerRequest[0]! < first.end! - first.offset, 'the first request stopped short');
    assertFetchedOnce(opener, bytes.length);
  });

  test('more connections than the reorder memory holds: pieces without a share are read back from the file, none waits', async () => {
    const store = await openStore('i');
    const bytes = randomBytes(40 * RANGED_PIECE_BYTES);
    const opener = ranges(bytes, { bytesPerMs: 20_000 });
    const path = await store.ingest(descriptorOf(bytes), opener);
    assert.deepEqual(await readFile(path), bytes);
    // The node-wide reorder budget is 8 pieces: beyond the frontier's and 8 others, a
    // connection would otherwise wait for memory.
    assert.ok(opener.maxOpen >= 12, `${opener.maxOpen} connections at once`);
    assertFetchedOnce(opener, bytes.length);
  });

  test('below the threshold a blob is one stream', async () => {
    const store = await openStore('b');
    const bytes = randomBytes(12 * MiB);
    const opener = ranges(bytes);
    await store.ingest(descriptorOf(bytes), opener);
    assert.deepEqual(opener.requests, [{ offset: 0, end: undefined }]);
  });

  test('a source that ignores Range (200, the whole blob) is fetched as one stream', async () => {
    const store = await openStore('c');
    const bytes = randomBytes(24 * MiB);
    const opener = ranges(bytes, { ignoreRange: true });
    const path = await store.ingest(descriptorOf(bytes), opener);
    assert.deepEqual(await readFile(path), bytes);
    assert.deepEqual(opener.requests, [{ offset: 0, end: RANGED_PIECE_BYTES }, { offset: 0, end: undefined }], 'one piece asked for, then the blob as one stream');
  });

  test('a range answered with wrong bytes is caught: fetched once more, then DIGEST_MISMATCH, nothing kept', async () => {
    const store = await openStore('d');
    const bytes = randomBytes(24 * MiB);
    const desc = descriptorOf(bytes);
    const opener = ranges(bytes, { corrupt: 17 * MiB + 5 });
    await assert.rejects(store.ingest(desc, opener), (err: unknown) => isDriverError(err, 'DIGEST_MISMATCH') && err.grpcStatus === 15 && err.message.includes(desc.digest));
    assert.ok(opener.sent >= 2 * bytes.length && opener.sent <= 2 * bytes.length + opener.requests.length * CUT_SLACK, `the blob, twice: ${opener.sent} bytes`);
    assert.deepEqual(await readdir(store.blobsDir), []);
    assert.deepEqual(await readdir(store.ingestDir), []);
  });

  test('a piece that breaks is fetched again alone, from the bytes it had, and the rest of its span by others', async () => {
    const store = await openStore('e');
    const bytes = randomBytes(32 * MiB);
    const opener = ranges(bytes, { failOnce: 20 * MiB });
    const path = await store.ingest(descriptorOf(bytes), opener);
    assert.deepEqual(await readFile(path), bytes);
    const broken = opener.requests.findIndex(({ offset }) => offset % RANGED_PIECE_BYTES !== 0);
    assert.deepEqual(opener.requests[broken], { offset: 20 * MiB, end: 3 * RANGED_PIECE_BYTES }, 'resumed where it broke, to the end of that piece only');
    assert.ok(opener.sent <= bytes.length + opener.requests.length * CUT_SLACK, `no piece sent twice: ${opener.sent} bytes`);
  });

  test('a resumed download keeps every completed piece of the map, not only a prefix', async () => {
    const store = await openStore('f');
    const bytes = randomBytes(48 * MiB);
    const desc = descriptorOf(bytes);
    const ingest = join(store.ingestDir, desc.digest.slice(7));
    // What a killed download left: pieces 1, 2 and 4 of 6 on disk, and its map.
    const file = Buffer.alloc(5 * RANGED_PIECE_BYTES);
    const map = PieceMap.fresh(desc.size, RANGED_PIECE_BYTES);
    for (const i of [1, 2, 4]) {
      bytes.copy(file, i * RANGED_PIECE_BYTES, i * RANGED_PIECE_BYTES, (i + 1) * RANGED_PIECE_BYTES);
      map.markDone(i);
    }
    await writeFile(ingest, file);
    await map.save(PieceMap.pathFor(ingest));
    const opener = ranges(bytes);
    const path = await store.ingest(desc, opener);
    assert.deepEqual(await readFile(path), bytes);
    assert.deepEqual(opener.requests.map(({ offset }) => offset / RANGED_PIECE_BYTES).sort(), [0, 3, 5], 'only the missing pieces');
  });

  test('the connection caps hold across downloads', async () => {
    const store = await openStore('g');
    const budget = new ConnectionBudget({ perNode: 10, perRegistry: 3 });
    const blobs = [randomBytes(40 * MiB), randomBytes(40 * MiB)];
    const shared = { open: 0, max: 0 };
    const openers = blobs.map((bytes) => {
      const inner = ranges(bytes, { bytesPerMs: 40_000 });
      return (async (...args: Parameters<BlobOpener>) => {
        const result = await inner(...args);
        shared.open++;
        shared.max = Math.max(shared.max, shared.open);
        result.body.once('close', () => shared.open--);
        return result;
      }) as BlobOpener;
    });
    const connections = budget.forRegistry('registry.example');
    await Promise.all(blobs.map((bytes, i) => store.ingest(descriptorOf(bytes), openers[i]!, undefined, { connections })));
    assert.ok(shared.max <= 3, `${shared.max} connections at once to one registry`);
    assert.ok(shared.max >= 2, 'and more than one');
    assert.deepEqual(budget.inUse(), { node: 0, registries: { 'registry.example': 0 } }, 'every slot given back');
  });
});
