/**
 * The registry failing a publish, against real processes: a registry host that refuses
 * connections (down) is UNAVAILABLE naming it and leaves nothing behind, and the retry after it
 * is back succeeds; a pull secret with a wrong password is PERMISSION_DENIED naming the
 * registry and repository without a trace of the credential, and the right secret mounts.
 */
import assert from 'node:assert/strict';
import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { status } from '@grpc/grpc-js';
import { callCsi } from '../../helpers/driver-process.js';
import { modelFiles, publishRequest, publishUntilReady, pushModel, startStage, target, type Stage } from './fixture.js';

let open: Stage;
let locked: Stage;
const USER = 'puller';
const PASSWORD = 'Corr3ct-Horse-pw';
const WRONG = 'Wr0ng-Battery-pw';

before(async () => {
  [open, locked] = await Promise.all([
    startStage({ config: { publishWaitSeconds: 20 } }),
    startStage({ config: { publishWaitSeconds: 20 }, registry: { htpasswd: { user: USER, password: PASSWORD } } }),
  ]);
});
after(() => Promise.all([open?.close(), locked?.close()]));

type Pushed = Awaited<ReturnType<typeof pushModel>>;

async function assertMountedBytes(path: string, model: Pushed): Promise<void> {
  for (const [file, bytes] of Object.entries(model.expected)) assert.ok((await readFile(join(path, file))).equals(bytes), `${file} differs`);
}

async function entries(dir: string): Promise<string[]> {
  return readdir(dir).catch((err: NodeJS.ErrnoException) => (err.code === 'ENOENT' ? [] : Promise.reject(err)));
}

/** A failed publish leaves no model, no assembly dir, no target. */
async function assertNothingLeft(stage: Stage, path: string): Promise<void> {
  assert.deepEqual(await entries(join(stage.root, 'tmp')), [], 'nothing left in <root>/tmp');
  assert.deepEqual(await entries(join(stage.root, 'models', 'sha256')), [], 'no model directory');
  await assert.rejects(stat(path), { code: 'ENOENT' }, 'no target left behind');
}

function dockerConfigJson(host: string, user: string, password: string): string {
  return JSON.stringify({ auths: { [host]: { auth: Buffer.from(`${user}:${password}`).toString('base64') } } });
}

test('registry down: publish of an uncached model is UNAVAILABLE naming the registry, leaves nothing, and succeeds once it is back', async () => {
  const model = await pushModel(open, 'models/outage', 'v1', modelFiles('outage'));
  const byDigest = `${open.proxy.host}/models/outage@${model.digest}`;
  await open.proxy.down(); // the registry host refuses connections
  try {
    for (const [name, reference] of [['down-tag', model.reference], ['down-digest', byDigest]] as const) {
      const path = target(open, name);
      const started = Date.now();
      await assert.rejects(callCsi(open.clients.node, 'NodePublishVolume', publishRequest(path, { reference })), (err: { code: number; details: string }) => {
        assert.equal(err.code, status.UNAVAILABLE, err.details);
        assert.match(err.details, /^REGISTRY_UNAVAILABLE: /, 'the registry failure itself, not a pull still in progress');
        assert.ok(err.details.includes(open.proxy.host), `the message names the registry: ${err.details}`);
        assert.ok(err.details.includes('models/outage'), `the message names the repository: ${err.details}`);
        return true;
      });
      assert.ok(Date.now() - started < 15_000, `a down registry is reported in ${Date.now() - started} ms, within kubelet's deadline`);
      await assertNothingLeft(open, path);
    }
  } finally {
    await open.proxy.up();
  }
  const path = target(open, 'back-up');
  await publishUntilReady(open, publishRequest(path, { reference: model.reference }));
  await assertMountedBytes(path, model);
});

test('a pull secret with a wrong password is PERMISSION_DENIED naming the registry and repository, never the credential; the right one mounts', async () => {
  const model = await pushModel(locked, 'models/private', 'v1', modelFiles('private'));
  const host = locked.proxy.host;
  const wrongSecret = dockerConfigJson(host, USER, WRONG);
  const forbidden = [WRONG, PASSWORD, Buffer.from(`${USER}:${WRONG}`).toString('base64'), Buffer.from(`${USER}:${PASSWORD}`).toString('base64')];

  const path = target(locked, 'private');
  for (const secrets of [{ '.dockerconfigjson': wrongSecret }, undefined]) {
    await assert.rejects(callCsi(locked.clients.node, 'NodePublishVolume', publishRequest(path, { reference: model.reference }, secrets ? { secrets } : {})), (err: { code: number; details: string }) => {
      assert.equal(err.code, status.PERMISSION_DENIED, err.details);
      assert.ok(err.details.includes(host), `the message names the registry: ${err.details}`);
      assert.ok(err.details.includes('models/private'), `the message names the repository: ${err.details}`);
      for (const secret of forbidden) assert.ok(!err.details.includes(secret), `the message carries a credential: ${err.details}`);
      return true;
    });
    await assertNothingLeft(locked, path);
  }

  await publishUntilReady(locked, publishRequest(path, { reference: model.reference }, { secrets: { '.dockerconfigjson': dockerConfigJson(host, USER, PASSWORD) } }));
  await assertMountedBytes(path, model);
  const logs = locked.driver.stdout() + locked.driver.stderr();
  assert.match(logs, /models\/private/, 'the driver logged the calls');
  for (const secret of forbidden) assert.ok(!logs.includes(secret), 'the driver log carries a credential');
});
