import { strict as assert } from 'node:assert';
import { createServer } from 'node:http';
import { after, before, test } from 'node:test';
import { mkdtemp, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isDriverError } from '../../../src/errors/driver-error.js';
import { ContentStore, type BlobOpener } from '../../../src/store/content-store.js';
import { parseReference } from '../../../src/registry/reference.js';
import { pushArtifact, startRegistry, type TestRegistry } from '../../helpers/registry.js';
import { dockerConfigJson, makeClient, readAll } from './common.js';
import { startProxy } from './proxy.js';

let plain: TestRegistry;
let artifact: Awaited<ReturnType<typeof pushArtifact>>;

before(async () => {
  plain = await startRegistry();
  artifact = await pushArtifact(plain, 'm/x', 'v1', { layers: [{ bytes: 'layer-bytes', mediaType: 'application/octet-stream' }] });
});
after(async () => {
  await plain.stop();
});

test('TLS: a self-signed registry fails verification by default (TLS_FAILURE), works with ca: and with insecure:', async () => {
  const tls = await startRegistry({ tls: true });
  try {
    await pushArtifact(tls, 'm/x', 'v1', { layers: [{ bytes: 'tls', mediaType: 'application/octet-stream' }] });
    const ref = parseReference(`${tls.host}/m/x:v1`);
    const strict = makeClient();
    await assert.rejects(strict.client.resolve(ref), (err: unknown) => {
      assert.ok(isDriverError(err, 'TLS_FAILURE'), String(err));
      assert.match(err.message, new RegExp(`registries\\."${tls.host}"\\.ca`));
      return true;
    });
    await strict.client.close();
    for (const cfg of [{ ca: tls.caFile }, { insecure: true }]) {
      const c = makeClient({ registries: { [tls.host]: cfg } });
      const resolved = await c.client.resolve(ref);
      assert.equal(resolved.manifest.layers.length, 1);
      await c.client.close();
    }
  } finally {
    await tls.stop();
  }
});

test('mirrors: used first; fall back to the origin when down or missing the content; origin credentials stay with the origin', async () => {
  const mirrorReg = await startRegistry();
  const mirror = await startProxy(mirrorReg.url);
  const origin = await startRegistry({ htpasswd: { user: 'alice', password: 'pw-origin' } });
  try {
    const onlyOnMirror = await pushArtifact(mirrorReg, 'm/x', 'mirror-only', { layers: [{ bytes: 'from-mirror', mediaType: 'application/octet-stream' }] });
    await pushArtifact(origin, 'm/x', 'v1', { layers: [{ bytes: 'from-origin', mediaType: 'application/octet-stream' }] });
    const auth = { dockerConfigJson: dockerConfigJson(origin.host, 'alice', 'pw-origin') };
    const { client } = makeClient({ registries: { [origin.host]: { mirrors: [mirror.url] } } });
    // Only the mirror has this tag: it was asked first.
    const viaMirror = await client.resolve(parseReference(`${origin.host}/m/x:mirror-only`), { auth });
    assert.equal(viaMirror.digest, onlyOnMirror.digest);
    assert.ok(mirror.seen.some((r) => r.path.startsWith('/v2/m/x/manifests/mirror-only') && r.path.includes(`ns=${encodeURIComponent(origin.host)}`)));
    // Mirror answers 404: fall back to the origin.
    const fallback = await client.resolve(parseReference(`${origin.host}/m/x:v1`), { auth });
    const blob = await client.fetchBlobBytes(parseReference(`${origin.host}/m/x:v1`), fallback.manifest.layers[0]!, { auth });
    assert.equal(blob.toString(), 'from-origin');
    assert.ok(mirror.seen.length >= 3);
    assert.ok(mirror.seen.every((r) => r.headers.authorization === undefined), 'origin credentials were sent to the mirror');
    // Mirror down: fall back to the origin.
    await mirror.close();
    await mirrorReg.stop();
    assert.equal((await client.resolve(parseReference(`${origin.host}/m/x:v1`), { auth })).digest, fallback.digest);
    await client.close();
  } finally {
    await mirror.close().catch(() => {});
    await mirrorReg.stop();
    await origin.stop();
  }
});

test('retries: manifest 503 twice then success; a blob open is one pass (reset, 429 with Retry-After) that the content store resumes; 404 and 401 are not retried', async () => {
  const failures = new Map<string, number>([['manifest', 2], ['blob-reset', 2], ['blob-429', 1]]);
  const proxy = await startProxy(plain.url, (req) => {
    if (req.path.includes('/manifests/') && failures.get('manifest')! > 0) {
      failures.set('manifest', failures.get('manifest')! - 1);
      return { status: 503, body: 'busy' };
    }
    if (req.path.includes(`/blobs/${artifact.layers[0]!.digest}`) && failures.get('blob-reset')! > 0) {
      failures.set('blob-reset', failures.get('blob-reset')! - 1);
      return 'reset';
    }
    if (req.path.includes(`/blobs/${artifact.config.digest}`) && failures.get('blob-429')! > 0) {
      failures.set('blob-429', failures.get('blob-429')! - 1);
      return { status: 429, headers: { 'retry-after': '0' } };
    }
    if (req.path.includes('/manifests/unauthorized')) return { status: 401, body: '' };
    return 'pass';
  });
  const { client } = makeClient();
  try {
    const ref = parseReference(`${proxy.host}/m/x:v1`);
    const resolved = await client.resolve(ref);
    assert.equal(resolved.digest, artifact.digest);
    assert.equal(proxy.seen.filter((r) => r.path.includes('/manifests/v1')).length, 3);
    // The client never retries a blob open: its caller's resume loop does (retry.ts).
    const layer = resolved.manifest.layers[0]!;
    const layerGets = () => proxy.seen.filter((r) => r.path.includes(`/blobs/${layer.digest}`)).length;
    await assert.rejects(client.fetchBlob(ref, layer), (err: unknown) => isDriverError(err, 'REGISTRY_UNAVAILABLE') && err.retryable);
    assert.equal(layerGets(), 1, 'one GET per blob open');
    const store = await ContentStore.open(await mkdtemp(join(tmpdir(), 'model-csi-transport-')));
    const open: BlobOpener = (offset, signal, attempt) => client.fetchBlob(ref, layer, { offset, signal, attempt });
    assert.equal((await readFile(await store.ingest(layer, open, undefined, { retrier: client.retrier }))).toString(), 'layer-bytes');
    assert.equal(layerGets(), 3, 'the reset once more, then the bytes');
    const config = resolved.manifest.config;
    const fromConfig = (offset: number, signal: AbortSignal, attempt: number) => client.fetchBlob(ref, config, { offset, signal, attempt });
    assert.equal((await readFile(await store.ingest(config, fromConfig, undefined, { retrier: client.retrier }))).toString(), '{}', '429 with Retry-After: 0 retried');

    for (const [tag, code] of [['missing', 'MANIFEST_NOT_FOUND'], ['unauthorized', 'REGISTRY_UNAUTHORIZED']] as const) {
      const before = proxy.seen.length;
      await assert.rejects(client.resolve(parseReference(`${proxy.host}/m/x:${tag}`)), (err: unknown) => isDriverError(err, code));
      assert.equal(proxy.seen.length - before, 1, `${code} must not be retried`);
    }
    // Always 503: gives up after 5 attempts with a retryable REGISTRY_UNAVAILABLE.
    failures.set('manifest', 100);
    const before = proxy.seen.length;
    await assert.rejects(client.resolve(ref), (err: unknown) => isDriverError(err, 'REGISTRY_UNAVAILABLE') && err.retryable && err.message.includes('503'));
    assert.equal(proxy.seen.length - before, 5);
  } finally {
    await client.close();
    await proxy.close();
  }
});

test('a registry that is down is REGISTRY_UNAVAILABLE (retryable) naming it', async () => {
  const gone = await startRegistry();
  const host = gone.host;
  await gone.stop();
  const { client } = makeClient();
  try {
    await assert.rejects(client.resolve(parseReference(`${host}/m/x:v1`)), (err: unknown) => isDriverError(err, 'REGISTRY_UNAVAILABLE') && err.retryable && err.message.includes(host) && err.message.includes('m/x'));
  } finally {
    await client.close();
  }
});

test('a blob redirect to another host is followed without forwarding Authorization', async () => {
  const origin = await startRegistry({ htpasswd: { user: 'alice', password: 'pw-redirect' } });
  const pushed = await pushArtifact(origin, 'm/r', 'v1', { layers: [{ bytes: 'object-storage-bytes', mediaType: 'application/octet-stream' }] });
  const layer = pushed.layers[0]!;
  // "Object storage" on another loopback address: 127.0.0.2 is a different host.
  const storageSeen: Array<string | undefined> = [];
  const storage = createServer((req, res) => {
    storageSeen.push(req.headers.authorization);
    res.writeHead(200, { 'content-length': String(layer.size) });
    res.end('object-storage-bytes');
  });
  await new Promise<void>((r) => storage.listen(0, '127.0.0.2', r));
  const storagePort = (storage.address() as { port: number }).port;
  const front = await startProxy(origin.url, (req) =>
    req.path.includes('/blobs/') && req.headers.authorization !== undefined
      ? { status: 307, headers: { location: `http://127.0.0.2:${storagePort}/bucket/${layer.digest}?X-Amz-Signature=abc` } }
      : 'pass',
  );
  const { client } = makeClient();
  try {
    const ref = parseReference(`${front.host}/m/r:v1`);
    const auth = { dockerConfigJson: dockerConfigJson(front.host, 'alice', 'pw-redirect') };
    const resolved = await client.resolve(ref, { auth });
    const { body } = await client.fetchBlob(ref, resolved.manifest.layers[0]!, { auth });
    assert.equal((await readAll(body)).toString(), 'object-storage-bytes');
    assert.equal(storageSeen.length, 1);
    assert.equal(storageSeen[0], undefined, 'Authorization was forwarded to another host');
    assert.ok(front.seen.some((r) => r.path.includes('/blobs/') && r.headers.authorization !== undefined), 'the registry itself got credentials');
  } finally {
    await client.close();
    await front.close();
    storage.closeAllConnections();
    await new Promise<void>((r) => storage.close(() => r()));
    await origin.stop();
  }
});
