import { strict as assert } from 'node:assert';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { gunzipSync } from 'node:zlib';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { isDriverError } from '../../../src/errors/driver-error.js';
import { MediaTypes } from '../../../src/registry/oci-types.js';
import { parseReference } from '../../../src/registry/reference.js';
import { blobDataPath, pushArtifact, pushBlob, pushManifest, sha256, startRegistry, type TestRegistry } from '../../helpers/registry.js';
import { makeClient, readAll } from './common.js';
import { startProxy, type ProxyAction } from './proxy.js';

const GO_BIN = join(process.env.HOME ?? '/root', 'go/bin');
const env = { ...process.env, PATH: `${GO_BIN}:${process.env.PATH}` };
let reg: TestRegistry;
let work: string;
const { client, metrics } = makeClient();

before(async () => {
  reg = await startRegistry();
  work = mkdtempSync(join(tmpdir(), 'model-csi-pull-'));
});
after(async () => {
  await client.close();
  await reg.stop();
  rmSync(work, { recursive: true, force: true });
});

function tool(cmd: string, args: string[], cwd: string): void {
  try {
    execFileSync(cmd, args, { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (err) {
    const e = err as { code?: string; stderr?: Buffer };
    if (e.code === 'ENOENT') throw new Error(`${cmd} is not installed (expected on PATH or in ~/go/bin); this test needs it`);
    throw new Error(`${cmd} ${args.join(' ')} failed: ${e.stderr?.toString() ?? err}`);
  }
}

test('anonymous pull of an artifact pushed by oras: manifest, config and a streamed layer', async () => {
  const dir = join(work, 'oras');
  mkdirSync(dir);
  const weights = randomBytes(300_000);
  writeFileSync(join(dir, 'model.safetensors'), weights);
  tool('oras', ['push', '--plain-http', '--artifact-type', 'application/vnd.cncf.model.manifest.v1+json', `${reg.host}/models/oras:v1`, 'model.safetensors:application/vnd.cncf.model.weight.v1.raw'], dir);

  const ref = parseReference(`${reg.host}/models/oras:v1`);
  const resolved = await client.resolve(ref);
  assert.equal(resolved.mediaType, MediaTypes.ociManifest);
  assert.equal(resolved.digest, sha256(resolved.bytes));
  assert.equal(resolved.rootDigest, resolved.digest);
  const [layer] = resolved.manifest.layers;
  assert.equal(layer!.annotations?.['org.opencontainers.image.title'], 'model.safetensors');
  const config = await client.fetchBlobBytes(ref, resolved.manifest.config);
  assert.equal(sha256(config), resolved.manifest.config.digest);
  const { body, offset } = await client.fetchBlob(ref, layer!);
  assert.equal(offset, 0);
  assert.ok((await readAll(body)).equals(weights));
  const pulled = await metrics.bytesPulled.get();
  assert.ok(pulled.values.some((v) => v.labels.registry === reg.host && v.value >= weights.length), 'bytes counted into metrics');

  // Resolving by digest verifies the bytes against it.
  const byDigest = await client.resolve(parseReference(`${reg.host}/models/oras@${resolved.digest}`));
  assert.equal(byDigest.digest, resolved.digest);
});

test('anonymous pull of an image copied by skopeo from an OCI layout', async () => {
  const layout = join(work, 'layout');
  mkdirSync(join(layout, 'blobs/sha256'), { recursive: true });
  const put = (bytes: Buffer) => {
    const d = sha256(bytes);
    writeFileSync(join(layout, 'blobs/sha256', d.slice(7)), bytes);
    return { digest: d, size: bytes.length };
  };
  const layerBytes = randomBytes(50_000);
  const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [sha256(layerBytes)] } }));
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MediaTypes.ociManifest,
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...put(config) },
      layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar', ...put(layerBytes) }],
    }),
  );
  const m = put(manifest);
  writeFileSync(join(layout, 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}');
  writeFileSync(
    join(layout, 'index.json'),
    JSON.stringify({ schemaVersion: 2, manifests: [{ mediaType: MediaTypes.ociManifest, ...m, annotations: { 'org.opencontainers.image.ref.name': 'v1' } }] }),
  );
  tool('skopeo', ['copy', '--dest-tls-verify=false', `oci:${layout}:v1`, `docker://${reg.host}/images/skopeo:v1`], work);

  const ref = parseReference(`${reg.host}/images/skopeo:v1`);
  const resolved = await client.resolve(ref);
  const layer = resolved.manifest.layers[0]!;
  const { body } = await client.fetchBlob(ref, layer);
  const got = await readAll(body);
  assert.equal(sha256(got), layer.digest);
  // skopeo compresses uncompressed layers on the way to a registry.
  assert.ok((layer.mediaType.endsWith('+gzip') ? gunzipSync(got) : got).equals(layerBytes), layer.mediaType);
});

test('a missing tag is MANIFEST_NOT_FOUND naming tag, registry and repository; a missing blob is BLOB_NOT_FOUND', async () => {
  await assert.rejects(client.resolve(parseReference(`${reg.host}/models/oras:nope`)), (err: unknown) => {
    assert.ok(isDriverError(err, 'MANIFEST_NOT_FOUND'), String(err));
    assert.match(err.message, new RegExp(`no tag nope in ${reg.host}/models/oras`));
    return true;
  });
  const missing = { mediaType: 'application/octet-stream', digest: sha256('not pushed'), size: 10 };
  await assert.rejects(client.fetchBlob(parseReference(`${reg.host}/models/oras:v1`), missing), (err: unknown) => isDriverError(err, 'BLOB_NOT_FOUND') && err.message.includes(missing.digest));
});

test('an index resolves to its linux/amd64 entry, skipping other platforms and attestations', async () => {
  const repo = 'images/multi';
  const arm = await pushArtifact(reg, repo, 'arm', { layers: [{ bytes: 'arm', mediaType: 'application/vnd.oci.image.layer.v1.tar' }] });
  const amd = await pushArtifact(reg, repo, 'amd', { layers: [{ bytes: 'amd', mediaType: 'application/vnd.oci.image.layer.v1.tar' }] });
  const att = await pushArtifact(reg, repo, 'att', { layers: [{ bytes: 'att', mediaType: 'application/vnd.in-toto+json' }] });
  const entry = (a: { digest: string; size: number }, platform: object) => ({ mediaType: MediaTypes.ociManifest, digest: a.digest, size: a.size, platform });
  const index = {
    schemaVersion: 2,
    mediaType: MediaTypes.ociIndex,
    manifests: [entry(att, { os: 'unknown', architecture: 'unknown' }), entry(arm, { os: 'linux', architecture: 'arm64' }), entry(amd, { os: 'linux', architecture: 'amd64' })],
  };
  const pushed = await pushManifest(reg, repo, 'v1', index, MediaTypes.ociIndex);
  const resolved = await client.resolve(parseReference(`${reg.host}/${repo}:v1`));
  assert.equal(resolved.rootDigest, pushed.digest);
  assert.equal(resolved.digest, amd.digest);
  assert.equal(resolved.manifest.layers[0]!.digest, sha256('amd'));

  // Platform-independent (no platform) entries are chosen when there is no exact match.
  const onlyArm = { ...index, manifests: [entry(arm, { os: 'linux', architecture: 'arm64' }), { mediaType: MediaTypes.ociManifest, digest: att.digest, size: att.size }] };
  await pushManifest(reg, repo, 'v2', onlyArm, MediaTypes.ociIndex);
  assert.equal((await client.resolve(parseReference(`${reg.host}/${repo}:v2`))).digest, att.digest);

  const noMatch = { ...index, manifests: [entry(arm, { os: 'linux', architecture: 'arm64' })] };
  await pushManifest(reg, repo, 'v3', noMatch, MediaTypes.ociIndex);
  await assert.rejects(client.resolve(parseReference(`${reg.host}/${repo}:v3`)), (err: unknown) => isDriverError(err, 'UNSUPPORTED_MEDIA_TYPE') && /linux\/amd64/.test(err.message) && /linux\/arm64/.test(err.message));
});

test('Range: a resumed fetch returns exactly the tail; a server ignoring Range reports offset 0', async () => {
  const bytes = randomBytes(1_000_000);
  const blob = await pushBlob(reg, 'models/range', bytes);
  const desc = { mediaType: 'application/octet-stream', ...blob };
  const ref = parseReference(`${reg.host}/models/range:any`);
  const resumed = await client.fetchBlob(ref, desc, { offset: 654_321 });
  assert.equal(resumed.offset, 654_321);
  assert.ok((await readAll(resumed.body)).equals(bytes.subarray(654_321)));

  const proxy = await startProxy(reg.url, () => ({ rewriteHeaders: ({ range: _drop, ...rest }) => rest }));
  const viaProxy = makeClient({ registries: { [proxy.host]: { insecure: true } } });
  try {
    const whole = await viaProxy.client.fetchBlob(parseReference(`${proxy.host}/models/range:any`), desc, { offset: 1000 });
    assert.equal(whole.offset, 0, 'a 200 to a range request means the whole blob');
    assert.ok((await readAll(whole.body)).equals(bytes));
  } finally {
    await viaProxy.client.close();
    await proxy.close();
  }
});

test('a registry sending more bytes than the descriptor says is refused; fewer is a resumable break', async () => {
  const blob = await pushBlob(reg, 'models/sizes', Buffer.alloc(100_000, 7));
  const ref = parseReference(`${reg.host}/models/sizes:any`);
  const short = await client.fetchBlob(ref, { mediaType: 'application/octet-stream', ...blob, size: blob.size - 1 });
  await assert.rejects(readAll(short.body), (err: unknown) => isDriverError(err, 'DIGEST_MISMATCH') && /more than the 99999 bytes/.test(err.message));
  const long = await client.fetchBlob(ref, { mediaType: 'application/octet-stream', ...blob, size: blob.size + 1 });
  await assert.rejects(readAll(long.body), (err: unknown) => isDriverError(err, 'REGISTRY_UNAVAILABLE') && err.retryable && /ended after 100000 of 100001 bytes/.test(err.message));
});

test('a corrupted blob in the registry is DIGEST_MISMATCH from fetchBlobBytes', async () => {
  const good = Buffer.from('{"config":"original"}');
  const blob = await pushBlob(reg, 'models/corrupt', good);
  writeFileSync(blobDataPath(reg.storageDir, blob.digest), Buffer.from('{"config":"tampered"}'));
  const ref = parseReference(`${reg.host}/models/corrupt:any`);
  await assert.rejects(client.fetchBlobBytes(ref, { mediaType: 'application/json', ...blob }), (err: unknown) => isDriverError(err, 'DIGEST_MISMATCH') && err.message.includes(blob.digest));
  await assert.rejects(client.fetchBlobBytes(ref, { mediaType: 'application/json', ...blob, size: 5_000_000 }), (err: unknown) => isDriverError(err, 'MANIFEST_TOO_LARGE'));
});

test('manifests above 4 MiB are MANIFEST_TOO_LARGE, with or without Content-Length; unknown media types are named', async () => {
  const huge = Buffer.alloc(4 * 1024 * 1024 + 10, 0x20);
  let chunked = false;
  const proxy = await startProxy(reg.url, (req): ProxyAction => {
    if (!req.path.includes('/manifests/')) return 'pass';
    if (req.path.endsWith('/schema1')) return { status: 200, headers: { 'content-type': 'application/vnd.docker.distribution.manifest.v1+prettyjws' }, body: '{"schemaVersion":1}' };
    chunked = !chunked;
    return chunked ? { status: 200, headers: { 'content-type': MediaTypes.ociManifest, 'transfer-encoding': 'chunked' }, body: huge } : { status: 200, headers: { 'content-type': MediaTypes.ociManifest }, body: huge };
  });
  const c = makeClient({ registries: { [proxy.host]: { insecure: true } } });
  try {
    for (let i = 0; i < 2; i++) {
      await assert.rejects(c.client.resolve(parseReference(`${proxy.host}/m/big:v1`)), (err: unknown) => isDriverError(err, 'MANIFEST_TOO_LARGE'));
    }
    await assert.rejects(
      c.client.resolve(parseReference(`${proxy.host}/m/old:schema1`)),
      (err: unknown) => isDriverError(err, 'UNSUPPORTED_MEDIA_TYPE') && err.message.includes('application/vnd.docker.distribution.manifest.v1+prettyjws'),
    );
  } finally {
    await c.client.close();
    await proxy.close();
  }
});
