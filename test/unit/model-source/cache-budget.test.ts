import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import fsPromises, { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { syncBuiltinESMExports } from 'node:module';
import { execFileSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { pino } from 'pino';
import { isDriverError } from '../../../src/errors/driver-error.js';
import { diskUsage } from '../../../src/fs/disk-usage.js';
import { Metrics } from '../../../src/metrics/metrics.js';
import { CacheBudget } from '../../../src/model-source/cache-budget.js';
import { ContentStore } from '../../../src/store/content-store.js';
import { keyToFileName } from '../../../src/store/model-key.js';
import { ModelStore } from '../../../src/store/model-store.js';

let base: string;
before(async () => {
  base = await mkdtemp(join(tmpdir(), 'model-csi-budget-'));
});
after(async () => rm(base, { recursive: true, force: true }));

const KiB = 1024;

async function open(name: string): Promise<{ content: ContentStore; models: ModelStore; root: string }> {
  const root = join(base, name);
  const content = await ContentStore.open(root);
  return { content, models: await ModelStore.open(root, { content }), root };
}

function budgetOver(models: ModelStore, bytes: number, pinned: Set<string> = new Set()): CacheBudget {
  return new CacheBudget({ budget: bytes, store: models, pinned: () => pinned, metrics: new Metrics({ defaultMetrics: false }), logger: pino({ level: 'silent' }) });
}

function keyOf(n: number): string {
  return `sha256/${createHash('sha256').update(String(n)).digest('hex')}`;
}

/** Publish a model of `files` files of `bytes` bytes each (distinct content), as a pull would. */
async function publishModel(models: ModelStore, n: number, files: number, bytes: number): Promise<string> {
  const temp = await models.createTemp();
  const perDir = 500;
  for (let dir = 0; dir * perDir < files; dir++) {
    await mkdir(join(temp, `d${dir}`));
    const batch: Array<Promise<void>> = [];
    for (let i = dir * perDir; i < Math.min(files, (dir + 1) * perDir); i++) batch.push(writeFile(join(temp, `d${dir}`, `f${i}`), bytes === 0 ? '' : randomBytes(bytes)));
    await Promise.all(batch);
  }
  const key = keyOf(n);
  await models.publish(key, temp, { digest: `sha256:${key.slice(7)}`, reference: `r/m${n}:v1`, blobs: [] });
  return key;
}

/** readdir / lstat / stat calls made by `run` anywhere in this process (the cache's walk is made of them). */
async function countFsCalls(run: () => Promise<unknown>): Promise<number> {
  const fs = fsPromises as unknown as Record<string, (...args: unknown[]) => unknown>;
  const names = ['readdir', 'lstat', 'stat'] as const;
  const originals = names.map((name) => fs[name]!);
  let calls = 0;
  names.forEach((name, i) => {
    fs[name] = (...args: unknown[]) => {
      calls++;
      return originals[i]!(...args);
    };
  });
  syncBuiltinESMExports();
  try {
    await run();
  } finally {
    names.forEach((name, i) => (fs[name] = originals[i]!));
    syncBuiltinESMExports();
  }
  return calls;
}

/** The account must say what a walk of the cache's content says (state/ records aside). */
async function walked(models: ModelStore, content: ContentStore): Promise<number> {
  const seen = new Set<string>();
  let bytes = 0;
  for (const dir of [content.blobsDir, content.ingestDir, models.modelsDir, models.filesDir, models.tmpDir]) bytes += (await diskUsage(dir, seen)).bytes;
  return bytes;
}

describe('CacheBudget over the running account', () => {
  test('a reservation on a cache of 100k files does not walk it; an eviction costs the evicted model, not the cache', { timeout: 300_000 }, async () => {
    const { root, models: first } = await open('large');
    const template = await publishModel(first, 0, 1000, 0);
    // 99 more models like it, copied by cp(1) with their records (a pull each would take minutes).
    const record = JSON.parse(await readFile(join(first.stateDir, `${keyToFileName(template)}.json`), 'utf8')) as Record<string, unknown>;
    const copies: string[] = [];
    for (let n = 1; n < 100; n++) {
      const key = keyOf(n);
      copies.push(join(first.modelsDir, key));
      await writeFile(join(first.stateDir, `${keyToFileName(key)}.json`), JSON.stringify({ ...record, key, lastUsed: new Date(Date.UTC(2020, 0, n)).toISOString() }));
    }
    execFileSync('/bin/sh', ['-c', 'src=$1; shift; for dst in "$@"; do cp -a "$src" "$dst"; done', 'sh', join(first.modelsDir, template), ...copies]);
    // The node plugin's start-up: one walk, then the running account.
    const models = await ModelStore.open(root, { content: await ContentStore.open(root) });
    const cacheWalk = await countFsCalls(() => models.reconcileUsage());
    assert.ok(cacheWalk > 100_000, `a walk of the cache makes ${cacheWalk} calls`);

    const roomy = budgetOver(models, 2 ** 40);
    const reserving = await countFsCalls(async () => (await roomy.reserve('a model', 1000)).release());
    assert.ok(reserving <= 2, `a reservation that fits made ${reserving} readdir/lstat/stat calls (a walk makes ${cacheWalk})`);

    // A budget only the eviction of the oldest model can satisfy.
    const used = await models.usedBytes();
    const tight = budgetOver(models, used + 1);
    const evicting = await countFsCalls(async () => (await tight.reserve('a model', 2)).release());
    assert.equal((await models.list()).length, 99, 'one model evicted');
    assert.equal(await models.has(keyOf(1)), false, 'the least recently used one');
    assert.ok(evicting < cacheWalk / 20, `an eviction made ${evicting} calls; a walk makes ${cacheWalk}`);
    console.log(`budget: a walk of 100k files: ${cacheWalk} calls; a reservation: ${reserving}; a reservation evicting one 1000-file model: ${evicting}`);
  });

  test('a partial download on disk counts once: in its pull\'s reservation, not again as used bytes', async () => {
    const { models, content } = await open('in-flight');
    const budget = budgetOver(models, 100 * KiB);
    const first = await budget.reserve('model A', 60 * KiB);
    // Model A's download is under way: 60 KiB of its blob are on disk in ingest/.
    await writeFile(join(content.ingestDir, 'ab'.repeat(32)), randomBytes(60 * KiB));
    const second = await budget.reserve('model B', 30 * KiB);
    second.release();
    first.release();
  });

  test('the account follows publish, sharing, removal and gc as a walk would see them', async () => {
    const { models, content } = await open('exact');
    await models.reconcileUsage();
    const shared = randomBytes(20 * KiB);
    const sharedHex = createHash('sha256').update(shared).digest('hex');
    const raw = randomBytes(30 * KiB);
    const rawDigest = `sha256:${createHash('sha256').update(raw).digest('hex')}`;
    const rawBlob = await content.ingest({ mediaType: 'x', digest: rawDigest, size: raw.length }, async () => ({ body: Readable.from([raw]), offset: 0 }));
    const tarBytes = randomBytes(40 * KiB);
    const tarDigest = `sha256:${createHash('sha256').update(tarBytes).digest('hex')}`;
    await content.ingest({ mediaType: 'x', digest: tarDigest, size: tarBytes.length }, async () => ({ body: Readable.from([tarBytes]), offset: 0 }));

    const keys: string[] = [];
    for (const n of [1, 2]) {
      const temp = await models.createTemp();
      await writeFile(join(temp, 'shared.bin'), shared);
      await fsPromises.chmod(join(temp, 'shared.bin'), 0o444);
      await models.shareFile(join(temp, 'shared.bin'), sharedHex, 0o444);
      await writeFile(join(temp, 'own.bin'), randomBytes(10 * KiB));
      if (n === 1) await models.linkBlob(rawBlob, join(temp, 'raw.bin'), 0o444);
      keys.push(keyOf(100 + n));
      await models.publish(keys.at(-1)!, temp, { digest: `sha256:${keys.at(-1)!.slice(7)}`, reference: `r/m${n}`, blobs: n === 1 ? [rawDigest] : [] });
      assert.equal(await models.usedBytes(), await walked(models, content), `after publishing model ${n}`);
    }
    await models.remove(keys[0]!);
    await models.dropUnreferencedBlobs();
    assert.equal(await models.usedBytes(), await walked(models, content), 'after evicting model 1 (its raw blob and the tar blob go)');
    await models.remove(keys[1]!);
    assert.equal(await models.usedBytes(), await walked(models, content), 'after evicting model 2 (the shared file goes with it)');
    await models.collectGarbage({ staleMs: 0 });
    assert.equal(await models.usedBytes(), await walked(models, content), 'after gc');
  });

  test('cache gc in another process (a stamp) makes the node\'s account reconcile', async () => {
    const { models: node, root } = await open('two-processes');
    await node.reconcileUsage();
    const key = await publishModel(node, 7, 3, 8 * KiB);
    const withModel = await node.usedBytes();
    // `model-csi cache gc`: its own store on the same root removes the model and stamps.
    const gc = await ModelStore.open(root, { content: await ContentStore.open(root) });
    await gc.remove(key);
    await gc.collectGarbage();
    await gc.reconcileUsage();
    await gc.stampUsageChanged();
    const after = await node.usedBytes();
    assert.ok(after < withModel - 24 * KiB, `the node's account drops to ${after} from ${withModel}`);
  });
});

test('NO_SPACE before a byte is downloaded still holds with the account', async () => {
  const { models } = await open('no-space');
  const key = await publishModel(models, 9, 2, 16 * KiB);
  const budget = budgetOver(models, (await models.usedBytes()) + 8 * KiB, new Set([key]));
  await assert.rejects(budget.reserve('model B', 64 * KiB), (err: unknown) => isDriverError(err, 'NO_SPACE'));
  assert.equal((await models.list()).length, 1, 'a pinned model is never evicted');
});
