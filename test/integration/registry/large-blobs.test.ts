import { strict as assert } from 'node:assert';
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import { after, before, test } from 'node:test';
import { isDriverError } from '../../../src/errors/driver-error.js';
import { parseReference } from '../../../src/registry/reference.js';
import { pushArtifact, startRegistry, type TestRegistry } from '../../helpers/registry.js';
import { startTokenServer, type TokenServer } from '../../helpers/token-server.js';
import { dockerConfigJson, makeClient, readAll } from './common.js';
import { startProxy } from './proxy.js';

// Blobs of 8 MiB and more travel on a connection of their own (src/registry/raw-http.ts):
// everything the keep-alive path does for small blobs must hold there too.
const BIG = randomBytes(12 * 2 ** 20 + 12345);
const PASSWORD = 'big-blob-Pa55';
let tlsReg: TestRegistry;
let tokens: TokenServer;
let tokenReg: TestRegistry;

before(async () => {
  tlsReg = await startRegistry({ tls: true });
  await pushArtifact(tlsReg, 'm/big', 'v1', { layers: [{ bytes: BIG, mediaType: 'application/octet-stream' }] });
  tokens = await startTokenServer({ users: { alice: PASSWORD } });
  tokenReg = await startRegistry({ tokenAuth: tokens });
  await pushArtifact({ url: tokenReg.url, authorization: `Bearer ${tokens.mint('private/big')}` }, 'private/big', 'v1', {
    layers: [{ bytes: BIG, mediaType: 'application/octet-stream' }],
  });
});
after(async () => {
  await tlsReg.stop();
  await tokenReg.stop();
  await tokens.close();
});

test('a large blob over TLS: verified with the configured CA, refused without it (TLS_FAILURE)', async () => {
  const ref = parseReference(`${tlsReg.host}/m/big:v1`);
  const withCa = makeClient({ registries: { [tlsReg.host]: { ca: tlsReg.caFile } } });
  try {
    const resolved = await withCa.client.resolve(ref);
    const layer = resolved.manifest.layers[0]!;
    assert.ok((await readAll((await withCa.client.fetchBlob(ref, layer)).body)).equals(BIG));
    // Resume: the tail from an offset, as the content store asks after a break.
    const tail = await withCa.client.fetchBlob(ref, layer, { offset: 5_000_000 });
    assert.equal(tail.offset, 5_000_000);
    assert.ok((await readAll(tail.body)).equals(BIG.subarray(5_000_000)));

    const strict = makeClient({ registries: { [tlsReg.host]: {} } });
    // Same blob, no CA: the manifest is not even reachable, and neither is the blob.
    await assert.rejects(strict.client.fetchBlob(ref, layer), (err: unknown) => isDriverError(err, 'TLS_FAILURE'));
    await strict.client.close();
  } finally {
    await withCa.client.close();
  }
});

test('a large blob behind the bearer token flow: challenge answered, body streamed, no credential in logs', async () => {
  const { client, logs } = makeClient();
  const ref = parseReference(`${tokenReg.host}/private/big:v1`);
  const auth = { dockerConfigJson: dockerConfigJson(tokenReg.host, 'alice', PASSWORD) };
  try {
    const resolved = await client.resolve(ref, { auth });
    const layer = resolved.manifest.layers[0]!;
    assert.ok((await readAll((await client.fetchBlob(ref, layer, { auth })).body)).equals(BIG));
    await assert.rejects(client.fetchBlob(ref, layer), (err: unknown) => isDriverError(err, 'REGISTRY_UNAUTHORIZED'));
    assert.ok(!logs.join('').includes(PASSWORD));
  } finally {
    await client.close();
  }
});

test('a large blob redirected to object storage: followed, chunked framing decoded, no Authorization forwarded', async () => {
  const origin = await startRegistry({ htpasswd: { user: 'alice', password: PASSWORD } });
  const pushed = await pushArtifact(origin, 'm/r', 'v1', { layers: [{ bytes: BIG, mediaType: 'application/octet-stream' }] });
  const layer = pushed.layers[0]!;
  const seen: Array<string | undefined> = [];
  // "Object storage" on another loopback address, answering chunked (no Content-Length).
  const storage = createServer((req, res) => {
    seen.push(req.headers.authorization);
    res.writeHead(200, { 'transfer-encoding': 'chunked' });
    for (let at = 0; at < BIG.length; at += 1_000_003) res.write(BIG.subarray(at, at + 1_000_003));
    res.end();
  });
  await new Promise<void>((r) => storage.listen(0, '127.0.0.2', r));
  const port = (storage.address() as { port: number }).port;
  const front = await startProxy(origin.url, (req) =>
    req.path.includes('/blobs/') && req.headers.authorization !== undefined
      ? { status: 307, headers: { location: `http://127.0.0.2:${port}/bucket/${layer.digest}?X-Amz-Signature=abc` } }
      : 'pass',
  );
  const { client } = makeClient();
  try {
    const ref = parseReference(`${front.host}/m/r:v1`);
    const auth = { dockerConfigJson: dockerConfigJson(front.host, 'alice', PASSWORD) };
    const resolved = await client.resolve(ref, { auth });
    const body = await readAll((await client.fetchBlob(ref, resolved.manifest.layers[0]!, { auth })).body);
    assert.ok(body.equals(BIG), `got ${body.length} bytes`);
    assert.deepEqual(seen, [undefined], 'Authorization was forwarded to another host');
  } finally {
    await client.close();
    await front.close();
    storage.closeAllConnections();
    await new Promise<void>((r) => storage.close(() => r()));
    await origin.stop();
  }
});

test('a large blob cut off mid-body is a resumable error; an abort is reported as an abort', async () => {
  const origin = await startRegistry();
  const pushed = await pushArtifact(origin, 'm/cut', 'v1', { layers: [{ bytes: BIG, mediaType: 'application/octet-stream' }] });
  const layer = pushed.layers[0]!;
  // Promise the whole blob, send 3 MB, hang up.
  const cutter = createServer((req, res) => {
    if (!req.url?.includes('/blobs/')) return void res.writeHead(404).end();
    res.writeHead(200, { 'content-length': String(BIG.length) });
    res.write(BIG.subarray(0, 3_000_000), () => res.socket?.destroy());
  });
  await new Promise<void>((r) => cutter.listen(0, '127.0.0.1', r));
  const host = `127.0.0.1:${(cutter.address() as { port: number }).port}`;
  const { client } = makeClient();
  try {
    const { body } = await client.fetchBlob(parseReference(`${host}/m/cut:v1`), layer);
    await assert.rejects(readAll(body), (err: unknown) => isDriverError(err, 'REGISTRY_UNAVAILABLE') && err.retryable);

    const controller = new AbortController();
    const slow = await client.fetchBlob(parseReference(`${origin.host}/m/cut:v1`), layer, { signal: controller.signal });
    controller.abort();
    await assert.rejects(readAll(slow.body));
  } finally {
    await client.close();
    cutter.closeAllConnections();
    await new Promise<void>((r) => cutter.close(() => r()));
    await origin.stop();
  }
});
