/**
 * Dedup under concurrency, end to end: 200 NodePublishVolume calls at once over 5 models
 * against a real registry behind a counting proxy, retried the way kubelet retries while the
 * pull runs in the background. Every blob crosses the wire once; files identical across
 * models are one inode in the node cache.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { ModelPackFile } from '../../helpers/artifacts.js';
import { modelFiles, publishRequest, publishUntilReady, pushModel, startStage, target, type Stage } from './fixture.js';

const MODELS = 5;
const VOLUMES = 200;

let stage: Stage;

before(async () => {
  // Publishes wait 1 s, then answer UNAVAILABLE with progress; blobs trickle at 512 KiB/s
  // per stream, so every pull outlives several publish calls and the retries must join it.
  stage = await startStage({ config: { publishWaitSeconds: 1 }, rate: 512 * 1024 });
});
after(() => stage.close());

const sha = (bytes: Buffer): string => createHash('sha256').update(bytes).digest('hex');

test('200 concurrent publishes of 5 models: all mounted byte for byte, each blob fetched once, manifests a bounded number of times', { timeout: 90_000 }, async () => {
  const models: Array<Awaited<ReturnType<typeof pushModel>>> = [];
  for (let m = 0; m < MODELS; m++) {
    // 300 KiB .. 1 MiB of weights, distinct content per model.
    models.push(await pushModel(stage, `models/dedup-${m}`, 'v1', modelFiles(`dedup-${m}`, 300 * 1024 + m * 180 * 1024)));
  }
  const expectedHashes = models.map((model) => Object.fromEntries(Object.entries(model.expected).map(([file, bytes]) => [file, sha(bytes)])));
  stage.proxy.reset();

  const retries: string[] = [];
  const started = Date.now();
  const results = await Promise.allSettled(
    Array.from({ length: VOLUMES }, (_, i) =>
      publishUntilReady(stage, publishRequest(target(stage, `dedup-${i}`), { reference: models[i % MODELS]!.reference }), { timeoutMs: 60_000, messages: retries }),
    ),
  );
  const elapsed = Date.now() - started;
  const failures = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
  assert.equal(failures.length, 0, `publishes failed: ${failures.slice(0, 3).map((f) => (f.reason as Error).message).join(' | ')}`);
  assert.ok(retries.length > 0, 'the pulls outlived the publish wait, so kubelet-style retries must have happened');
  assert.ok(retries.some((m) => /pulling .*: .* of .* \(\d+ percent\)/.test(m)), `a retry message shows progress, got e.g. ${retries[retries.length - 1]}`);

  for (let i = 0; i < VOLUMES; i++) {
    const path = target(stage, `dedup-${i}`);
    for (const [file, hash] of Object.entries(expectedHashes[i % MODELS]!)) {
      assert.equal(sha(await readFile(join(path, file))), hash, `volume ${i}: ${file} differs from model ${i % MODELS}`);
    }
  }

  const layerDigests = models.flatMap((model) => model.layers.map((layer) => layer.digest));
  assert.equal(new Set(layerDigests).size, layerDigests.length, 'the five models share no blob');
  for (const digest of layerDigests) assert.equal(stage.proxy.blobGets.get(digest) ?? 0, 1, `blob ${digest} GETs`);
  for (const [digest, gets] of stage.proxy.blobGets) assert.ok(layerDigests.includes(digest) || gets <= 1, `unexpected blob ${digest} fetched ${gets} times`);
  const layerBytes = models.flatMap((model) => model.layers).reduce((sum, layer) => sum + layer.size, 0);
  assert.equal(stage.proxy.totalBlobBytes(), layerBytes, 'bytes through the proxy = the sum of the layers, each once');
  // One tag resolution per model (concurrent resolutions share one request) plus the pull's
  // fetch of the pinned manifest.
  // One per model: concurrent tag resolutions share a request, and the pull reuses the manifest the tag resolved to.
  assert.equal(stage.proxy.manifestGets, MODELS, `manifest GETs: ${stage.proxy.manifestGets} for ${MODELS} models`);
  console.log(`dedup: ${VOLUMES} volumes in ${elapsed} ms, ${retries.length} retries, ${stage.proxy.blobGets.size} blobs / ${stage.proxy.totalBlobBytes()} bytes fetched, ${stage.proxy.manifestGets} manifest GETs`);
});

test('a file two models share is stored once: the same inode in both model directories, fetched once', { timeout: 60_000 }, async () => {
  const weights = Buffer.alloc(768 * 1024, 7);
  weights.write('shared-weights');
  const tokenizer = JSON.stringify({ vocab: 'shared', merges: Array.from({ length: 2000 }, (_, i) => `t${i}`) });
  const files = (seed: string, tokenizerFormat: ModelPackFile['format']): ModelPackFile[] => [
    { path: 'model.safetensors', content: weights, format: 'raw', role: 'weight' },
    // The same file inside differently packed tar layers: different blobs, identical content.
    { path: 'tokenizer/tokenizer.json', content: tokenizer, format: tokenizerFormat, role: 'weight.config' },
    { path: 'config.json', content: JSON.stringify({ model: seed }), format: 'raw', role: 'weight.config' },
  ];
  const x = await pushModel(stage, 'models/share-x', 'v1', files('x', 'tar'));
  const y = await pushModel(stage, 'models/share-y', 'v1', files('y', 'tar+gzip'));
  stage.proxy.reset();
  await Promise.all([
    publishUntilReady(stage, publishRequest(target(stage, 'share-x'), { reference: x.reference })),
    publishUntilReady(stage, publishRequest(target(stage, 'share-y'), { reference: y.reference })),
  ]);
  const weightDigest = x.layers[0]!.digest;
  assert.equal(y.layers[0]!.digest, weightDigest);
  assert.equal(stage.proxy.blobGets.get(weightDigest), 1, 'the shared weight blob crossed the wire once');

  const modelDir = (digest: string) => join(stage.root, 'models', 'sha256', digest.slice('sha256:'.length));
  for (const file of ['model.safetensors', 'tokenizer/tokenizer.json']) {
    const [a, b] = await Promise.all([stat(join(modelDir(x.digest), file)), stat(join(modelDir(y.digest), file))]);
    assert.equal(a.ino, b.ino, `${file}: one inode for both models`);
    assert.ok(a.nlink >= 2, `${file}: linked from both models (nlink ${a.nlink})`);
  }
  for (const [model, name] of [[x, 'share-x'], [y, 'share-y']] as const) {
    for (const [file, bytes] of Object.entries(model.expected)) {
      assert.ok((await readFile(join(target(stage, name), file))).equals(bytes), `${name}: ${file}`);
    }
  }
});
