/**
 * The controller end to end: `model-csi controller` as its own process resolves a
 * StorageClass reference to a pinned digest against a real registry (behind a counting proxy),
 * and a `model-csi node` process mounts exactly that digest from the returned volume_context,
 * however the tag moves afterwards. Registry credentials come from the provisioner secret.
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { status } from '@grpc/grpc-js';
import { callCsi, closeClients, csiClients, startDriver, stopDriver, type CsiClients, type DriverProcess } from '../../helpers/driver-process.js';
import { modelFiles, PREFIX, publishUntilReady, pushModel, startStage, target, type Stage } from '../publish/fixture.js';

const REFERENCE = `${PREFIX}reference`;
const USER = 'provisioner';
const PASSWORD = 'pa55-w0rd';

let stage: Stage;
let authStage: Stage;
let controller: DriverProcess;
let clients: CsiClients;
let v1: Awaited<ReturnType<typeof pushModel>>;

before(async () => {
  [stage, authStage] = await Promise.all([startStage(), startStage({ registry: { htpasswd: { user: USER, password: PASSWORD } } })]);
  controller = await startDriver('controller', ['--endpoint', `unix://${stage.work}/controller.sock`, '--node-id', 'controller-0']);
  clients = csiClients(controller.endpoint);
  v1 = await pushModel(stage, 'models/m', 'v1', modelFiles('m-v1', 512 * 1024));
});
after(async () => {
  if (clients) closeClients(clients);
  if (controller) await stopDriver(controller, 'SIGKILL');
  await Promise.all([stage?.close(), authStage?.close()]);
});

const readerOnly = { mount: {}, access_mode: { mode: 'MULTI_NODE_READER_ONLY' } };

function createRequest(name: string, reference: string, extra: Record<string, unknown> = {}) {
  return { name, parameters: { [REFERENCE]: reference }, volume_capabilities: [readerOnly], ...extra };
}

const create = (request: object) => callCsi(clients.controller, 'CreateVolume', request);

function rejectsWith(code: number, pattern?: RegExp) {
  return (err: { code: number; details: string }) => {
    assert.equal(err.code, code, `${err.code}: ${err.details}`);
    if (pattern) assert.match(err.details, pattern);
    return true;
  };
}

function dockerConfig(host: string, user: string, password: string): string {
  return JSON.stringify({ auths: { [host]: { auth: Buffer.from(`${user}:${password}`).toString('base64') } } });
}

/** NodePublishVolume as kubelet sends it for a PV: the controller's volume id and context, plus pod info. */
function pvPublish(on: Stage, volume: { volume_id: string; volume_context: Record<string, string> }, name: string, extra: Record<string, unknown> = {}) {
  return {
    volume_id: volume.volume_id,
    target_path: target(on, name),
    volume_capability: readerOnly,
    readonly: true,
    volume_context: { ...volume.volume_context, 'csi.storage.k8s.io/pod.name': name, 'csi.storage.k8s.io/pod.namespace': 'default' },
    ...extra,
  };
}

test('CreateVolume pins the tag to its digest; capacity is the model size, or the claim when it asks', async () => {
  const modelSize = v1.layers.reduce((sum, layer) => sum + layer.size, 0);
  const { volume } = await create(createRequest('pvc-1', v1.reference));
  assert.equal(volume.volume_context[REFERENCE], `${stage.proxy.host}/models/m@${v1.digest}`);
  assert.equal(Number(volume.capacity_bytes), modelSize, 'no claim size: the model size');
  assert.match(volume.volume_id, /^model-[0-9a-f]{16}-[0-9a-f]{64}$/);
  assert.ok(volume.volume_id.endsWith(v1.digest.slice('sha256:'.length)));

  const asked = 5 * 1024 ** 3;
  const { volume: sized } = await create(createRequest('pvc-sized', v1.reference, { capacity_range: { required_bytes: asked } }));
  assert.equal(Number(sized.capacity_bytes), asked, "the claim's request");
});

test('CreateVolume is idempotent by name and resolves once; another reference under the same name is ALREADY_EXISTS', async () => {
  const first = (await create(createRequest('pvc-idem', v1.reference))).volume;
  const gets = stage.proxy.manifestGets;
  const again = (await create(createRequest('pvc-idem', v1.reference))).volume;
  assert.deepEqual(again, first, 'same name + parameters: the same volume');
  assert.equal(stage.proxy.manifestGets, gets, 'a repeat asks no registry');

  const other = await pushModel(stage, 'models/other', 'v1', modelFiles('other', 64 * 1024));
  await assert.rejects(create(createRequest('pvc-idem', other.reference)), rejectsWith(status.ALREADY_EXISTS, /pvc-idem/));
});

test('access modes: reader and single-node writer modes accepted; multi-node writers and block refused with INVALID_ARGUMENT', async () => {
  for (const mode of ['SINGLE_NODE_READER_ONLY', 'MULTI_NODE_READER_ONLY', 'SINGLE_NODE_WRITER']) {
    await create({ ...createRequest(`pvc-mode-${mode}`, v1.reference), volume_capabilities: [{ mount: {}, access_mode: { mode } }] });
  }
  for (const mode of ['MULTI_NODE_MULTI_WRITER', 'MULTI_NODE_SINGLE_WRITER']) {
    await assert.rejects(
      create({ ...createRequest(`pvc-bad-${mode}`, v1.reference), volume_capabilities: [{ mount: {}, access_mode: { mode } }] }),
      rejectsWith(status.INVALID_ARGUMENT, new RegExp(`${mode}.*read-only`)),
    );
  }
  await assert.rejects(
    create({ ...createRequest('pvc-block', v1.reference), volume_capabilities: [{ block: {}, access_mode: { mode: 'MULTI_NODE_READER_ONLY' } }] }),
    rejectsWith(status.INVALID_ARGUMENT, /block/),
  );
});

test('a missing tag is NOT_FOUND naming it', async () => {
  await assert.rejects(create(createRequest('pvc-missing', `${stage.proxy.host}/models/m:v404`)), rejectsWith(status.NOT_FOUND, /v404/));
});

test('the node mounts the pinned digest: a tag moved to v2 after CreateVolume still mounts v1', { timeout: 30_000 }, async () => {
  const { volume } = await create(createRequest('pvc-pinned', v1.reference));
  const v2 = await pushModel(stage, 'models/m', 'v1', modelFiles('m-v2', 512 * 1024));
  assert.notEqual(v2.digest, v1.digest);

  await publishUntilReady(stage, pvPublish(stage, volume, 'pinned'));
  for (const [file, bytes] of Object.entries(v1.expected)) {
    assert.ok((await readFile(join(target(stage, 'pinned'), file))).equals(bytes), `${file}: the v1 bytes`);
  }
  assert.equal(stage.proxy.blobGets.get(v2.layers[0]!.digest) ?? 0, 0, 'no v2 blob was fetched');

  // A new claim resolves the tag anew, to v2.
  const { volume: later } = await create(createRequest('pvc-later', v1.reference));
  assert.equal(later.volume_context[REFERENCE], `${stage.proxy.host}/models/m@${v2.digest}`);
  await publishUntilReady(stage, pvPublish(stage, later, 'later'));
  assert.ok((await readFile(join(target(stage, 'later'), 'config.json'))).equals(v2.expected['config.json']!));
});

test('registry credentials from the provisioner secret resolve a private model; wrong ones are PERMISSION_DENIED', { timeout: 30_000 }, async () => {
  const model = await pushModel(authStage, 'private/m', 'v1', modelFiles('private', 128 * 1024));
  const host = authStage.proxy.host;
  const secrets = { '.dockerconfigjson': dockerConfig(host, USER, PASSWORD) };
  const { volume } = await create(createRequest('pvc-private', model.reference, { secrets }));
  assert.equal(volume.volume_context[REFERENCE], `${host}/private/m@${model.digest}`);

  await assert.rejects(
    create(createRequest('pvc-private-wrong', model.reference, { secrets: { '.dockerconfigjson': dockerConfig(host, USER, 'wrong') } })),
    (err: { code: number; details: string }) => {
      rejectsWith(status.PERMISSION_DENIED)(err);
      assert.doesNotMatch(err.details, /wrong|pa55/, 'no credential in the error');
      return true;
    },
  );
  await assert.rejects(create(createRequest('pvc-private-none', model.reference)), rejectsWith(status.PERMISSION_DENIED));

  // The node pulls the pinned model with the publish secret.
  await publishUntilReady(authStage, pvPublish(authStage, volume, 'private', { secrets }));
  assert.ok((await readFile(join(target(authStage, 'private'), 'model.safetensors'))).equals(model.expected['model.safetensors']!));
});

test('DeleteVolume is OK, again OK, and OK for an id never issued', async () => {
  const { volume } = await create(createRequest('pvc-delete', v1.reference));
  await callCsi(clients.controller, 'DeleteVolume', { volume_id: volume.volume_id });
  await callCsi(clients.controller, 'DeleteVolume', { volume_id: volume.volume_id });
  await callCsi(clients.controller, 'DeleteVolume', { volume_id: 'model-0000000000000000-' + '0'.repeat(64) });
  await assert.rejects(callCsi(clients.controller, 'DeleteVolume', {}), rejectsWith(status.INVALID_ARGUMENT, /volume_id/));
});
