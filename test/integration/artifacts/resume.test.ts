import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { configFileSchema } from '../../../src/config/schema.js';
import { createLogger } from '../../../src/log/logger.js';
import { Metrics } from '../../../src/metrics/metrics.js';
import { ModelPuller } from '../../../src/artifacts/model-puller.js';
import { parseReference } from '../../../src/registry/reference.js';
import { RegistryClient } from '../../../src/registry/registry-client.js';
import { openCache } from '../../../src/store/open-cache.js';
import { pushModelPack } from '../../helpers/artifacts.js';
import { startRegistry, type TestRegistry } from '../../helpers/registry.js';

const SIZE = 200 * 1024 * 1024;
let registry: TestRegistry;
let work: string;

before(async () => {
  registry = await startRegistry();
  work = await mkdtemp(join(tmpdir(), 'model-csi-resume-'));
});
after(async () => {
  await registry.stop();
  await rm(work, { recursive: true, force: true });
});

async function receivedBytes(metrics: Metrics): Promise<number> {
  return (await metrics.bytesPulled.get()).values.reduce((sum, value) => sum + value.value, 0);
}

test('a registry killed mid-pull and restarted: the pull resumes and re-fetches little', { timeout: 180_000 }, async () => {
  // Random in 1 MiB blocks repeated: incompressible enough, cheap to make.
  const block = randomBytes(1024 * 1024);
  const weights = Buffer.alloc(SIZE);
  for (let at = 0; at < SIZE; at += block.length) block.copy(weights, at);
  weights.writeUInt32BE(0xdeadbeef, SIZE - 4);
  const pushed = await pushModelPack(registry, 'models/big', 'v1', [{ path: 'weights.bin', content: weights, format: 'raw' }]);

  const config = configFileSchema.parse({});
  const metrics = new Metrics({ defaultMetrics: false });
  const logger = createLogger('silent');
  const client = new RegistryClient({ config, logger, metrics, retry: { attempts: 8, baseDelayMs: 100, maxDelayMs: 1000 } });
  const { content, models } = await openCache(join(work, 'cache'));
  const puller = new ModelPuller({ client, store: content, models, config, logger });

  // Observe (not replace) the real client's blob requests: a resume asks from an offset.
  const offsets: number[] = [];
  const fetchBlob = client.fetchBlob.bind(client);
  client.fetchBlob = (reference, desc, opts) => {
    offsets.push(opts?.offset ?? 0);
    return fetchBlob(reference, desc, opts);
  };
  let killedAt = -1;
  let restarting: Promise<void> | undefined;
  let maxDone = 0;
  const pull = puller.pull({
    reference: parseReference(`${registry.host}/models/big:v1`),
    onProgress: ({ doneBytes }) => {
      maxDone = Math.max(maxDone, doneBytes);
      if (killedAt < 0 && doneBytes > SIZE / 3) {
        killedAt = doneBytes;
        restarting = registry.restart();
      }
    },
  });
  const pulled = await pull;
  await restarting;
  await client.close();

  assert.ok(killedAt > 0, 'the registry was killed mid-pull');
  assert.ok(offsets.some((offset) => offset > SIZE / 3), `the download resumed with a Range request (offsets asked: ${offsets.join(', ')})`);
  const received = await receivedBytes(metrics);
  const refetched = received - SIZE;
  assert.ok(refetched < SIZE / 10, `re-fetched ${refetched} bytes after the restart (received ${received} for a ${SIZE}-byte blob): the pull restarted instead of resuming`);
  assert.ok((await readFile(join(pulled.path, 'weights.bin'))).equals(weights));
  assert.equal(pulled.digest, pushed.digest);
});
