import { strict as assert } from 'node:assert';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { isDriverError } from '../../../src/errors/driver-error.js';
import { apiServerConfig } from '../../../src/kube/api-server.js';

// Where the API server comes from decides whether events and ModelCache are on: the real
// service-account path is exercised by the cluster e2e (test/cluster/), the kubeconfig path by
// its second node plugin process.

test('no pod and no kubeconfig: off, with the reason the log gives once', () => {
  const result = apiServerConfig({ inCluster: false, kubeconfig: undefined });
  assert.ok('unavailable' in result);
  assert.match(result.unavailable, /not running in a pod .* no --kubeconfig/);
});

test('a kubeconfig file: its current context and cluster', () => {
  const dir = mkdtempSync(join(tmpdir(), 'mcsi-kubeconfig-'));
  const path = join(dir, 'config');
  writeFileSync(
    path,
    'apiVersion: v1\nkind: Config\ncurrent-context: c\nclusters: [{name: k, cluster: {server: "https://127.0.0.1:6443"}}]\n' +
      'users: [{name: u, user: {token: t}}]\ncontexts: [{name: c, context: {cluster: k, user: u}}]\n',
  );
  const result = apiServerConfig({ inCluster: false, kubeconfig: path });
  assert.ok(!('unavailable' in result));
  assert.equal(result.getCurrentCluster()?.server, 'https://127.0.0.1:6443');
});

test('an unreadable --kubeconfig is CONFIG_INVALID naming the file (asked for by name, not quietly off)', () => {
  assert.throws(
    () => apiServerConfig({ inCluster: false, kubeconfig: '/nonexistent/kubeconfig' }),
    (err: unknown) => isDriverError(err, 'CONFIG_INVALID') && /cannot load --kubeconfig \/nonexistent\/kubeconfig/.test(err.message),
  );
});
