/**
 * The cache budget, end to end: a node plugin whose cacheBudget holds about two 1 MiB models,
 * a real registry behind a counting proxy, real mounts, and the operator's `model-csi cache`
 * command run as its own process against the same cache root.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, test } from 'node:test';
import { status } from '@grpc/grpc-js';
import { request } from 'undici';
import { stringify } from 'yaml';
import { callCsi, mainCommand } from '../../helpers/driver-process.js';
import { freePort } from '../../helpers/registry.js';
import { modelFiles, publishRequest, publishUntilReady, pushModel, startStage, target, type Stage } from './fixture.js';

const REPO = fileURLToPath(new URL('../../../', import.meta.url));
const MiB = 1024 * 1024;
/** Two 1 MiB models and their overhead fit; a third does not. */
const BUDGET = 2.5 * MiB;

type Model = Awaited<ReturnType<typeof pushModel>>;
let stage: Stage;
let metricsPort: number;
const models: Record<'a' | 'b' | 'c' | 'd', Model> = {} as Record<'a' | 'b' | 'c' | 'd', Model>;

before(async () => {
  metricsPort = await freePort();
  stage = await startStage({ config: { cacheBudget: BUDGET }, args: ['--metrics-addr', `127.0.0.1:${metricsPort}`] });
  for (const name of ['a', 'b', 'c', 'd'] as const) models[name] = await pushModel(stage, `models/evict-${name}`, 'v1', modelFiles(`evict-${name}`, MiB));
});
after(() => stage.close());

const keyOf = (model: Model): string => `sha256/${model.digest.slice('sha256:'.length)}`;
const cachedKeys = async (): Promise<string[]> => (await readdir(join(stage.root, 'models', 'sha256'))).map((hex) => `sha256/${hex}`).sort();
const volume = (name: string) => publishRequest(target(stage, name), { reference: models[name.slice(0, 1) as 'a']!.reference });
const unpublish = (name: string) => callCsi(stage.clients.node, 'NodeUnpublishVolume', { volume_id: `vol-${name}`, target_path: target(stage, name) });

async function assertMountedBytes(name: string, model: Model): Promise<void> {
  for (const [file, bytes] of Object.entries(model.expected)) assert.ok((await readFile(join(target(stage, name), file))).equals(bytes), `${name}: ${file}`);
}

async function metric(name: string): Promise<number> {
  const res = await request(`http://127.0.0.1:${metricsPort}/metrics`);
  const text = await res.body.text();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  assert.ok(line, `metric ${name} is exported`);
  return Number(line.split(' ')[1]);
}

/** `model-csi cache …` as its own process, as an operator runs it on the node. */
function cacheCli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [...mainCommand(), 'cache', ...args], { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('exit', (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}

test('the least recently used unused model is evicted to make room; mounted ones stay', { timeout: 60_000 }, async () => {
  await publishUntilReady(stage, volume('a1'));
  await unpublish('a1');
  await publishUntilReady(stage, volume('b1'));
  assert.deepEqual(await cachedKeys(), [keyOf(models.a), keyOf(models.b)].sort(), 'A and B fit the budget together');
  assert.equal(await metric('model_csi_cache_evictions_total'), 0);

  await publishUntilReady(stage, volume('c1'));
  assert.deepEqual(await cachedKeys(), [keyOf(models.b), keyOf(models.c)].sort(), 'A (unused, least recently used) was evicted');
  await assertMountedBytes('b1', models.b);
  await assertMountedBytes('c1', models.c);
  assert.equal(await metric('model_csi_cache_evictions_total'), 1);
  await assert.rejects(stat(join(stage.root, 'blobs', 'sha256', models.a.layers[0]!.digest.slice(7))), { code: 'ENOENT' }, "A's weight blob went with it");

  const listed = await cacheCli(['ls', '--root', stage.root, '--json']);
  assert.equal(listed.code, 0, listed.stderr);
  const rows = listed.stdout.trim().split('\n').map((line) => JSON.parse(line) as { key: string; reference: string; sizeBytes: number });
  assert.deepEqual(rows.map((row) => row.key).sort(), [keyOf(models.b), keyOf(models.c)].sort(), 'cache ls agrees');
  assert.ok(rows.every((row) => row.sizeBytes >= MiB && row.reference.includes('models/evict-')), JSON.stringify(rows));
});

test('model_csi_cache_bytes counts a pulled model as soon as its pull completes (it was stale until the next eviction)', async () => {
  // B and C are cached: two 1 MiB models.
  const cacheBytes = await metric('model_csi_cache_bytes');
  assert.ok(cacheBytes >= 2 * MiB && cacheBytes <= BUDGET, `model_csi_cache_bytes ${cacheBytes}: B and C (2 MiB and more) within the budget of ${BUDGET}`);
  console.log(`eviction: cache holds ${cacheBytes} bytes of a ${BUDGET} byte budget after evicting A`);
});

test('a model that cannot fit beside models in use is RESOURCE_EXHAUSTED and leaves nothing behind; in-use models are never evicted', { timeout: 60_000 }, async () => {
  // A back in use beside C: the budget is full of mounted models.
  await unpublish('b1');
  await publishUntilReady(stage, volume('a2'));
  assert.deepEqual(await cachedKeys(), [keyOf(models.a), keyOf(models.c)].sort(), 'B (now unused) made room for A');

  stage.proxy.reset();
  const path = target(stage, 'd1');
  await assert.rejects(callCsi(stage.clients.node, 'NodePublishVolume', volume('d1')), (err: { code: number; details: string }) => {
    assert.equal(err.code, status.RESOURCE_EXHAUSTED, err.details);
    assert.match(err.details, /evict-d/, 'names the model');
    assert.match(err.details, /cache budget/);
    assert.match(err.details, /in use|raise cacheBudget/, 'says what to do');
    console.log(`eviction: refused with ${err.details}`);
    return true;
  });
  assert.deepEqual(await cachedKeys(), [keyOf(models.a), keyOf(models.c)].sort(), 'the mounted models were not evicted, no new model dir');
  await assertMountedBytes('a2', models.a);
  await assertMountedBytes('c1', models.c);
  assert.deepEqual(await readdir(join(stage.root, 'tmp')), [], 'no assembly dir left');
  assert.deepEqual(await readdir(join(stage.root, 'ingest')), [], 'no partial download left');
  for (const layer of models.d.layers) {
    assert.equal(stage.proxy.blobGets.get(layer.digest) ?? 0, 0, `blob ${layer.digest} of D was not fetched`);
    await assert.rejects(stat(join(stage.root, 'blobs', 'sha256', layer.digest.slice(7))), { code: 'ENOENT' });
  }
  assert.equal(stage.proxy.totalBlobBytes(), 0);
  await assert.rejects(stat(path), { code: 'ENOENT' }, 'no target left behind');
});

test('model-csi cache gc removes unreferenced blobs, and evicts unused models down to the budget', { timeout: 60_000 }, async () => {
  const blobs = async () => new Set(await readdir(join(stage.root, 'blobs', 'sha256')));
  // A's tar layers were unpacked into its model: their blobs are referenced by nothing now.
  const tarBlobsOfA = models.a.layers.filter((layer) => layer.mediaType.includes('.tar')).map((layer) => layer.digest.slice(7));
  const rawBlobsOfA = models.a.layers.filter((layer) => layer.mediaType.endsWith('.raw')).map((layer) => layer.digest.slice(7));
  assert.equal(tarBlobsOfA.length, 2, 'tokenizer (tar) and docs (tar+gzip)');
  const before = await blobs();
  assert.ok(tarBlobsOfA.every((hex) => before.has(hex)), 'the unpacked tar blobs are still there before gc');

  const collected = await cacheCli(['gc', '--root', stage.root, '--json']);
  assert.equal(collected.code, 0, collected.stderr);
  const result = JSON.parse(collected.stdout) as { removed: { blobs: number }; freedBytes: number; evicted: string[] };
  assert.ok(result.removed.blobs >= tarBlobsOfA.length, collected.stdout);
  assert.deepEqual(result.evicted, [], 'under the budget: nothing evicted');
  const afterGc = await blobs();
  assert.ok(tarBlobsOfA.every((hex) => !afterGc.has(hex)), 'unreferenced blobs removed');
  assert.ok(rawBlobsOfA.every((hex) => afterGc.has(hex)), "blobs the model's files are links of stay");
  await assertMountedBytes('a2', models.a);
  await assertMountedBytes('c1', models.c);

  // The operator lowers the budget to about one model; C is no longer used, A is mounted.
  await unpublish('c1');
  const smaller = join(stage.work, 'smaller.yaml');
  await writeFile(smaller, stringify({ cacheBudget: 1.5 * MiB }));
  const recent = await cacheCli(['gc', '--root', stage.root, '--config', smaller, '--json']);
  assert.equal(recent.code, 0, recent.stderr);
  assert.deepEqual(JSON.parse(recent.stdout).evicted, [], 'a model used moments ago may be being mounted: left alone by default');
  assert.deepEqual(await cachedKeys(), [keyOf(models.a), keyOf(models.c)].sort());

  const pruned = await cacheCli(['gc', '--root', stage.root, '--config', smaller, '--min-idle-seconds', '0', '--json']);
  assert.equal(pruned.code, 0, pruned.stderr);
  const prunedResult = JSON.parse(pruned.stdout) as { evicted: string[]; usedBytes: number; budgetBytes: number; overBudget: boolean };
  assert.deepEqual(prunedResult.evicted, [keyOf(models.c)], 'the unused model goes, the mounted one stays');
  assert.equal(prunedResult.overBudget, false);
  assert.ok(prunedResult.usedBytes <= 1.5 * MiB, pruned.stdout);
  assert.deepEqual(await cachedKeys(), [keyOf(models.a)]);
  await assertMountedBytes('a2', models.a);

  // Nothing unused is left to evict: the mounted model stays, and the command says the cache is over budget.
  const tiny = join(stage.work, 'tiny.yaml');
  await writeFile(tiny, stringify({ cacheBudget: 64 * 1024 }));
  const over = await cacheCli(['gc', '--root', stage.root, '--config', tiny, '--min-idle-seconds', '0', '--json']);
  assert.equal(over.code, 0, over.stderr);
  const overResult = JSON.parse(over.stdout) as { evicted: string[]; overBudget: boolean };
  assert.deepEqual(overResult.evicted, []);
  assert.equal(overResult.overBudget, true);
  assert.deepEqual(await cachedKeys(), [keyOf(models.a)], 'a mounted model is never evicted');
  await assertMountedBytes('a2', models.a);
});
