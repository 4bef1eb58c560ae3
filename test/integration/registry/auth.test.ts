import { strict as assert } from 'node:assert';
import { mkdtempSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { isDriverError } from '../../../src/errors/driver-error.js';
import { parseReference } from '../../../src/registry/reference.js';
import { pushArtifact, startRegistry, type TestRegistry } from '../../helpers/registry.js';
import { startTokenServer, type TokenServer } from '../../helpers/token-server.js';
import { dockerConfigJson, makeClient } from './common.js';
import { startProxy } from './proxy.js';

const PASSWORD = 's3cret-Pa55word';
let basicReg: TestRegistry;
let tokens: TokenServer;
let tokenReg: TestRegistry;
let work: string;

before(async () => {
  work = mkdtempSync(join(tmpdir(), 'model-csi-auth-'));
  basicReg = await startRegistry({ htpasswd: { user: 'alice', password: PASSWORD } });
  await pushArtifact(basicReg, 'private/m', 'v1', { layers: [{ bytes: 'weights', mediaType: 'application/octet-stream' }] });
  tokens = await startTokenServer({ users: { alice: PASSWORD }, refreshTokens: { 'refresh-abc': 'alice' } });
  tokenReg = await startRegistry({ tokenAuth: tokens });
  await pushArtifact({ url: tokenReg.url, authorization: `Bearer ${tokens.mint('private/m')}` }, 'private/m', 'v1', {
    layers: [{ bytes: 'weights', mediaType: 'application/octet-stream' }],
  });
});
after(async () => {
  await basicReg.stop();
  await tokenReg.stop();
  await tokens.close();
  rmSync(work, { recursive: true, force: true });
});

function assertNoSecret(text: string): void {
  assert.ok(!text.includes(PASSWORD), 'password leaked');
  assert.ok(!text.includes(Buffer.from(`alice:${PASSWORD}`).toString('base64')), 'basic credentials leaked');
  assert.ok(!/Bearer ey/.test(text), 'token leaked');
}

test('htpasswd basic auth: per-call pull secret works; none or a wrong one is REGISTRY_UNAUTHORIZED without the password', async () => {
  const { client, logs } = makeClient();
  const ref = parseReference(`${basicReg.host}/private/m:v1`);
  try {
    const resolved = await client.resolve(ref, { auth: { dockerConfigJson: dockerConfigJson(basicReg.host, 'alice', PASSWORD) } });
    const config = await client.fetchBlobBytes(ref, resolved.manifest.config, { auth: { dockerConfigJson: dockerConfigJson(basicReg.host, 'alice', PASSWORD) } });
    assert.equal(config.toString(), '{}');
    await assert.rejects(client.resolve(ref), (err: unknown) => isDriverError(err, 'REGISTRY_UNAUTHORIZED'));
    await assert.rejects(client.resolve(ref, { auth: { dockerConfigJson: dockerConfigJson(basicReg.host, 'alice', 'wrong-' + PASSWORD) } }), (err: unknown) => {
      assert.ok(isDriverError(err, 'REGISTRY_UNAUTHORIZED'));
      assert.match(err.message, new RegExp(`${basicReg.host}.*private/m.*check the pull secret`));
      assertNoSecret(err.message + String(err.stack));
      return true;
    });
    assertNoSecret(logs.join(''));
  } finally {
    await client.close();
  }
});

test('node-wide docker config is used without a pull secret, re-read when it changes, and the pull secret wins over it', async () => {
  const file = join(work, 'config.json');
  writeFileSync(file, dockerConfigJson(basicReg.host, 'alice', 'stale'));
  const { client } = makeClient({ dockerConfig: file });
  const ref = parseReference(`${basicReg.host}/private/m:v1`);
  try {
    await assert.rejects(client.resolve(ref), (err: unknown) => isDriverError(err, 'REGISTRY_UNAUTHORIZED'));
    // The per-call payload takes precedence over the (wrong) node file.
    await client.resolve(ref, { auth: { dockerConfigJson: dockerConfigJson(basicReg.host, 'alice', PASSWORD) } });
    // kubelet updates a mounted Secret in place: a new mtime means a re-read.
    writeFileSync(file, JSON.stringify({ auths: { [`http://${basicReg.host}/v2/`]: { username: 'alice', password: PASSWORD } } }));
    utimesSync(file, new Date(), new Date(Date.now() + 5000));
    await client.resolve(ref);
  } finally {
    await client.close();
  }
});

test('bearer token flow against docker-registry token auth: one cached token serves the manifest and blobs', async () => {
  const { client, logs } = makeClient();
  const ref = parseReference(`${tokenReg.host}/private/m:v1`);
  const auth = { dockerConfigJson: dockerConfigJson(tokenReg.host, 'alice', PASSWORD) };
  tokens.requests.length = 0;
  try {
    const resolved = await client.resolve(ref, { auth });
    await client.fetchBlobBytes(ref, resolved.manifest.config, { auth });
    await client.fetchBlobBytes(ref, resolved.manifest.layers[0]!, { auth });
    await client.resolve(ref, { auth });
    assert.equal(tokens.requests.length, 1, 'the token is cached and reused');
    assert.deepEqual(tokens.requests[0]!.scope, ['repository:private/m:pull']);
    assert.equal(tokens.requests[0]!.service, tokens.service);
    assert.equal(tokens.requests[0]!.user, 'alice');

    // A different credential never reuses alice's token.
    await assert.rejects(client.resolve(ref, { auth: { dockerConfigJson: dockerConfigJson(tokenReg.host, 'alice', 'nope') } }), (err: unknown) => {
      assert.ok(isDriverError(err, 'REGISTRY_UNAUTHORIZED'), String(err));
      assertNoSecret(err.message);
      return true;
    });
    // Anonymous: the token server refuses.
    await assert.rejects(client.resolve(ref), (err: unknown) => isDriverError(err, 'REGISTRY_UNAUTHORIZED'));
    assertNoSecret(logs.join(''));
  } finally {
    await client.close();
  }
});

test('identitytoken is exchanged by the OAuth2 refresh_token POST', async () => {
  const { client } = makeClient();
  const ref = parseReference(`${tokenReg.host}/private/m:v1`);
  tokens.requests.length = 0;
  try {
    const payload = JSON.stringify({ auths: { [tokenReg.host]: { identitytoken: 'refresh-abc' } } });
    await client.resolve(ref, { auth: { dockerConfigJson: payload } });
    assert.equal(tokens.requests.length, 1);
    assert.equal(tokens.requests[0]!.method, 'POST');
    assert.equal(tokens.requests[0]!.grantType, 'refresh_token');
  } finally {
    await client.close();
  }
});

test('a 401 for a cached token re-authenticates once; a second 401 is REGISTRY_UNAUTHORIZED', async () => {
  let revokeNext = 0;
  const proxy = await startProxy(tokenReg.url, (req) => {
    if (revokeNext > 0 && req.headers.authorization?.startsWith('Bearer ')) {
      revokeNext--;
      return {
        status: 401,
        headers: { 'www-authenticate': `Bearer realm="${tokens.realm}",service="${tokens.service}",scope="repository:private/m:pull"`, 'content-type': 'application/json' },
        body: '{"errors":[{"code":"UNAUTHORIZED"}]}',
      };
    }
    return 'pass';
  });
  const { client } = makeClient();
  const ref = parseReference(`${proxy.host}/private/m:v1`);
  const auth = { dockerConfigJson: dockerConfigJson(proxy.host, 'alice', PASSWORD) };
  tokens.requests.length = 0;
  try {
    await client.resolve(ref, { auth });
    assert.equal(tokens.requests.length, 1);
    revokeNext = 1; // the cached token is refused once
    await client.resolve(ref, { auth });
    assert.equal(tokens.requests.length, 2, 'a fresh token was fetched after the 401');
    revokeNext = 2; // refused again after re-auth: give up, do not loop
    const before = proxy.seen.length;
    await assert.rejects(client.resolve(ref, { auth }), (err: unknown) => isDriverError(err, 'REGISTRY_UNAUTHORIZED'));
    assert.equal(proxy.seen.length - before, 2, '401 is not retried beyond one re-auth');
  } finally {
    await client.close();
    await proxy.close();
  }
});
