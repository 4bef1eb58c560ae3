import assert from 'node:assert/strict';
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { status } from '@grpc/grpc-js';
import { callCsi } from '../../helpers/driver-process.js';
import { modelFiles, publishRequest, publishUntilReady, pushModel, startStage, target, type Stage } from './fixture.js';

// The node cache is shared by every pod on the node; a private model pulled with one pod's
// secret must not be mountable by a pod without a secret the registry accepts.
const USER = 'alice';
const PASSWORD = 'pa55-word-alice';
let stage: Stage;
let model: Awaited<ReturnType<typeof pushModel>>;

function secret(password: string) {
  const auth = Buffer.from(`${USER}:${password}`).toString('base64');
  return { '.dockerconfigjson': JSON.stringify({ auths: { [stage.proxy.host]: { auth } } }) };
}

before(async () => {
  stage = await startStage({ registry: { htpasswd: { user: USER, password: PASSWORD } }, config: { publishWaitSeconds: 1 } });
  model = await pushModel(stage, 'private/model', 'v1', modelFiles('private', 4 * 1024 * 1024));
});
after(() => stage.close());

async function refused(path: string, attributes: Record<string, string>, secrets?: Record<string, string>): Promise<void> {
  await assert.rejects(callCsi(stage.clients.node, 'NodePublishVolume', publishRequest(path, attributes, secrets ? { secrets } : {})), (err: { code: number; details: string }) => {
    assert.equal(err.code, status.PERMISSION_DENIED, err.details);
    assert.ok(!err.details.includes(PASSWORD));
    return true;
  });
  await assert.rejects(stat(path), { code: 'ENOENT' }, 'a refused publish leaves no target');
}

test('a pull in flight is not joined by a caller without credentials the registry accepts', async () => {
  stage.proxy.rate = 1024 * 1024; // 4 MiB weight: the pull outlives the 1 s publish wait
  const owner = target(stage, 'owner');
  await assert.rejects(callCsi(stage.clients.node, 'NodePublishVolume', publishRequest(owner, { reference: model.reference }, { secrets: secret(PASSWORD) })), (err: { code: number; details: string }) => {
    assert.equal(err.code, status.UNAVAILABLE, err.details);
    assert.match(err.details, /pulling/);
    return true;
  });
  await refused(target(stage, 'joiner'), { reference: `${stage.proxy.host}/private/model@${model.digest}` });
  stage.proxy.rate = 0;
  await publishUntilReady(stage, publishRequest(owner, { reference: model.reference }, { secrets: secret(PASSWORD) }));
  assert.ok((await readFile(join(owner, 'config.json'))).equals(model.expected['config.json']!));
});

test('a cached private model is refused to no secret and to a wrong secret, by tag and by digest', async () => {
  stage.proxy.reset();
  await refused(target(stage, 'anon-tag'), { reference: model.reference });
  await refused(target(stage, 'anon-digest'), { reference: `${stage.proxy.host}/private/model@${model.digest}` });
  await refused(target(stage, 'wrong'), { reference: model.reference }, secret('not-the-password'));
  assert.equal(stage.proxy.totalBlobBytes(), 0, 'refusals download nothing');
});

test('the right secret mounts the cached model without a download, also after a restart with the registry down', async () => {
  stage.proxy.reset();
  const again = target(stage, 'again');
  await callCsi(stage.clients.node, 'NodePublishVolume', publishRequest(again, { reference: model.reference }, { secrets: secret(PASSWORD) }));
  assert.equal(stage.proxy.totalBlobBytes(), 0);
  assert.equal(stage.proxy.manifestGets, 0, 'an earlier grant for the same secret needs no registry request');

  await stage.restartDriver(true);
  await stage.proxy.down();
  try {
    const afterRestart = target(stage, 'after-restart');
    await callCsi(stage.clients.node, 'NodePublishVolume', publishRequest(afterRestart, { reference: model.reference }, { secrets: secret(PASSWORD) }));
    assert.ok((await readFile(join(afterRestart, 'model.safetensors'))).equals(model.expected['model.safetensors']!));
    // A caller never granted cannot be checked while the registry is down: retryable, not served.
    await assert.rejects(callCsi(stage.clients.node, 'NodePublishVolume', publishRequest(target(stage, 'unknown'), { reference: model.reference })), (err: { code: number }) => {
      assert.equal(err.code, status.UNAVAILABLE);
      return true;
    });
  } finally {
    await stage.proxy.up();
  }
});
