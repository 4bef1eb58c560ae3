/**
 * Ranged multi-connection pulls (store/ranged-download.ts) against a real registry: an origin
 * that limits each connection (a pacing proxy), one that ignores Range, one that serves a bad
 * range, the connection caps, and a real pull-through docker-registry as the mirror.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer } from 'node:http';
import { after, before, test } from 'node:test';
import { ModelPuller } from '../../../src/artifacts/model-puller.js';
import { configFileSchema } from '../../../src/config/schema.js';
import { isDriverError } from '../../../src/errors/driver-error.js';
import { createLogger } from '../../../src/log/logger.js';
import { Metrics } from '../../../src/metrics/metrics.js';
import { parseReference } from '../../../src/registry/reference.js';
import { RegistryClient } from '../../../src/registry/registry-client.js';
import { openCache } from '../../../src/store/open-cache.js';
import { pushModelPack } from '../../helpers/artifacts.js';
import { startCountingProxy, type CountingProxy } from '../../helpers/counting-proxy.js';
import { startRegistry, type TestRegistry } from '../../helpers/registry.js';
import { dockerConfigJson } from '../registry/common.js';
import { startProxy } from '../registry/proxy.js';

const MiB = 2 ** 20;
/** Five 8 MiB pieces. */
const WEIGHT_BYTES = 40 * MiB;
let registry: TestRegistry;
let work: string;
let caches = 0;

before(async () => {
  registry = await startRegistry();
  work = await mkdtemp(join(tmpdir(), 'model-csi-ranged-'));
});
after(async () => {
  await registry.stop();
  await rm(work, { recursive: true, force: true });
});

/** A puller over a fresh cache (a fresh node), with ranged pulls from 16 MiB. */
async function node(config: Record<string, unknown> = {}): Promise<{ puller: ModelPuller; client: RegistryClient; root: string }> {
  const parsed = configFileSchema.parse({ rangedMinBlobSize: '16Mi', ...config });
  const logger = createLogger('silent');
  const client = new RegistryClient({ config: parsed, logger, metrics: new Metrics({ defaultMetrics: false }), retry: { baseDelayMs: 10, maxDelayMs: 50 } });
  const root = join(work, `cache-${caches++}`);
  const { content, models } = await openCache(root, { rangedMinBlobBytes: parsed.rangedMinBlobSize });
  return { puller: new ModelPuller({ client, store: content, models, config: parsed, logger }), client, root };
}

async function pushWeight(repository: string, size = WEIGHT_BYTES): Promise<{ bytes: Buffer; digest: string }> {
  const bytes = randomBytes(size);
  const pushed = await pushModelPack(registry, repository, 'v1', [{ path: 'weights.safetensors', content: bytes, format: 'raw' }]);
  return { bytes, digest: pushed.layers[0]!.digest };
}

/**
 * The ranges asked for start at 8 MiB pieces (one, or a span of several: the connection at the
 * hash frontier takes a span), each piece at most once, and leave no gap; the last is
 * open-ended. A span overlaps the next range when another connection took its tail (the span
 * was cut there): returns how many were.
 */
function assertCovers(ranges: Array<string | undefined>, size: number): number {
  const spans = ranges.map((range) => {
    const m = /^bytes=(\d+)-(\d*)$/.exec(range ?? '');
    assert.ok(m, `not a range: ${range}`);
    return { start: Number(m[1]), end: m[2] === '' ? size : Number(m[2]) + 1 };
  });
  spans.sort((a, b) => a.start - b.start);
  let at = 0;
  let cut = 0;
  for (const [i, { start, end }] of spans.entries()) {
    assert.ok(start <= at && (i === 0 || start > spans[i - 1]!.start), `ranges ${ranges.join(', ')} do not cover the blob once`);
    assert.equal(start % (8 * MiB), 0);
    if (start < at) cut++;
    at = Math.max(at, end);
  }
  assert.equal(at, size);
  return cut;
}
const sha256 = (bytes: Buffer): string => createHash('sha256').update(bytes).digest('hex');
const ranged = (proxy: CountingProxy, digest: string): Array<string | undefined> => proxy.blobRequests.filter((r) => r.digest === digest).map((r) => r.range);

test('an origin that limits each connection is fetched over several connections at once, and verified', { timeout: 120_000 }, async () => {
  const size = 96 * MiB; // 12 pieces: room for the tuner to judge (windows of 500 ms and 8 MiB a connection) and grow
  const weight = await pushWeight('ranged/throttled', size);
  const proxy = await startCountingProxy(registry.url, { rate: 8 * MiB }); // 8 MiB/s a connection
  const { puller, client } = await node();
  try {
    const model = await puller.pull({ reference: parseReference(`${proxy.host}/ranged/throttled:v1`) });
    assert.equal(sha256(await readFile(join(model.path, 'weights.safetensors'))), sha256(weight.bytes));
    const cut = assertCovers(ranged(proxy, weight.digest), size);
    assert.ok(proxy.maxOpenBlobBodies >= 3, `${proxy.maxOpenBlobBodies} connections at once: it grew past its start of one`);
    // A request cut short costs what was read ahead of the cut (raw-http.ts reads at most a
    // ranged piece ahead) and what was in flight; each piece was asked for once (assertCovers).
    assert.ok(proxy.totalBlobBytes() <= size + cut * 8 * MiB, `${proxy.totalBlobBytes() - size} bytes over, ${cut} requests cut`);
  } finally {
    await client.close();
    await proxy.close();
  }
});

test('an origin that ignores Range (200 for a range) still works: one stream, verified', { timeout: 120_000 }, async () => {
  const weight = await pushWeight('ranged/no-range');
  const front = await startProxy(registry.url, (req) =>
    req.path.includes('/blobs/') ? { rewriteHeaders: (h) => Object.fromEntries(Object.entries(h).filter(([k]) => k !== 'range')) } : 'pass',
  );
  const { puller, client } = await node();
  try {
    const model = await puller.pull({ reference: parseReference(`${front.host}/ranged/no-range:v1`) });
    assert.equal(sha256(await readFile(join(model.path, 'weights.safetensors'))), sha256(weight.bytes));
    const gets = front.seen.filter((r) => r.method === 'GET' && r.path.endsWith(weight.digest)).map((r) => r.headers.range);
    assert.equal(gets.length, 2, 'one ranged request, answered whole, then one stream');
    assert.match(gets[0] ?? '', /^bytes=0-\d+$/);
    assert.equal(gets[1], undefined);
  } finally {
    await client.close();
    await front.close();
  }
});

test('a range answered with wrong bytes is caught: fetched once more, then DATA_LOSS, nothing published', { timeout: 120_000 }, async () => {
  const weight = await pushWeight('ranged/corrupt');
  const proxy = await startCountingProxy(registry.url);
  proxy.corruptBlobs.add(weight.digest); // the first byte of every answer flipped
  const { puller, client, root } = await node();
  try {
    await assert.rejects(
      puller.pull({ reference: parseReference(`${proxy.host}/ranged/corrupt:v1`) }),
      (err: unknown) => isDriverError(err, 'DIGEST_MISMATCH') && err.grpcStatus === 15 && err.message.includes(weight.digest),
    );
    assert.equal(proxy.blobBytes.get(weight.digest), 2 * WEIGHT_BYTES, 'the blob, twice');
    assert.deepEqual(await readdir(join(root, 'blobs', 'sha256')), []);
    assert.deepEqual(await readdir(join(root, 'ingest')), [], 'no partial and no piece map');
    assert.deepEqual(await readdir(join(root, 'models', 'sha256')), [], 'no model');
  } finally {
    await client.close();
    await proxy.close();
  }
});

test('the connection caps hold: per registry, and per node across registries', { timeout: 120_000 }, async () => {
  const a = await pushWeight('ranged/cap-a');
  const b = await pushWeight('ranged/cap-b');
  const first = await startCountingProxy(registry.url, { rate: 8 * MiB });
  const second = await startCountingProxy(registry.url, { rate: 8 * MiB });
  const { puller, client } = await node({ maxConnectionsPerRegistry: 3, maxConnectionsPerNode: 4 });
  let most = 0;
  const sampler = setInterval(() => (most = Math.max(most, first.openBlobBodies + second.openBlobBodies)), 2);
  try {
    await Promise.all([
      puller.pull({ reference: parseReference(`${first.host}/ranged/cap-a:v1`) }),
      puller.pull({ reference: parseReference(`${first.host}/ranged/cap-b:v1`) }),
      puller.pull({ reference: parseReference(`${second.host}/ranged/cap-a:v1`) }),
    ]).catch((err: unknown) => assert.fail(err as Error));
    assert.ok(first.maxOpenBlobBodies <= 3, `${first.maxOpenBlobBodies} connections at once to one registry (cap 3)`);
    assert.ok(most <= 4, `${most} connections at once on the node (cap 4)`);
    assert.ok(first.maxOpenBlobBodies >= 2 && most >= 3, 'the caps were reached, not merely respected by a single stream');
    assert.deepEqual(client.connections.inUse().node, 0, 'every slot given back');
    assert.ok(a.digest !== b.digest);
  } finally {
    clearInterval(sampler);
    await client.close();
    await first.close();
    await second.close();
  }
});

test('a pull-through docker-registry as the mirror: ranges once it holds the blob, the origin when it is down', { timeout: 180_000 }, async () => {
  const weight = await pushWeight('ranged/mirrored');
  const origin = await startCountingProxy(registry.url);
  const mirrorRegistry = await startRegistry({ proxyRemoteUrl: origin.url });
  const mirror = await startCountingProxy(mirrorRegistry.url);
  const config = { registries: { [origin.host]: { mirrors: [mirror.url] } } };
  const reference = parseReference(`${origin.host}/ranged/mirrored:v1`);
  const nodes = [await node(config), await node(config), await node(config)];
  try {
    // First node: the mirror fetches the blob from the origin as it serves it (whole: it
    // answers a range with 200 until it holds the blob), and the pull takes it as one stream.
    const one = await nodes[0]!.puller.pull({ reference });
    assert.equal(sha256(await readFile(join(one.path, 'weights.safetensors'))), sha256(weight.bytes));
    assert.ok(ranged(mirror, weight.digest).length >= 1, 'the blob came through the mirror');

    // Second node: the mirror holds it now and serves ranged pieces; the origin sends no blob bytes.
    mirror.reset();
    origin.reset();
    const two = await nodes[1]!.puller.pull({ reference });
    assert.equal(sha256(await readFile(join(two.path, 'weights.safetensors'))), sha256(weight.bytes));
    assertCovers(ranged(mirror, weight.digest), WEIGHT_BYTES);
    assert.equal(origin.blobBytes.get(weight.digest) ?? 0, 0, 'no blob bytes from the origin');

    // Third node, mirror down: the same ranged pieces from the origin.
    await mirror.down();
    origin.reset();
    const three = await nodes[2]!.puller.pull({ reference });
    assert.equal(sha256(await readFile(join(three.path, 'weights.safetensors'))), sha256(weight.bytes));
    assertCovers(ranged(origin, weight.digest), WEIGHT_BYTES);
  } finally {
    for (const n of nodes) await n.client.close();
    await mirror.close();
    await mirrorRegistry.stop();
    await origin.close();
  }
});

test('a registry that redirects to object storage: followed once, pieces go there without Authorization, a 403 (expired) asks the registry again', { timeout: 120_000 }, async () => {
  const password = 'redirect-Pa55';
  const origin = await startRegistry({ htpasswd: { user: 'alice', password } });
  const bytes = randomBytes(WEIGHT_BYTES);
  const pushed = await pushModelPack(origin, 'ranged/redirected', 'v1', [{ path: 'weights.safetensors', content: bytes, format: 'raw' }]);
  const digest = pushed.layers[0]!.digest;
  // "Object storage" on another loopback address: serves ranges of the blob, and refuses its
  // second request (the first straight to it, after the redirect) as an expired presigned URL would.
  const seen: Array<{ authorization: string | undefined; range: string | undefined }> = [];
  const storage = createServer((req, res) => {
    seen.push({ authorization: req.headers.authorization, range: req.headers.range });
    if (seen.length === 2) return void res.writeHead(403).end('Request has expired');
    const m = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '');
    const start = m ? Number(m[1]) : 0;
    const end = m && m[2] !== '' ? Number(m[2]) + 1 : bytes.length;
    res.writeHead(m ? 206 : 200, { 'content-length': String(end - start), ...(m ? { 'content-range': `bytes ${start}-${end - 1}/${bytes.length}` } : {}) });
    res.end(bytes.subarray(start, end));
  });
  await new Promise<void>((resolve) => storage.listen(0, '127.0.0.2', resolve));
  const port = (storage.address() as { port: number }).port;
  const signed = new Date().toISOString().replace(/[-:]|\.\d{3}/g, '');
  const front = await startProxy(origin.url, (req) =>
    req.path.includes(`/blobs/${digest}`) && req.headers.authorization !== undefined
      ? { status: 307, headers: { location: `http://127.0.0.2:${port}/bucket/${digest}?X-Amz-Date=${signed}&X-Amz-Expires=900&X-Amz-Signature=abc` } }
      : 'pass',
  );
  const { puller, client } = await node();
  try {
    const auth = { dockerConfigJson: dockerConfigJson(front.host, 'alice', password) };
    const model = await puller.pull({ reference: parseReference(`${front.host}/ranged/redirected:v1`), auth });
    assert.equal(sha256(await readFile(join(model.path, 'weights.safetensors'))), sha256(bytes));
    assert.deepEqual(seen.filter((r) => r.authorization !== undefined), [], 'Authorization never went to the storage host');
    assert.ok(seen.length >= 3, `${seen.length} requests to the storage host, one refused`);
    const redirected = front.seen.filter((r) => r.method === 'GET' && r.path.includes(`/blobs/${digest}`) && r.headers.authorization !== undefined);
    assert.equal(redirected.length, 2, 'the registry was asked once, and once more after the 403');
  } finally {
    await client.close();
    await front.close();
    storage.closeAllConnections();
    await new Promise<void>((resolve) => storage.close(() => resolve()));
    await origin.stop();
  }
});
