import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmod, mkdir, mkdtemp, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { readMountInfo, topMountAt, type MountInfo } from '../../../src/mount/mountinfo.js';
import { pushModelPack } from '../../helpers/artifacts.js';
import { startRegistry, type TestRegistry } from '../../helpers/registry.js';
import { callCsi, closeClients, csiClients, startDriver, stopDriver, type CsiClients, type DriverProcess } from '../../helpers/driver-process.js';

// The node plugin as the chart runs it: in a mount namespace of its own whose kubelet dir is a
// shared peer of the host's (Bidirectional propagation). Propagation carries mounts, not a later
// remount, so what counts is the host's copy of each target: this test is the host, and reads
// its own mount table. The driver runs under `unshare -m --propagation unchanged`, which keeps
// the kubelet dir in the same peer group as ours.
let registry: TestRegistry;
let work: string;
let kubelet: string;
let root: string;
let reference: string;
let driver: DriverProcess;
let clients: CsiClients;

const UNSHARE = ['unshare', '-m', '--propagation', 'unchanged'];

function args(): string[] {
  return ['--endpoint', `unix://${work}/csi.sock`, '--root', root, '--node-id', 'node-a'];
}

function publishRequest(target: string) {
  return {
    volume_id: 'vol-host',
    target_path: target,
    volume_capability: { mount: {}, access_mode: { mode: 'SINGLE_NODE_WRITER' } },
    // Neither the CSI volume nor the consumer's volumeMount asks for read-only: the mount must be anyway.
    readonly: false,
    volume_context: { 'model.csi.example.org/reference': reference, 'csi.storage.k8s.io/ephemeral': 'true' },
  };
}

/** A target as kubelet gives it: its parent directory exists, the target does not. */
async function targetPath(pod: string): Promise<string> {
  const parent = join(kubelet, 'pods', pod, 'volumes', 'kubernetes.io~csi', 'model');
  await mkdir(parent, { recursive: true });
  return join(parent, 'mount');
}

/** The driver's own view: its namespace's mount table. */
async function driverMounts(): Promise<MountInfo[]> {
  return readMountInfo(`/proc/${driver.child.pid}/mountinfo`);
}

function under(mounts: MountInfo[], dir: string): string[] {
  return mounts.filter((m) => m.mountPoint === dir || m.mountPoint.startsWith(dir + '/')).map((m) => m.mountPoint);
}

async function startInNamespace(): Promise<void> {
  driver = await startDriver('node', args(), {}, { wrapper: UNSHARE });
  clients = csiClients(driver.endpoint);
}

before(async () => {
  assert.equal(process.getuid?.(), 0, 'integration tests need root: they make real mounts and namespaces');
  work = await mkdtemp(join(tmpdir(), 'model-csi-hostview-'));
  kubelet = join(work, 'kubelet');
  root = join(work, 'cache');
  await mkdir(join(kubelet, 'pods'), { recursive: true });
  // The host side of Bidirectional propagation: the kubelet dir is a shared mount.
  execFileSync('mount', ['--bind', kubelet, kubelet]);
  execFileSync('mount', ['--make-shared', kubelet]);
  registry = await startRegistry();
  const pushed = await pushModelPack({ url: registry.url }, 'models/hostview', 'v1', [
    { path: 'config.json', content: '{"model":"hostview"}', format: 'raw', role: 'weight.config' },
    { path: 'weights/w.safetensors', content: Buffer.alloc(4096, 7), format: 'raw', role: 'weight' },
  ]);
  reference = `${registry.host}/models/hostview@${pushed.digest}`;
  await startInNamespace();
});

after(async () => {
  closeClients(clients);
  await stopDriver(driver, 'SIGKILL');
  for (const mount of (await readMountInfo()).filter((m) => m.mountPoint.startsWith(work)).reverse()) {
    execFileSync('umount', ['-l', mount.mountPoint]);
  }
  await rm(work, { recursive: true, force: true });
  await registry.stop();
});

test("the host's copy of a target is ro,nosuid,nodev and refuses create, overwrite, chmod and rename (EROFS)", async () => {
  const target = await targetPath('pod-a');
  await callCsi(clients.node, 'NodePublishVolume', publishRequest(target));
  const hostMount = topMountAt(await readMountInfo(), target);
  assert.ok(hostMount, 'the mount did not propagate to the host');
  for (const option of ['ro', 'nosuid', 'nodev']) {
    assert.ok(hostMount.options.includes(option), `the host sees ${target} as ${hostMount.options.join(',')}: missing ${option}`);
  }
  assert.equal(await readFile(join(target, 'config.json'), 'utf8'), '{"model":"hostview"}');
  await assert.rejects(writeFile(join(target, 'new.txt'), 'x'), { code: 'EROFS' }, 'create');
  await assert.rejects(writeFile(join(target, 'config.json'), 'poisoned'), { code: 'EROFS' }, 'overwrite');
  await assert.rejects(chmod(join(target, 'config.json'), 0o666), { code: 'EROFS' }, 'chmod');
  await assert.rejects(rename(join(target, 'config.json'), join(target, 'moved.json')), { code: 'EROFS' }, 'rename');
  assert.equal(await readFile(join(target, 'config.json'), 'utf8'), '{"model":"hostview"}');
  // No staging mount stays behind in the driver's namespace: only the target is mounted.
  assert.deepEqual(under(await driverMounts(), root), [], 'a staging mount was left in the driver namespace');
});

test('a restarted driver in a new namespace finds the volume again; unpublish leaves no mount in either namespace', async () => {
  const target = await targetPath('pod-a');
  closeClients(clients);
  await stopDriver(driver, 'SIGKILL');
  await startInNamespace();
  // Recovered from its record and the (propagated) mount: the same publish is OK and stacks nothing.
  await callCsi(clients.node, 'NodePublishVolume', publishRequest(target));
  assert.equal((await readMountInfo()).filter((m) => m.mountPoint === target).length, 1, 'a second mount was stacked on the target');
  const stats = await callCsi(clients.node, 'NodeGetVolumeStats', { volume_id: 'vol-host', volume_path: target });
  assert.equal(stats.volume_condition.abnormal, false, stats.volume_condition.message);

  await callCsi(clients.node, 'NodeUnpublishVolume', { volume_id: 'vol-host', target_path: target });
  assert.deepEqual(under(await readMountInfo(), join(kubelet, 'pods')), [], 'the host still has a mount under the pods dir');
  assert.deepEqual(under(await driverMounts(), join(kubelet, 'pods')), [], 'the driver namespace still has a mount under the pods dir');
  assert.deepEqual(under(await driverMounts(), root), [], 'the driver namespace still has a staging mount');
  await assert.rejects(stat(target), { code: 'ENOENT' });
});

test('a staging mount left by a crash is removed when the driver starts', async () => {
  // A driver killed between staging and the target bind, in the host's own namespace (the
  // host-process mode), leaves a bind mount of a model under <root>/staging.
  const model = join(root, 'models', 'sha256', (await readdir(join(root, 'models', 'sha256')))[0]!);
  const stale = join(root, 'staging', 'stale-1234');
  await mkdir(stale, { recursive: true });
  execFileSync('mount', ['--bind', model, stale]);
  closeClients(clients);
  await stopDriver(driver, 'SIGKILL');
  driver = await startDriver('node', args());
  clients = csiClients(driver.endpoint);
  assert.deepEqual(under(await readMountInfo(), join(root, 'staging')), [], 'the stale staging mount is still there');
  await assert.rejects(stat(stale), { code: 'ENOENT' });
});
