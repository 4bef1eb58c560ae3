import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { isDriverError } from '../../../src/errors/driver-error.js';
import { ContentStore, type BlobOpener } from '../../../src/store/content-store.js';
import type { Descriptor } from '../../../src/registry/oci-types.js';
import { DEFAULT_RETRY, Retrier } from '../../../src/registry/retry.js';
import { DriverError } from '../../../src/errors/driver-error.js';

/** The default policy with short delays. */
const quickRetrier = new Retrier({ ...DEFAULT_RETRY, baseDelayMs: 10, maxDelayMs: 20 });

let base: string;
before(async () => {
  base = await mkdtemp(join(tmpdir(), 'model-csi-content-'));
});
after(async () => rm(base, { recursive: true, force: true }));

const descriptorOf = (bytes: Buffer): Descriptor => ({
  mediaType: 'application/vnd.cncf.model.weight.v1.raw',
  digest: `sha256:${createHash('sha256').update(bytes).digest('hex')}`,
  size: bytes.length,
});

/** Serves `bytes` from the asked offset in 64 KiB chunks; records every request. */
function serve(bytes: Buffer, options: { failAfter?: number; ignoreRange?: boolean; delayMs?: number } = {}): BlobOpener & { calls: number[]; sent: number } {
  const opener = (async (offset: number) => {
    opener.calls.push(offset);
    if (options.delayMs) await new Promise((r) => setTimeout(r, options.delayMs));
    const start = options.ignoreRange ? 0 : offset;
    const failAt = options.failAfter !== undefined && opener.calls.length === 1 ? options.failAfter : Infinity;
    async function* chunks(): AsyncGenerator<Buffer> {
      for (let at = start; at < bytes.length; at += 65536) {
        if (at >= failAt) throw new Error('connection reset by peer');
        const chunk = bytes.subarray(at, Math.min(at + 65536, bytes.length));
        opener.sent += chunk.length;
        yield chunk;
      }
    }
    return { body: Readable.from(chunks()), offset: start };
  }) as unknown as BlobOpener & { calls: number[]; sent: number };
  opener.calls = [];
  opener.sent = 0;
  return opener;
}

describe('ContentStore.ingest', () => {
  test('stores a verified blob read-only under blobs/sha256/<hex> and leaves no partial', async () => {
    const store = await ContentStore.open(join(base, 'a'));
    const bytes = randomBytes(300_000);
    const desc = descriptorOf(bytes);
    const path = await store.ingest(desc, serve(bytes));
    assert.equal(path, join(base, 'a', 'blobs', 'sha256', desc.digest.slice(7)));
    assert.deepEqual(await readFile(path), bytes);
    assert.equal((await stat(path)).mode & 0o777, 0o444);
    assert.deepEqual(await readdir(store.ingestDir), []);
    const again = serve(bytes);
    await store.ingest(desc, again);
    assert.equal(again.calls.length, 0, 'an existing blob is not fetched again');
  });

  test('digest mismatch: DIGEST_MISMATCH, nothing visible, partial deleted', async () => {
    const store = await ContentStore.open(join(base, 'b'));
    const bytes = randomBytes(100_000);
    const desc = { ...descriptorOf(bytes), digest: descriptorOf(randomBytes(10)).digest };
    await assert.rejects(store.ingest(desc, serve(bytes)), (err: unknown) => isDriverError(err, 'DIGEST_MISMATCH') && err.message.includes(desc.digest));
    assert.deepEqual(await readdir(store.blobsDir), []);
    assert.deepEqual(await readdir(store.ingestDir), []);
  });

  test('more bytes than the descriptor says is a mismatch, and the stream is not stored', async () => {
    const store = await ContentStore.open(join(base, 'b2'));
    const bytes = randomBytes(200_000);
    const desc = { ...descriptorOf(bytes), size: 100_000 };
    await assert.rejects(store.ingest(desc, serve(bytes)), (err: unknown) => isDriverError(err, 'DIGEST_MISMATCH'));
    assert.deepEqual(await readdir(store.blobsDir), []);
  });

  test('resumes from a partial file left by an earlier process (Range from its size)', async () => {
    const root = join(base, 'c');
    const store = await ContentStore.open(root);
    const bytes = randomBytes(1_000_000);
    const desc = descriptorOf(bytes);
    await writeFile(join(store.ingestDir, desc.digest.slice(7)), bytes.subarray(0, 4096 * 170));
    const opener = serve(bytes);
    const done: number[] = [];
    await store.ingest(desc, opener, (p) => done.push(p.doneBytes));
    assert.deepEqual(opener.calls, [4096 * 170], 'one request, from the bytes on disk');
    assert.equal(opener.sent, 1_000_000 - 4096 * 170);
    assert.equal(done[0], 4096 * 170, 'progress starts at the bytes already on disk');
    assert.deepEqual(await readFile(store.blobPath(desc.digest)), bytes);
  });

  test('a partial file that ends mid-block resumes at the block boundary below it (the rest stays O_DIRECT-aligned)', async () => {
    const store = await ContentStore.open(join(base, 'c2'));
    const bytes = randomBytes(1_000_000);
    const desc = descriptorOf(bytes);
    await writeFile(join(store.ingestDir, desc.digest.slice(7)), bytes.subarray(0, 700_000));
    const opener = serve(bytes);
    await store.ingest(desc, opener);
    assert.deepEqual(opener.calls, [696_320], '700,000 rounded down to a multiple of 4096');
    assert.equal(opener.sent, 1_000_000 - 696_320, 'less than 4 KiB fetched again');
    assert.deepEqual(await readFile(store.blobPath(desc.digest)), bytes);
  });

  test('a stream cut mid-way is retried from the bytes on disk, not from zero', async () => {
    const store = await ContentStore.open(join(base, 'd'), { retrier: quickRetrier });
    const bytes = randomBytes(1_000_000);
    const desc = descriptorOf(bytes);
    const opener = serve(bytes, { failAfter: 65536 * 8 });
    await store.ingest(desc, opener);
    assert.deepEqual(opener.calls, [0, 65536 * 8]);
    assert.equal(opener.sent, bytes.length, 'every byte sent once');
    assert.deepEqual(await readFile(store.blobPath(desc.digest)), bytes);
  });

  test('a server that ignores Range: the blob is rewritten from 0 and still verified', async () => {
    const store = await ContentStore.open(join(base, 'e'));
    const bytes = randomBytes(200_000);
    const desc = descriptorOf(bytes);
    await writeFile(join(store.ingestDir, desc.digest.slice(7)), bytes.subarray(0, 50_000));
    await store.ingest(desc, serve(bytes, { ignoreRange: true }));
    assert.deepEqual(await readFile(store.blobPath(desc.digest)), bytes);
  });

  test('a torn partial (garbage from a crash) is downloaded again once before failing', async () => {
    const store = await ContentStore.open(join(base, 'f'));
    const bytes = randomBytes(200_000);
    const desc = descriptorOf(bytes);
    await writeFile(join(store.ingestDir, desc.digest.slice(7)), randomBytes(50_000));
    const opener = serve(bytes);
    await store.ingest(desc, opener);
    assert.deepEqual(opener.calls, [49_152, 0], 'resumed at the block boundary below 50,000, then from 0');
    assert.deepEqual(await readFile(store.blobPath(desc.digest)), bytes);
  });

  test('concurrent ingests of one digest download once; different digests run in parallel', async () => {
    const store = await ContentStore.open(join(base, 'g'));
    const bytes = randomBytes(500_000);
    const other = randomBytes(500_000);
    const opener = serve(bytes, { delayMs: 50 });
    const otherOpener = serve(other, { delayMs: 50 });
    const started = Date.now();
    const paths = await Promise.all([
      store.ingest(descriptorOf(bytes), opener),
      store.ingest(descriptorOf(bytes), opener),
      store.ingest(descriptorOf(bytes), opener),
      store.ingest(descriptorOf(other), otherOpener),
    ]);
    assert.equal(opener.calls.length, 1, 'one download for three callers');
    assert.equal(new Set(paths.slice(0, 3)).size, 1);
    assert.equal(otherOpener.calls.length, 1);
    assert.ok(Date.now() - started < 2000);
  });

  test('a non-retryable registry error is not retried', async () => {
    const store = await ContentStore.open(join(base, 'h'), { retrier: quickRetrier });
    let calls = 0;
    const desc = descriptorOf(randomBytes(10));
    await assert.rejects(
      store.ingest(desc, async () => {
        calls++;
        throw new DriverError('BLOB_NOT_FOUND', 'no such blob');
      }),
      (err: unknown) => isDriverError(err, 'BLOB_NOT_FOUND'),
    );
    assert.equal(calls, 1);
  });

  test("a joiner's opener carries a shared download on when the first caller's source refuses it; each caller gets its own outcome", async () => {
    const store = await ContentStore.open(join(base, 'i'), { retrier: quickRetrier });
    const bytes = randomBytes(300_000);
    const desc = descriptorOf(bytes);
    let refusedCalls = 0;
    const refused = async (): Promise<never> => {
      refusedCalls++;
      throw new DriverError('REGISTRY_UNAUTHORIZED', "the first caller's credentials were refused");
    };
    const good = serve(bytes);
    const first = store.ingest(desc, refused);
    const joiner = store.ingest(desc, good);
    await assert.rejects(first, (err: unknown) => isDriverError(err, 'REGISTRY_UNAUTHORIZED'));
    assert.deepEqual(await readFile(await joiner), bytes);
    assert.equal(refusedCalls, 1);
    assert.deepEqual(good.calls, [0]);
  });

  test('a shared download outlives its first caller leaving (its signal); the joiner completes from the same bytes', async () => {
    const store = await ContentStore.open(join(base, 'j'), { retrier: quickRetrier });
    const bytes = randomBytes(600_000);
    const desc = descriptorOf(bytes);
    let release!: () => void;
    const halfway = new Promise<void>((resolve) => (release = resolve));
    let reachedHalf!: () => void;
    const atHalf = new Promise<void>((resolve) => (reachedHalf = resolve));
    const calls: number[] = [];
    const gated: BlobOpener = async (offset) => {
      calls.push(offset);
      async function* chunks(): AsyncGenerator<Buffer> {
        for (let at = offset; at < bytes.length; at += 65536) {
          if (at >= 300_000 && offset === 0) {
            reachedHalf();
            await halfway;
          }
          yield bytes.subarray(at, Math.min(at + 65536, bytes.length));
        }
      }
      return { body: Readable.from(chunks()), offset };
    };
    const leaving = new AbortController();
    const first = store.ingest(desc, gated, undefined, { signal: leaving.signal });
    const joiner = store.ingest(desc, serve(bytes));
    await atHalf;
    leaving.abort(new Error('the first caller went away'));
    await assert.rejects(first, /the first caller went away/);
    release();
    assert.deepEqual(await readFile(await joiner), bytes);
    assert.deepEqual(calls, [0], 'the stream the first caller opened went on: no second request');
  });
});
