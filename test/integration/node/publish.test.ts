import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { status } from '@grpc/grpc-js';
import { readMountInfo, topMountAt } from '../../../src/mount/mountinfo.js';
import { pushModelPack } from '../../helpers/artifacts.js';
import { startRegistry, type TestRegistry } from '../../helpers/registry.js';
import { callCsi, closeClients, csiClients, startDriver, stopDriver, type CsiClients, type DriverProcess } from '../../helpers/driver-process.js';

// Drives a real node plugin process as kubelet would, with real bind mounts (needs root),
// against a real registry holding a tiny model.
let REFERENCE: string;
let registry: TestRegistry;
let work: string;
let root: string;
let driver: DriverProcess;
let clients: CsiClients;

function args(): string[] {
  return ['--endpoint', `unix://${work}/csi.sock`, '--root', root, '--node-id', 'node-a'];
}

function publishRequest(target: string, context: Record<string, string> = {}) {
  return {
    volume_id: 'vol-1',
    target_path: target,
    volume_capability: { mount: {}, access_mode: { mode: 'SINGLE_NODE_WRITER' } },
    readonly: true,
    secrets: { '.dockerconfigjson': '{"auths":{"other.example.com":{"auth":"dXNlcjp0b3Atc2VjcmV0LXZhbHVl"}}}' },
    volume_context: { 'model.csi.example.org/reference': REFERENCE, 'csi.storage.k8s.io/ephemeral': 'true', ...context },
  };
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(() => true, () => false);
}

before(async () => {
  assert.equal(process.getuid?.(), 0, 'integration tests need root: they make real bind mounts');
  work = await mkdtemp(join(tmpdir(), 'model-csi-node-'));
  root = join(work, 'root');
  registry = await startRegistry();
  const pushed = await pushModelPack({ url: registry.url }, 'models/tiny', 'v1', [
    { path: 'config.json', content: '{"model":"tiny"}', format: 'raw', role: 'weight.config' },
    { path: 'weights/w.safetensors', content: Buffer.alloc(8192, 1), format: 'raw', role: 'weight' },
  ]);
  REFERENCE = `${registry.host}/models/tiny@${pushed.digest}`;
  await mkdir(join(work, 'pods'));
  driver = await startDriver('node', args(), { MODEL_CSI_CONFIG: await debugConfig() });
  clients = csiClients(driver.endpoint);
});

async function debugConfig(): Promise<string> {
  const path = join(work, 'config.yaml');
  await writeFile(path, 'logLevel: debug\n');
  return path;
}

after(async () => {
  closeClients(clients);
  await stopDriver(driver, 'SIGKILL');
  for (const mount of (await readMountInfo()).filter((m) => m.mountPoint.startsWith(work)).reverse()) {
    await import('node:child_process').then(({ execFileSync }) => execFileSync('/bin/umount', [mount.mountPoint]));
  }
  await rm(work, { recursive: true, force: true });
  await registry.stop();
});

test('publish makes a ro,nosuid,nodev bind mount that refuses writes (EROFS)', async () => {
  const target = join(work, 'pods', 'a');
  await callCsi(clients.node, 'NodePublishVolume', publishRequest(target));
  const mount = topMountAt(await readMountInfo(), target);
  assert.ok(mount, 'target is not in /proc/self/mountinfo');
  for (const option of ['ro', 'nosuid', 'nodev']) assert.ok(mount.options.includes(option), `missing ${option}: ${mount.options}`);
  assert.equal(await readFile(join(target, 'config.json'), 'utf8'), '{"model":"tiny"}');
  await assert.rejects(writeFile(join(target, 'new.txt'), 'x'), { code: 'EROFS' });
  await assert.rejects(writeFile(join(target, 'config.json'), 'x'), { code: 'EROFS' });
});

test('a repeated publish is OK and does not stack; different arguments are ALREADY_EXISTS', async () => {
  const target = join(work, 'pods', 'a');
  await callCsi(clients.node, 'NodePublishVolume', publishRequest(target));
  const count = (await readMountInfo()).filter((m) => m.mountPoint === target).length;
  assert.equal(count, 1, 'the same target must not be mounted twice');
  await assert.rejects(callCsi(clients.node, 'NodePublishVolume', publishRequest(target, { 'model.csi.example.org/subPath': 'weights' })), {
    code: status.ALREADY_EXISTS,
  });
});

test('a subPath file is mounted on its own; stats report the model size', async () => {
  const target = join(work, 'pods', 'file');
  await callCsi(clients.node, 'NodePublishVolume', publishRequest(target, { 'model.csi.example.org/subPath': 'weights/w.safetensors' }));
  assert.equal((await readFile(target)).length, 8192);
  const stats = await callCsi(clients.node, 'NodeGetVolumeStats', { volume_id: 'vol-1', volume_path: target });
  assert.equal(stats.usage.find((u: { unit: string }) => u.unit === 'BYTES').used, 8192);
  await callCsi(clients.node, 'NodeUnpublishVolume', { volume_id: 'vol-1', target_path: target });
  assert.equal(await exists(target), false);
});

test('the call log has one line per call with method, volume id and code, and never the secrets', async () => {
  const log = driver.stderr();
  assert.match(log, /"method":"NodePublishVolume","volumeId":"vol-1".*"code":"OK"/);
  assert.match(log, /"code":"ALREADY_EXISTS"/);
  assert.ok(!log.includes('dXNlcjp0b3Atc2VjcmV0LXZhbHVl'.slice(0, 20)) && !log.includes('top-secret-value'), 'a secret reached the log');
  assert.ok(log.includes('"request"'), 'debug request logging is what this test checks');
});

test('after kill -9 and a restart, the earlier volume is found and unpublished; the target is removed', async () => {
  const target = join(work, 'pods', 'a');
  closeClients(clients);
  assert.equal(await stopDriver(driver, 'SIGKILL'), 'SIGKILL');
  assert.ok((await stat(join(work, 'csi.sock'))).isSocket(), 'a killed driver leaves its socket behind');
  driver = await startDriver('node', args());
  clients = csiClients(driver.endpoint);
  // Same arguments after the restart: still OK (recovered from the record + mountinfo).
  await callCsi(clients.node, 'NodePublishVolume', publishRequest(target));
  await callCsi(clients.node, 'NodeUnpublishVolume', { volume_id: 'vol-1', target_path: target });
  assert.equal(topMountAt(await readMountInfo(), target), undefined);
  assert.equal(await exists(target), false);
  await callCsi(clients.node, 'NodeUnpublishVolume', { volume_id: 'vol-1', target_path: target });
});

test('identity and node info of the node process', async () => {
  const info = await callCsi(clients.identity, 'GetPluginInfo', {});
  assert.equal(info.name, 'model.csi.example.org');
  assert.match(info.vendor_version, /^\d+\.\d+\.\d+/);
  assert.deepEqual((await callCsi(clients.identity, 'GetPluginCapabilities', {})).capabilities, []);
  assert.equal((await callCsi(clients.identity, 'Probe', {})).ready.value, true);
  const node = await callCsi(clients.node, 'NodeGetInfo', {});
  assert.equal(node.node_id, 'node-a');
  const caps = (await callCsi(clients.node, 'NodeGetCapabilities', {})).capabilities.map((c: { rpc: { type: string } }) => c.rpc.type);
  assert.deepEqual(caps.sort(), ['GET_VOLUME_STATS', 'VOLUME_CONDITION']);
});
