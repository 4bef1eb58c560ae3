/**
 * Two pulls that need one blob share its download (content-store.ts), and neither may fail or
 * cancel it for the other: a real registry behind a counting proxy that paces blob bodies,
 * holds one blob until the test releases it, and serves it with a flipped byte.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { configFileSchema } from '../../../src/config/schema.js';
import { isDriverError } from '../../../src/errors/driver-error.js';
import { createLogger } from '../../../src/log/logger.js';
import { Metrics } from '../../../src/metrics/metrics.js';
import { ModelPuller, type PullRequest } from '../../../src/artifacts/model-puller.js';
import { parseReference } from '../../../src/registry/reference.js';
import { RegistryClient } from '../../../src/registry/registry-client.js';
import { openCache } from '../../../src/store/open-cache.js';
import { pushModelPack } from '../../helpers/artifacts.js';
import { startCountingProxy, type CountingProxy } from '../../helpers/counting-proxy.js';
import { deferred } from '../../helpers/deferred.js';
import { startRegistry, type TestRegistry } from '../../helpers/registry.js';

/** Several 4 MiB write batches, so a joiner sees progress well before the end. */
const SHARED_BYTES = 16 * 2 ** 20;
let registry: TestRegistry;
let proxy: CountingProxy;
let work: string;
let client: RegistryClient;
let puller: ModelPuller;

before(async () => {
  registry = await startRegistry();
  proxy = await startCountingProxy(registry.url);
  work = await mkdtemp(join(tmpdir(), 'model-csi-shared-'));
  const config = configFileSchema.parse({});
  const logger = createLogger('silent');
  const metrics = new Metrics({ defaultMetrics: false });
  client = new RegistryClient({ config, logger, metrics, retry: { baseDelayMs: 10, maxDelayMs: 50 } });
  const { content, models } = await openCache(join(work, 'cache'));
  puller = new ModelPuller({ client, store: content, models, config, logger });
});
after(async () => {
  await client.close();
  await proxy.close();
  await registry.stop();
  await rm(work, { recursive: true, force: true });
});

/** Start B's pull and resolve once B receives progress of the shared blob (it has joined the download). */
function pullJoining(request: PullRequest): { pulled: ReturnType<ModelPuller['pull']>; joined: Promise<void> } {
  const joined = deferred();
  const pulled = puller.pull({ ...request, onProgress: (p) => p.doneBytes > 0 && joined.resolve() });
  pulled.catch(() => joined.resolve());
  return { pulled, joined: joined.promise };
}

async function until(condition: () => boolean): Promise<void> {
  while (!condition()) await new Promise((resolve) => setTimeout(resolve, 10));
}

test("a pull that fails on a corrupted blob of its own does not fail another pull sharing its download of blob x", { timeout: 120_000 }, async () => {
  const x = randomBytes(SHARED_BYTES);
  const y = randomBytes(64 * 1024);
  const a = await pushModelPack(registry, 'shared/a', 'v1', [
    { path: 'x.bin', content: x, format: 'raw' },
    { path: 'y.bin', content: y, format: 'raw' },
  ]);
  await pushModelPack(registry, 'shared/b', 'v1', [{ path: 'x.bin', content: x, format: 'raw' }]);
  const xDigest = a.layers[0]!.digest;
  const yDigest = a.layers[1]!.digest;
  proxy.reset();
  proxy.rate = 8 * 2 ** 20; // x takes ~2 s: long enough to be joined and outlive A
  proxy.corruptBlobs.add(yDigest);
  const releaseY = deferred();
  proxy.holdBlobs.set(yDigest, releaseY.promise);
  try {
    const pullA = puller.pull({ reference: parseReference(`${proxy.host}/shared/a:v1`) });
    pullA.catch(() => undefined);
    await until(() => (proxy.blobGets.get(xDigest) ?? 0) > 0);
    const b = pullJoining({ reference: parseReference(`${proxy.host}/shared/b:v1`) });
    await b.joined;
    releaseY.resolve(); // A now fails on y, while x is still downloading for both

    await assert.rejects(pullA, (err: unknown) => isDriverError(err, 'DIGEST_MISMATCH') && err.message.includes(yDigest));
    const pulledB = await b.pulled;
    assert.ok((await readFile(join(pulledB.path, 'x.bin'))).equals(x), "B's model holds x");
    assert.equal(proxy.blobGets.get(xDigest), 1, 'x was downloaded once, for both pulls');
  } finally {
    proxy.rate = 0;
    proxy.corruptBlobs.clear();
    proxy.holdBlobs.clear();
  }
});

test('the first puller of a shared blob cancelling its pull does not cancel the download the other waits on', { timeout: 120_000 }, async () => {
  const x = randomBytes(SHARED_BYTES);
  const first = await pushModelPack(registry, 'shared/first', 'v1', [{ path: 'x.bin', content: x, format: 'raw' }]);
  await pushModelPack(registry, 'shared/joiner', 'v1', [{ path: 'x.bin', content: x, format: 'raw' }]);
  const xDigest = first.layers[0]!.digest;
  proxy.reset();
  proxy.rate = 8 * 2 ** 20;
  try {
    const cancel = new AbortController();
    const pullFirst = puller.pull({ reference: parseReference(`${proxy.host}/shared/first:v1`), signal: cancel.signal });
    pullFirst.catch(() => undefined);
    await until(() => (proxy.blobGets.get(xDigest) ?? 0) > 0);
    const joiner = pullJoining({ reference: parseReference(`${proxy.host}/shared/joiner:v1`) });
    await joiner.joined;
    cancel.abort(new Error('the first pull was cancelled'));

    await assert.rejects(pullFirst, /the first pull was cancelled/);
    const pulled = await joiner.pulled;
    assert.ok((await readFile(join(pulled.path, 'x.bin'))).equals(x));
    assert.equal(proxy.blobGets.get(xDigest), 1, 'the download went on: x was fetched once');
  } finally {
    proxy.rate = 0;
  }
});
