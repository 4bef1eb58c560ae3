import assert from 'node:assert/strict';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { credentials, type Client } from '@grpc/grpc-js';
import { registrationService } from '../../../src/kubelet/plugin-registration.js';
import { freePort } from '../../helpers/registry.js';
import { callCsi, startDriver, stopDriver, type DriverProcess } from '../../helpers/driver-process.js';

// The node plugin registering itself with kubelet (plugin registration v1), called here the
// way kubelet's plugin watcher calls it. The cluster e2e (test/cluster) has a real kubelet do it.
let work: string;
let driver: DriverProcess;
let client: Client;
let metricsPort: number;
const KUBELET_SEES = '/var/lib/kubelet/plugins/model.csi.example.org/csi.sock';

before(async () => {
  work = await mkdtemp(join(tmpdir(), 'model-csi-registration-'));
  metricsPort = await freePort();
  driver = await startDriver('node', [
    '--endpoint', `unix://${work}/plugin/csi.sock`,
    '--root', join(work, 'root'),
    '--registration-dir', join(work, 'plugins_registry'),
    '--kubelet-registration-path', KUBELET_SEES,
    '--metrics-addr', `127.0.0.1:${metricsPort}`,
  ]);
  const Registration = registrationService();
  client = new Registration(`unix://${join(work, 'plugins_registry', 'model.csi.example.org-reg.sock')}`, credentials.createInsecure());
});

after(async () => {
  client.close();
  await stopDriver(driver);
  await rm(work, { recursive: true, force: true });
});

async function healthz(): Promise<{ status: number; body: string }> {
  const res = await fetch(`http://127.0.0.1:${metricsPort}/healthz`);
  return { status: res.status, body: await res.text() };
}

test('GetInfo names the driver, the CSI socket as kubelet sees it, and CSI 1.0.0', async () => {
  const info = await callCsi(client, 'GetInfo', {});
  assert.deepEqual(
    { type: info.type, name: info.name, endpoint: info.endpoint, versions: info.supported_versions },
    { type: 'CSIPlugin', name: 'model.csi.example.org', endpoint: KUBELET_SEES, versions: ['1.0.0'] },
  );
  assert.equal((await stat(join(work, 'plugins_registry', 'model.csi.example.org-reg.sock'))).mode & 0o777, 0o600);
});

test('/healthz fails with kubelet\'s reason after a refused registration, and recovers when it registers', async () => {
  assert.equal((await healthz()).status, 200, 'waiting for kubelet is healthy at first');
  await callCsi(client, 'NotifyRegistrationStatus', { plugin_registered: false, error: 'driver name model.csi.example.org already registered' });
  const refused = await healthz();
  assert.equal(refused.status, 503);
  assert.match(refused.body, /kubelet refused the registration: driver name model\.csi\.example\.org already registered/);
  assert.match(driver.stderr(), /kubelet refused to register the driver/);
  await callCsi(client, 'NotifyRegistrationStatus', { plugin_registered: true, error: '' });
  assert.deepEqual(await healthz(), { status: 200, body: 'ok\n' });
});

test('SIGTERM removes the registration socket (kubelet then unregisters the plugin)', async () => {
  assert.equal(await stopDriver(driver), 0);
  await assert.rejects(stat(join(work, 'plugins_registry', 'model.csi.example.org-reg.sock')), { code: 'ENOENT' });
});
