import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { access, mkdir, mkdtemp, readdir, readFile, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { ContentStore } from '../../../src/store/content-store.js';
import { modelKeyFor } from '../../../src/store/model-key.js';
import { ModelStore } from '../../../src/store/model-store.js';

let base: string;
before(async () => {
  base = await mkdtemp(join(tmpdir(), 'model-csi-models-'));
});
after(async () => rm(base, { recursive: true, force: true }));

const MODEL_DIGEST = `sha256:${'ab'.repeat(32)}`;

async function open(name: string): Promise<{ content: ContentStore; models: ModelStore; root: string }> {
  const root = join(base, name);
  const content = await ContentStore.open(root);
  return { content, models: await ModelStore.open(root, { content }), root };
}

async function addBlob(content: ContentStore, bytes: Buffer): Promise<{ digest: string; path: string }> {
  const digest = `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
  const path = await content.ingest({ mediaType: 'x', digest, size: bytes.length }, async () => ({ body: Readable.from([bytes]), offset: 0 }));
  return { digest, path };
}

describe('model keys', () => {
  test('full models live at sha256/<hex>; a selection adds a stable suffix', () => {
    assert.equal(modelKeyFor(MODEL_DIGEST), `sha256/${'ab'.repeat(32)}`);
    const a = modelKeyFor(MODEL_DIGEST, ['*.json', 'b'], []);
    assert.match(a, /^sha256\/[a-f0-9]{64}-[a-f0-9]{16}$/);
    assert.equal(modelKeyFor(MODEL_DIGEST, [' b', '*.json', 'b'], []), a, 'order, blanks and repeats do not matter');
    assert.notEqual(modelKeyFor(MODEL_DIGEST, [], ['*.json', 'b']), a, 'include and exclude differ');
  });
});

describe('ModelStore', () => {
  test('publish: one rename of a sealed temp dir; record kept outside the model dir', async () => {
    const { content, models, root } = await open('a');
    const blob = await addBlob(content, randomBytes(5000));
    const temp = await models.createTemp();
    await mkdir(join(temp, 'sub'));
    await models.linkBlob(blob.path, join(temp, 'sub', 'weights.bin'), 0o444);
    const key = modelKeyFor(MODEL_DIGEST);
    const entry = await models.publish(key, temp, { digest: MODEL_DIGEST, reference: 'r/m:v1', blobs: [blob.digest] });
    assert.equal(entry.path, join(root, 'models', 'sha256', 'ab'.repeat(32)));
    assert.equal(entry.sizeBytes, 5000);
    assert.deepEqual(await readdir(models.tmpDir), []);
    assert.equal((await stat(entry.path)).mode & 0o777, 0o555);
    assert.equal((await stat(join(entry.path, 'sub'))).mode & 0o777, 0o555);
    assert.equal((await stat(join(entry.path, 'sub', 'weights.bin'))).ino, (await stat(blob.path)).ino, 'raw file is the blob, hardlinked');
    assert.deepEqual(await readdir(entry.path), ['sub'], 'no metadata inside the mounted dir');
    const record = JSON.parse(await readFile(join(root, 'state', 'models', `sha256_${'ab'.repeat(32)}.json`), 'utf8'));
    assert.equal(record.reference, 'r/m:v1');
    assert.ok(await models.has(key));
    const listed = await models.list();
    assert.deepEqual(listed.map((m) => [m.key, m.sizeBytes, m.blobs]), [[key, 5000, [blob.digest]]]);
  });

  test('publishing a model that exists is success and keeps the first copy', async () => {
    const { models } = await open('b');
    const key = modelKeyFor(MODEL_DIGEST);
    const first = await models.createTemp();
    await writeFile(join(first, 'a'), 'first');
    await models.publish(key, first, { digest: MODEL_DIGEST, reference: 'r/m:v1', blobs: [] });
    const second = await models.createTemp();
    await writeFile(join(second, 'a'), 'second');
    const entry = await models.publish(key, second, { digest: MODEL_DIGEST, reference: 'r/m:v1', blobs: [] });
    assert.equal(await readFile(join(entry.path, 'a'), 'utf8'), 'first');
    assert.deepEqual(await readdir(models.tmpDir), []);
  });

  test('remove, touch and gc: unreferenced blobs, unshared files and stale partials go', async () => {
    const { content, models } = await open('c');
    const kept = await addBlob(content, randomBytes(100));
    const orphan = await addBlob(content, randomBytes(100));
    const leased = await addBlob(content, randomBytes(100));
    const temp = await models.createTemp();
    await models.linkBlob(kept.path, join(temp, 'w'), 0o444);
    await writeFile(join(temp, 'shared.txt'), 'shared', { mode: 0o444 });
    await models.shareFile(join(temp, 'shared.txt'), createHash('sha256').update('shared').digest('hex'), 0o444);
    const key = modelKeyFor(MODEL_DIGEST);
    await models.publish(key, temp, { digest: MODEL_DIGEST, reference: 'r/m:v1', blobs: [kept.digest] });
    const before = (await models.list())[0]!.lastUsed;
    await new Promise((r) => setTimeout(r, 5));
    await models.touch(key);
    assert.ok((await models.list())[0]!.lastUsed > before);

    const staleIngest = join(content.ingestDir, 'f'.repeat(64));
    await writeFile(staleIngest, 'partial');
    await utimes(staleIngest, new Date(0), new Date(0));
    const freshIngest = join(content.ingestDir, 'e'.repeat(64));
    await writeFile(freshIngest, 'partial');

    const release = content.lease([leased.digest]);
    let result = await models.collectGarbage();
    assert.deepEqual(result, { blobs: 1, files: 0, ingest: 1, tmp: 0 });
    await assert.rejects(access(orphan.path));
    await access(kept.path);
    await access(leased.path);
    await access(freshIngest);
    release();

    await models.remove(key);
    assert.equal(await models.has(key), false);
    assert.deepEqual(await models.list(), []);
    result = await models.collectGarbage();
    assert.deepEqual(result, { blobs: 2, files: 1, ingest: 0, tmp: 0 });
    assert.deepEqual(await content.listBlobs(), []);
    assert.deepEqual(await readdir(models.tmpDir), []);
  });

  test('start-up removes temp dirs of dead processes', async () => {
    const { root } = await open('d');
    await mkdir(join(root, 'tmp', '999999999-deadbeef', 'half'), { recursive: true });
    await ModelStore.open(root, { content: await ContentStore.open(root) });
    assert.deepEqual(await readdir(join(root, 'tmp')), []);
  });
});

test('a raw layer placed after a tar entry offered the same bytes links that shared copy: one inode either way', async () => {
  const { content, models } = await open('share-order');
  const bytes = randomBytes(5000);
  const hex = createHash('sha256').update(bytes).digest('hex');
  const temp = join(models.tmpDir, 'share-order-model');
  await mkdir(temp, { recursive: true });
  // The tar entry lands first (its blob is not in blobs/ yet): it offers its file as the shared copy.
  const fromTar = join(temp, 'in-tar.bin');
  await writeFile(fromTar, bytes, { mode: 0o444 });
  assert.equal(await models.shareFile(fromTar, hex, 0o444), 'offered');
  // Then the raw layer's blob is verified and placed.
  const blob = await addBlob(content, bytes);
  const raw = join(temp, 'raw.bin');
  assert.equal(await models.linkBlob(blob.path, raw, (await stat(blob.path)).mode & 0o7777), 'linked');
  assert.equal((await stat(raw)).ino, (await stat(fromTar)).ino, 'the raw file is the shared copy, not a second inode');
});
