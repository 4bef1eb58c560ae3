import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { readMountInfo } from '../../../src/mount/mountinfo.js';
import { callCsi, closeClients, csiClients, spawnDriver, startDriver, stopDriver } from '../../helpers/driver-process.js';

// The process contract of `model-csi node|controller`: socket ownership, signals, and one
// clear stderr line for bad input. Needs root (read-only tmpfs mounts).
let work: string;

before(async () => {
  assert.equal(process.getuid?.(), 0, 'integration tests need root');
  work = await mkdtemp(join(tmpdir(), 'model-csi-proc-'));
});

after(async () => {
  for (const mount of (await readMountInfo()).filter((m) => m.mountPoint.startsWith(work)).reverse()) {
    execFileSync('/bin/umount', [mount.mountPoint]);
  }
  await rm(work, { recursive: true, force: true });
});

function nodeArgs(name: string, root = join(work, `${name}-root`)): string[] {
  return ['--endpoint', `unix://${work}/${name}.sock`, '--root', root, '--node-id', 'n1'];
}

async function failsWithOneLine(args: string[], pattern: RegExp, mode = 'node'): Promise<void> {
  const driver = spawnDriver(mode, args);
  const code = await driver.exited;
  assert.notEqual(code, 0);
  const lines = driver.stderr().trim().split('\n');
  assert.equal(lines.length, 1, `expected one stderr line, got:\n${driver.stderr()}`);
  assert.match(lines[0]!, pattern);
}

test('SIGTERM stops the server, removes the socket and exits 0', async () => {
  const driver = await startDriver('node', nodeArgs('term'));
  // Only root (kubelet, the sidecars) may talk to the driver: a pod that can reach the
  // plugin directory must not be able to unpublish other pods' volumes (the peer's #11).
  assert.equal((await stat(join(work, 'term.sock'))).mode & 0o777, 0o600);
  assert.equal(await stopDriver(driver, 'SIGTERM'), 0);
  await assert.rejects(stat(join(work, 'term.sock')), { code: 'ENOENT' });
});

test('a stale socket is removed at start; a live one is refused with one clear line', async () => {
  const first = await startDriver('node', nodeArgs('shared'));
  try {
    await failsWithOneLine(nodeArgs('shared', join(work, 'other-root')), /another live process serves .*shared\.sock/);
  } catch (err) {
    await stopDriver(first, 'SIGKILL'); // a failed check must not leave the driver (and this file) running
    throw err;
  }
  assert.equal(await stopDriver(first, 'SIGKILL'), 'SIGKILL');
  assert.ok((await stat(join(work, 'shared.sock'))).isSocket(), 'the killed driver left a stale socket');
  const second = await startDriver('node', nodeArgs('shared'));
  assert.equal(await stopDriver(second), 0);
});

test('bad flag, bad config and unusable roots each give one clear line', async () => {
  await failsWithOneLine([...nodeArgs('bad'), '--bogus'], /Unknown option '--bogus'/);
  const config = join(work, 'bad.yaml');
  await writeFile(config, 'publishWaitSeconds: lots\n');
  await failsWithOneLine([...nodeArgs('bad'), '--config', config], /config file .*publishWaitSeconds/);
  // A registry CA file is read once at start-up: a missing or non-PEM one stops it, not every pull later.
  const missingCa = join(work, 'missing-ca.yaml');
  await writeFile(missingCa, `registries:\n  registry.example.com:\n    ca: ${join(work, 'no-such-ca.pem')}\n`);
  await failsWithOneLine([...nodeArgs('bad'), '--config', missingCa], /cannot read the CA file .*no-such-ca\.pem of registries\."registry\.example\.com"\.ca \(ENOENT\)/);
  const notPem = join(work, 'not-pem.txt');
  await writeFile(notPem, 'hello\n');
  const notPemCa = join(work, 'not-pem-ca.yaml');
  await writeFile(notPemCa, `registries:\n  registry.example.com:\n    ca: ${notPem}\n`);
  await failsWithOneLine([...nodeArgs('bad'), '--config', notPemCa], /the CA file .*not-pem\.txt of registries\."registry\.example\.com"\.ca holds no PEM certificate/);
  const fileRoot = join(work, 'a-file');
  await writeFile(fileRoot, '');
  await failsWithOneLine(nodeArgs('bad', fileRoot), /cache root .*a-file is unusable: not a directory/);
  const readOnly = join(work, 'ro');
  await mkdir(readOnly);
  execFileSync('/bin/mount', ['-t', 'tmpfs', '-o', 'ro,size=1m', 'tmpfs', readOnly]);
  await failsWithOneLine(nodeArgs('bad', join(readOnly, 'root')), /cache root .* is unusable: not writable \(EROFS\)/);
  await failsWithOneLine(nodeArgs('bad', readOnly), /cache root .* is unusable: not writable \(EROFS\)/);
});

test('Probe reports not ready while the cache root is not writable', async () => {
  const root = join(work, 'probe-root');
  const driver = await startDriver('node', nodeArgs('probe', root));
  const clients = csiClients(driver.endpoint);
  try {
    assert.equal((await callCsi(clients.identity, 'Probe', {})).ready.value, true);
    execFileSync('/bin/mount', ['-t', 'tmpfs', '-o', 'ro,size=1m', 'tmpfs', root]);
    assert.equal((await callCsi(clients.identity, 'Probe', {})).ready.value, false);
  } finally {
    closeClients(clients);
    await stopDriver(driver);
  }
});

test('the controller process claims CONTROLLER_SERVICE and serves the Controller service', async () => {
  const driver = await startDriver('controller', ['--endpoint', `unix://${work}/controller.sock`, '--root', join(work, 'unused')]);
  const clients = csiClients(driver.endpoint);
  try {
    const caps = await callCsi(clients.identity, 'GetPluginCapabilities', {});
    assert.deepEqual(caps.capabilities.map((c: { service: { type: string } }) => c.service.type), ['CONTROLLER_SERVICE']);
    const ctrl = await callCsi(clients.controller, 'ControllerGetCapabilities', {});
    assert.deepEqual(ctrl.capabilities.map((c: { rpc: { type: string } }) => c.rpc.type), ['CREATE_DELETE_VOLUME']);
    await assert.rejects(callCsi(clients.node, 'NodeGetInfo', {}), { code: 12 }); // UNIMPLEMENTED: no Node service here
    await assert.rejects(stat(join(work, 'unused')), { code: 'ENOENT' }); // the controller has no cache
  } finally {
    closeClients(clients);
    assert.equal(await stopDriver(driver), 0);
  }
});
