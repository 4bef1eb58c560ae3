import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { configFileSchema } from '../../../src/config/schema.js';
import { isDriverError } from '../../../src/errors/driver-error.js';
import { createLogger } from '../../../src/log/logger.js';
import { Metrics } from '../../../src/metrics/metrics.js';
import { ModelPuller } from '../../../src/artifacts/model-puller.js';
import { parseReference } from '../../../src/registry/reference.js';
import { RegistryClient } from '../../../src/registry/registry-client.js';
import { openCache } from '../../../src/store/open-cache.js';
import type { ContentStore } from '../../../src/store/content-store.js';
import type { ModelStore } from '../../../src/store/model-store.js';
import { orasPush, pushImage, pushModelPack, skopeoCopyImage, type ExpectedFiles } from '../../helpers/artifacts.js';
import { buildTar, gzip } from '../../helpers/hostile-tar.js';
import { blobDataPath, pushArtifact, startRegistry, type TestRegistry } from '../../helpers/registry.js';

let registry: TestRegistry;
let work: string;
let client: RegistryClient;
let content: ContentStore;
let models: ModelStore;
let puller: ModelPuller;
let metrics: Metrics;
const config = configFileSchema.parse({ maxConcurrentDownloads: 4 });
const logger = createLogger('silent');

before(async () => {
  registry = await startRegistry();
  work = await mkdtemp(join(tmpdir(), 'model-csi-pull-'));
  metrics = new Metrics({ defaultMetrics: false });
  client = new RegistryClient({ config, logger, metrics, retry: { baseDelayMs: 20, maxDelayMs: 200 } });
  ({ content, models } = await openCache(join(work, 'cache')));
  puller = new ModelPuller({ client, store: content, models, config, logger });
});
after(async () => {
  await client.close();
  await registry.stop();
  await rm(work, { recursive: true, force: true });
});

async function assertModelHolds(path: string, expected: ExpectedFiles): Promise<void> {
  const found: string[] = [];
  const walk = async (dir: string, prefix: string): Promise<void> => {
    for (const name of await readdir(join(path, dir))) {
      const rel = prefix === '' ? name : `${prefix}/${name}`;
      const info = await stat(join(path, rel));
      if (info.isDirectory()) {
        assert.equal(info.mode & 0o222, 0, `${rel} must be read-only`);
        await walk(rel, rel);
      } else {
        assert.equal(info.mode & 0o222, 0, `${rel} must be read-only`);
        found.push(rel);
      }
    }
  };
  await walk('', '');
  assert.deepEqual(found.sort(), Object.keys(expected).sort());
  for (const [rel, bytes] of Object.entries(expected)) assert.ok((await readFile(join(path, rel))).equals(bytes), `${rel} differs`);
}

const ref = (repository: string, tag = 'v1') => parseReference(`${registry.host}/${repository}:${tag}`);

describe('pulling every artifact kind from a real registry', () => {
  test('ModelPack: raw, tar, tar+gzip, tar+zstd layers with file metadata', async () => {
    const pushed = await pushModelPack(registry, 'models/modelpack', 'v1', [
      { path: 'model.safetensors', content: Buffer.alloc(2_000_000, 3), format: 'raw' },
      { path: 'config.json', content: '{"a":1}', format: 'raw', role: 'weight.config', mtime: '2022-02-02T02:02:02Z' },
      { path: 'tokenizer/tokenizer.json', content: '{"tok":true}', format: 'tar', role: 'weight.config' },
      { path: 'docs/README.md', content: '# model\n', format: 'tar+gzip', role: 'doc' },
      { path: 'code/run.sh', content: '#!/bin/sh\n', format: 'tar+zstd', role: 'code', mode: 0o755 },
      { path: 'bin/serve', content: '#!/bin/sh\nexec serve\n', format: 'raw', role: 'code', mode: 0o755 },
    ]);
    const pulled = await puller.pull({ reference: ref('models/modelpack') });
    assert.equal(pulled.digest, pushed.digest);
    assert.equal(pulled.path, join(work, 'cache', 'models', 'sha256', pushed.digest.slice(7)));
    await assertModelHolds(pulled.path, pushed.expected);
    assert.equal((await stat(join(pulled.path, 'config.json'))).mtime.toISOString(), '2022-02-02T02:02:02.000Z');
    assert.equal((await stat(join(pulled.path, 'code/run.sh'))).mode & 0o777, 0o555);
    assert.equal((await stat(join(pulled.path, 'bin/serve'))).mode & 0o777, 0o555);
    const weights = await stat(join(pulled.path, 'model.safetensors'));
    assert.equal(weights.ino, (await stat(content.blobPath(pushed.layers[0]!.digest))).ino, 'a raw layer is its verified blob, hardlinked');
  });

  test('legacy cnai ModelPack spelling', async () => {
    const pushed = await pushModelPack(registry, 'models/legacy', 'v1', [
      { path: 'w.bin', content: 'legacy weights', format: 'raw' },
      { path: 'cfg/config.json', content: '{}', format: 'tar+gzip' },
    ], { legacy: true });
    await assertModelHolds((await puller.pull({ reference: ref('models/legacy') })).path, pushed.expected);
  });

  test('plain OCI image layers (tar+gzip then tar+zstd) and Docker rootfs diff layers', async () => {
    const oci = await pushImage(registry, 'images/oci', 'v1', [
      { format: 'tar+gzip', entries: [{ name: 'model/', type: 'directory' }, { name: 'model/a.bin', content: 'aaa' }] },
      { format: 'tar+zstd', entries: [{ name: 'model/', type: 'directory' }, { name: 'model/b.bin', content: 'bbb' }] },
    ]);
    await assertModelHolds((await puller.pull({ reference: ref('images/oci') })).path, oci.expected);
    const docker = await pushImage(registry, 'images/docker', 'v1', [{ format: 'tar+gzip', entries: [{ name: 'weights/x.bin', content: 'xxx' }] }], { docker: true });
    await assertModelHolds((await puller.pull({ reference: ref('images/docker') })).path, docker.expected);
  });

  test('ORAS files and a directory pushed by the real oras CLI', async () => {
    const dir = await mkdtemp(join(work, 'oras-'));
    const expected = orasPush(dir, `${registry.host}/oras/model:v1`, { 'weights.bin': Buffer.alloc(100_000, 9), 'config.json': '{"oras":1}' }, {
      name: 'tokenizer',
      files: { 'vocab.txt': 'a\nb\n', 'merges.txt': 'a b\n' },
    });
    const inspection = await puller.inspect(ref('oras/model'));
    assert.equal(inspection.kind, 'oras');
    await assertModelHolds((await puller.pull({ reference: ref('oras/model') })).path, expected);
  });

  test('a plain image copied by the real skopeo from an OCI layout', async () => {
    const dir = await mkdtemp(join(work, 'skopeo-'));
    const expected = await skopeoCopyImage(dir, `${registry.host}/skopeo/model:v1`, [
      { name: 'models/', type: 'directory' },
      { name: 'models/weights.gguf', content: Buffer.alloc(50_000, 4) },
    ]);
    const inspection = await puller.inspect(ref('skopeo/model'));
    assert.equal(inspection.kind, 'image');
    await assertModelHolds((await puller.pull({ reference: ref('skopeo/model') })).path, expected);
  });
});

describe('partial pulls, dedup, failures', () => {
  test('include/exclude: only matching raw layers are downloaded, into their own key', async () => {
    const pushed = await pushModelPack(registry, 'models/partial', 'v1', [
      { path: 'model-1.safetensors', content: Buffer.alloc(300_000, 1), format: 'raw' },
      { path: 'model-2.safetensors', content: Buffer.alloc(300_000, 2), format: 'raw' },
      { path: 'config.json', content: '{"partial":1}', format: 'raw' },
      { path: 'extra/notes.md', content: 'notes', format: 'tar' },
    ]);
    const pulled = await puller.pull({ reference: ref('models/partial'), include: ['*.json', 'extra'], exclude: [] });
    assert.match(pulled.key, /^sha256\/[a-f0-9]{64}-[a-f0-9]{16}$/);
    await assertModelHolds(pulled.path, { 'config.json': pushed.expected['config.json']!, 'extra/notes.md': pushed.expected['extra/notes.md']! });
    assert.equal(await content.has(pushed.layers[0]!.digest), false, 'unselected weights were never downloaded');
    assert.equal(await content.has(pushed.layers[1]!.digest), false);
    assert.equal(await content.has(pushed.layers[2]!.digest), true);
    const excluded = await puller.pull({ reference: ref('models/partial'), exclude: ['model-2.*'] });
    assert.deepEqual((await readdir(excluded.path)).sort(), ['config.json', 'extra', 'model-1.safetensors']);
    assert.equal(await content.has(pushed.layers[1]!.digest), false);
  });

  test('a file shared by two models is stored once; concurrent pulls of one model assemble once', async () => {
    const shared = Buffer.alloc(400_000, 5);
    const a = await pushModelPack(registry, 'models/share-a', 'v1', [{ path: 'w.bin', content: shared, format: 'raw' }, { path: 'in-tar.bin', content: shared, format: 'tar+gzip' }]);
    const b = await pushModelPack(registry, 'models/share-b', 'v1', [{ path: 'same.bin', content: shared, format: 'raw' }, { path: 'x.json', content: '{}', format: 'raw' }]);
    const [first, again] = await Promise.all([puller.pull({ reference: ref('models/share-a') }), puller.pull({ reference: ref('models/share-a') })]);
    assert.equal(first.path, again.path);
    const second = await puller.pull({ reference: ref('models/share-b') });
    const inodes = new Set([
      (await stat(join(first.path, 'w.bin'))).ino,
      (await stat(join(first.path, 'in-tar.bin'))).ino,
      (await stat(join(second.path, 'same.bin'))).ino,
    ]);
    assert.equal(inodes.size, 1, 'one inode for the three copies');
    void a;
    void b;
  });

  test('a corrupted blob in the registry: DIGEST_MISMATCH and nothing visible', async () => {
    const pushed = await pushModelPack(registry, 'models/corrupt', 'v1', [
      { path: 'good.bin', content: 'fine', format: 'raw' },
      { path: 'bad.bin', content: Buffer.alloc(200_000, 6), format: 'raw' },
    ]);
    const bad = pushed.layers[1]!;
    const tampered = Buffer.alloc(200_000, 6);
    tampered[100_000] = 7;
    await writeFile(blobDataPath(registry.storageDir, bad.digest), tampered);
    const before = await readdir(join(models.modelsDir, 'sha256'));
    await assert.rejects(puller.pull({ reference: ref('models/corrupt') }), (err: unknown) => isDriverError(err, 'DIGEST_MISMATCH') && err.message.includes(bad.digest));
    assert.deepEqual(await readdir(join(models.modelsDir, 'sha256')), before, 'no model became visible');
    assert.equal(await content.has(bad.digest), false);
    assert.deepEqual(await readdir(content.ingestDir), [], 'the corrupt partial was deleted');
    assert.deepEqual(await readdir(models.tmpDir), []);
  });

  test('a hostile tar layer from the registry is refused and leaves nothing', async () => {
    const tar = await buildTar([{ name: 'ok.txt', content: 'ok' }, { name: '../../../../escape.txt', content: 'pwned' }]);
    await pushArtifact(registry, 'models/hostile', 'v1', {
      artifactType: 'application/vnd.cncf.model.manifest.v1+json',
      config: { bytes: '{}', mediaType: 'application/vnd.cncf.model.config.v1+json' },
      layers: [{ bytes: gzip(tar), mediaType: 'application/vnd.cncf.model.weight.v1.tar+gzip' }],
    });
    const before = await readdir(join(models.modelsDir, 'sha256'));
    await assert.rejects(puller.pull({ reference: ref('models/hostile') }), (err: unknown) => isDriverError(err, 'UNSAFE_PATH') && err.message.includes('escape.txt'));
    assert.deepEqual(await readdir(join(models.modelsDir, 'sha256')), before);
    assert.deepEqual(await readdir(models.tmpDir), []);
    await assert.rejects(stat(join(work, 'escape.txt')));
    await assert.rejects(stat(join(tmpdir(), 'escape.txt')));
  });

  test('an unsupported artifact (a Helm chart) names its media type', async () => {
    await pushArtifact(registry, 'charts/nginx', 'v1', {
      config: { bytes: '{}', mediaType: 'application/vnd.cncf.helm.config.v1+json' },
      layers: [{ bytes: 'chart', mediaType: 'application/vnd.cncf.helm.chart.content.v1.tar+gzip' }],
    });
    await assert.rejects(puller.pull({ reference: ref('charts/nginx') }), (err: unknown) => isDriverError(err, 'UNSUPPORTED_MEDIA_TYPE') && err.message.includes('application/vnd.cncf.helm.chart.content.v1.tar+gzip'));
  });
});
