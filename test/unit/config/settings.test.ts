import { strict as assert } from 'node:assert';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { isDriverError } from '../../../src/errors/driver-error.js';
import { parseCommandLine, parseListenAddress } from '../../../src/config/settings.js';
import { parseQuantity } from '../../../src/config/quantity.js';

const dir = mkdtempSync(join(tmpdir(), 'model-csi-config-'));
function configFile(text: string): string {
  const path = join(dir, `${Math.random().toString(36).slice(2)}.yaml`);
  writeFileSync(path, text);
  return path;
}

test('flags win over their env twins, env over defaults', () => {
  const env = { CSI_ENDPOINT: 'unix:///env.sock', NODE_ID: 'env-node', MODEL_CSI_ROOT: '/env/root' };
  const { settings } = parseCommandLine(['--node-id', 'flag-node'], env, 'host-1');
  assert.equal(settings.endpoint, 'unix:///env.sock');
  assert.equal(settings.nodeId, 'flag-node');
  assert.equal(settings.root, '/env/root');
  const defaults = parseCommandLine([], {}, 'host-1').settings;
  assert.equal(defaults.endpoint, 'unix:///csi/csi.sock');
  assert.equal(defaults.nodeId, 'host-1');
  assert.equal(defaults.root, '/var/lib/model-csi');
  assert.equal(defaults.config.maxConcurrentDownloads, 8);
});

test('the config file is parsed, validated and frozen', () => {
  const path = configFile(`
cacheBudget: 500Gi
maxConcurrentDownloads: 4
registries:
  registry.example.com:
    ca: /etc/model-csi/ca.pem
    mirrors: ["http://127.0.0.1:65001"]
  10.0.0.5:5000:
    insecure: true
`);
  const { settings } = parseCommandLine(['--config', path], {}, 'h');
  assert.equal(settings.config.cacheBudget, 500 * 2 ** 30);
  assert.equal(settings.config.maxConcurrentDownloads, 4);
  assert.deepEqual(settings.config.registries['registry.example.com']?.mirrors, ['http://127.0.0.1:65001']);
  assert.equal(settings.config.registries['10.0.0.5:5000']?.insecure, true);
  assert.ok(Object.isFrozen(settings.config.registries['registry.example.com']));
  assert.throws(() => {
    (settings.config as { maxConcurrentDownloads: number }).maxConcurrentDownloads = 1;
  }, TypeError);
});

test('bad input is one clear CONFIG_INVALID line naming the problem', () => {
  const cases: Array<[string[], RegExp]> = [
    [['--bogus'], /Unknown option '--bogus'/],
    [['--config', '/nonexistent/c.yaml'], /cannot read config file \/nonexistent\/c.yaml: ENOENT/],
    [['--config', configFile('cacheBudgett: 1Gi\n')], /Unrecognized key\(s\) in object: 'cacheBudgett'/],
    [['--config', configFile('cacheBudget: lots\n')], /cacheBudget: "lots" is not a byte quantity/],
    [['--config', configFile('maxConcurrentDownloads: 0\n')], /maxConcurrentDownloads/],
    [['--config', configFile('registries:\n  r.io:\n    mirrors: [not a url]\n')], /registries\.r\.io\.mirrors\.0/],
    [['--config', configFile('a: [\n')], /not valid YAML/],
    [['--endpoint', 'tcp://1.2.3.4:5'], /--endpoint must be unix:/],
    [['--metrics-addr', 'nonsense'], /--metrics-addr must be \[host\]:port/],
  ];
  for (const [argv, pattern] of cases) {
    try {
      parseCommandLine(argv, {}, 'h');
      assert.fail(`expected ${argv.join(' ')} to be refused`);
    } catch (err) {
      assert.ok(isDriverError(err, 'CONFIG_INVALID'), `${argv.join(' ')}: ${String(err)}`);
      assert.match((err as Error).message, pattern);
      assert.ok(!(err as Error).message.includes('\n'), 'one line');
    }
  }
});

test('quantities and listen addresses', () => {
  assert.equal(parseQuantity('1Ki'), 1024);
  assert.equal(parseQuantity('2G'), 2e9);
  assert.equal(parseQuantity('1.5Gi'), 1.5 * 2 ** 30);
  assert.equal(parseQuantity(42), 42);
  assert.throws(() => parseQuantity('5 apples'));
  assert.deepEqual(parseListenAddress(':9808'), { host: '0.0.0.0', port: 9808 });
  assert.deepEqual(parseListenAddress('[::1]:80'), { host: '::1', port: 80 });
  assert.deepEqual(parseListenAddress('127.0.0.1:0'), { host: '127.0.0.1', port: 0 });
});

test('self-registration with kubelet: off by default; the kubelet path defaults to the endpoint; paths must be absolute', () => {
  assert.equal(parseCommandLine([], {}, 'h').settings.registration, undefined);
  const onHost = parseCommandLine(['--registration-dir', '/var/lib/kubelet/plugins_registry', '--endpoint', 'unix:///run/x/csi.sock'], {}, 'h');
  assert.deepEqual(onHost.settings.registration, { dir: '/var/lib/kubelet/plugins_registry', kubeletEndpoint: '/run/x/csi.sock' });
  const inPod = parseCommandLine([], {
    MODEL_CSI_REGISTRATION_DIR: '/registration',
    MODEL_CSI_KUBELET_REGISTRATION_PATH: '/var/lib/kubelet/plugins/model.csi.example.org/csi.sock',
  }, 'h');
  assert.equal(inPod.settings.registration?.kubeletEndpoint, '/var/lib/kubelet/plugins/model.csi.example.org/csi.sock');
  for (const [argv, message] of [
    [['--registration-dir', 'relative'], /--registration-dir must be an absolute path/],
    [['--registration-dir', '/r', '--kubelet-registration-path', 'csi.sock'], /--kubelet-registration-path must be an absolute path/],
    [['--kubelet-registration-path', '/x.sock'], /--kubelet-registration-path needs --registration-dir/],
  ] as const) {
    assert.throws(() => parseCommandLine([...argv], {}, 'h'), (err: unknown) => isDriverError(err) && err.code === 'CONFIG_INVALID' && message.test(err.message));
  }
});

test('inCluster: only where kubelet put KUBERNETES_SERVICE_HOST in the environment (pod events are on only then)', () => {
  assert.equal(parseCommandLine([], {}, 'h').settings.inCluster, false);
  assert.equal(parseCommandLine([], { KUBERNETES_SERVICE_HOST: '' }, 'h').settings.inCluster, false);
  assert.equal(parseCommandLine([], { KUBERNETES_SERVICE_HOST: '10.96.0.1' }, 'h').settings.inCluster, true);
});

test('--kubeconfig, with KUBECONFIG as its env twin: the API server for a plugin outside a pod', () => {
  assert.equal(parseCommandLine([], {}, 'h').settings.kubeconfig, undefined);
  assert.equal(parseCommandLine([], { KUBECONFIG: '/etc/kube/admin.conf' }, 'h').settings.kubeconfig, '/etc/kube/admin.conf');
  assert.equal(parseCommandLine(['--kubeconfig', '/k.conf'], { KUBECONFIG: '/etc/kube/admin.conf' }, 'h').settings.kubeconfig, '/k.conf');
});
