/**
 * One retry layer for blobs (registry/retry.ts): against a registry and a mirror that answer
 * 503 for every blob, a pull asks the origin for the blob exactly the documented number of
 * times and the mirror once, gives up with REGISTRY_UNAVAILABLE, and counts every retry in
 * model_csi_registry_retries_total.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { configFileSchema } from '../../../src/config/schema.js';
import { isDriverError } from '../../../src/errors/driver-error.js';
import { createLogger } from '../../../src/log/logger.js';
import { Metrics } from '../../../src/metrics/metrics.js';
import { ModelPuller } from '../../../src/artifacts/model-puller.js';
import { parseReference } from '../../../src/registry/reference.js';
import { RegistryClient } from '../../../src/registry/registry-client.js';
import { DEFAULT_RETRY } from '../../../src/registry/retry.js';
import { openCache } from '../../../src/store/open-cache.js';
import { pushModelPack } from '../../helpers/artifacts.js';
import { startCountingProxy, type CountingProxy } from '../../helpers/counting-proxy.js';
import { startRegistry, type TestRegistry } from '../../helpers/registry.js';

let registry: TestRegistry;
let origin: CountingProxy;
let mirror: CountingProxy;
let work: string;

before(async () => {
  registry = await startRegistry();
  origin = await startCountingProxy(registry.url);
  mirror = await startCountingProxy(registry.url);
  work = await mkdtemp(join(tmpdir(), 'model-csi-retries-'));
});
after(async () => {
  await mirror.close();
  await origin.close();
  await registry.stop();
  await rm(work, { recursive: true, force: true });
});

test('a registry answering 503 for every blob: the origin is asked the documented number of times, the mirror once, each retry counted', { timeout: 120_000 }, async () => {
  const pushed = await pushModelPack(registry, 'retries/m', 'v1', [{ path: 'w.bin', content: randomBytes(100_000), format: 'raw' }]);
  const blob = pushed.layers[0]!.digest;
  const config = configFileSchema.parse({ registries: { [origin.host]: { mirrors: [mirror.url] } } });
  const logger = createLogger('silent');
  const metrics = new Metrics({ defaultMetrics: false });
  // The default policy's attempts and bounds; only the delays are shortened.
  const client = new RegistryClient({ config, logger, metrics, retry: { baseDelayMs: 10, maxDelayMs: 50 } });
  const { content, models } = await openCache(join(work, 'cache'));
  const puller = new ModelPuller({ client, store: content, models, config, logger });
  origin.blobStatus = 503;
  mirror.blobStatus = 503;
  try {
    await assert.rejects(puller.pull({ reference: parseReference(`${origin.host}/retries/m:v1`) }), (err: unknown) => isDriverError(err, 'REGISTRY_UNAVAILABLE') && err.message.includes('503'));
    assert.equal(origin.blobGets.get(blob), DEFAULT_RETRY.attempts, `the origin got ${DEFAULT_RETRY.attempts} GETs for the blob, no more (one retry layer)`);
    assert.equal(mirror.blobGets.get(blob), 1, 'the mirror is asked once, not again on every retry');
    const retries = (await metrics.registryRetries.get()).values;
    assert.deepEqual(
      retries.map((v) => [v.labels.reason, v.value]),
      [['REGISTRY_UNAVAILABLE', DEFAULT_RETRY.attempts - 1]],
      'every retry (not the first attempt) is counted, by reason',
    );
  } finally {
    origin.blobStatus = 0;
    mirror.blobStatus = 0;
    await client.close();
  }
});
