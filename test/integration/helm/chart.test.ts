// The Helm chart, rendered by the real helm with default and with full values: lint, and the
// properties a broken install would hide until a pod hangs in ContainerCreating (socket paths
// that disagree, missing mount propagation, credentials in a ConfigMap, a typo'd value).
import { strict as assert } from 'node:assert';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import { parse as parseYaml } from 'yaml';
import { configFileSchema } from '../../../src/config/schema.js';
import {
  CHART, DRIVER, FULL_VALUES, container, flag, helm, mountHolding, one, render, volume,
  type K8sObject, type PodSpec, type Workload,
} from './render.js';

const SENTINEL_PASSWORD = 'S3cr3t-Sentinel-Password';
const chart = parseYaml(readFileSync(`${CHART}/Chart.yaml`, 'utf8')) as { version: string; appVersion: string };
const fullValues = parseYaml(readFileSync(FULL_VALUES, 'utf8')) as { kubeletDir: string; cacheRoot: string };

const renders: Record<string, { args: string[]; kubeletDir: string; cacheRoot: string }> = {
  default: { args: [], kubeletDir: '/var/lib/kubelet', cacheRoot: '/var/lib/model-csi' },
  full: { args: ['-f', FULL_VALUES], kubeletDir: fullValues.kubeletDir.replace(/\/$/, ''), cacheRoot: fullValues.cacheRoot },
};

const nodePod = (objects: K8sObject[]): PodSpec => one<Workload>(objects, 'DaemonSet', '-node').spec.template.spec;
const controllerPod = (objects: K8sObject[]): PodSpec => one<Workload>(objects, 'Deployment', '-controller').spec.template.spec;

describe('helm lint', () => {
  test('the chart lints clean with default values (--strict)', () => {
    const result = helm(['lint', '--strict', CHART]);
    assert.equal(result.status, 0, result.stdout + result.stderr);
    assert.match(result.stdout, /1 chart\(s\) linted, 0 chart\(s\) failed/);
  });

  test('the chart lints clean with every value set (--strict -f full-values.yaml)', () => {
    const result = helm(['lint', '--strict', '-f', FULL_VALUES, CHART]);
    assert.equal(result.status, 0, result.stdout + result.stderr);
    assert.doesNotMatch(result.stdout + result.stderr, /\[(WARNING|ERROR)\]/);
  });

  test('rendering with full values prints no coalesce warnings', () => {
    const result = helm(['template', 'mcsi', CHART, '-f', FULL_VALUES]);
    assert.equal(result.status, 0, result.stderr);
    assert.equal(result.stderr.trim(), '');
  });
});

for (const [label, { args, kubeletDir, cacheRoot }] of Object.entries(renders)) {
  describe(`rendered with ${label} values`, () => {
    const objects = render(args);
    const node = nodePod(objects);
    const driver = container(node, 'driver');
    // Default values: the driver registers itself; full-values.yaml: the sidecars.
    const selfRegistration = label === 'default';
    const registrar = selfRegistration ? undefined : container(node, 'node-driver-registrar');
    const liveness = selfRegistration ? undefined : container(node, 'liveness-probe');
    const pluginDir = `${kubeletDir}/plugins/${DRIVER}`;

    test('CSIDriver: no attach, pod info, both lifecycle modes, fsGroupPolicy None', () => {
      const csiDriver = one(objects, 'CSIDriver') as K8sObject & { spec: Record<string, unknown> };
      assert.equal(csiDriver.metadata.name, DRIVER);
      assert.deepEqual(csiDriver.spec, {
        attachRequired: false,
        podInfoOnMount: true,
        volumeLifecycleModes: ['Persistent', 'Ephemeral'],
        fsGroupPolicy: 'None',
        requiresRepublish: false,
        storageCapacity: false,
      });
    });

    test('the driver container is privileged and mounts the pods dir with Bidirectional propagation at its host path', () => {
      assert.equal(driver.securityContext?.['privileged'], true);
      assert.equal(driver.args?.[0], 'node');
      const pods = mountHolding(node, driver, `${kubeletDir}/pods/some-uid/volumes/kubernetes.io~csi/v/mount`);
      assert.equal(pods.mountPath, `${kubeletDir}/pods`, 'kubelet target paths are host paths: same path inside');
      assert.equal(pods.volume.hostPath?.path, `${kubeletDir}/pods`);
      const mount = driver.volumeMounts!.find((m) => m.mountPath === pods.mountPath)!;
      assert.equal(mount.mountPropagation, 'Bidirectional');
      // Only the pods dir propagates; no sidecar needs or gets it.
      const bidirectional = node.containers.flatMap((c) => (c.volumeMounts ?? []).filter((m) => m.mountPropagation === 'Bidirectional').map((m) => `${c.name}:${m.name}`));
      assert.deepEqual(bidirectional, [`driver:${mount.name}`]);
    });

    test('the cache root is a DirectoryOrCreate hostPath mounted where --root points', () => {
      const root = flag(driver, 'root');
      assert.equal(root, cacheRoot);
      const held = mountHolding(node, driver, root!);
      assert.equal(held.rest, '');
      assert.deepEqual(held.volume.hostPath, { path: cacheRoot, type: 'DirectoryOrCreate' });
    });

    test('node id comes from spec.nodeName', () => {
      assert.equal(flag(driver, 'node-id'), '$(NODE_ID)');
      const env = driver.env!.find((e) => e.name === 'NODE_ID');
      assert.deepEqual(env?.valueFrom, { fieldRef: { fieldPath: 'spec.nodeName' } });
    });

    test('socket paths agree: the driver\'s --endpoint and the path kubelet is told to dial', () => {
      const endpoint = flag(driver, 'endpoint');
      assert.match(endpoint ?? '', /^unix:\/\/\//);
      const driverSocket = endpoint!.slice('unix://'.length);
      const driverMount = mountHolding(node, driver, driverSocket);
      assert.equal(driverMount.volume.hostPath?.path, pluginDir, 'the socket lives in <kubeletDir>/plugins/<driver>');
      const hostSocket = `${pluginDir}/${driverMount.rest}`;
      if (selfRegistration) {
        assert.equal(flag(driver, 'kubelet-registration-path'), hostSocket, 'kubelet dials the host path of the same socket');
        return;
      }
      for (const sidecar of [registrar!, liveness!]) {
        const address = flag(sidecar, 'csi-address');
        assert.ok(address, `${sidecar.name} has --csi-address`);
        const held = mountHolding(node, sidecar, address!);
        assert.equal(held.volume.name, driverMount.volume.name, `${sidecar.name} mounts the driver's socket dir`);
        assert.equal(held.rest, driverMount.rest, `${sidecar.name} dials the same socket file`);
      }
      assert.equal(flag(registrar!, 'kubelet-registration-path'), hostSocket, 'kubelet dials the host path of the same socket');
    });

    test('the registration dir is <kubeletDir>/plugins_registry, mounted where the registering container serves it', () => {
      const registering = selfRegistration ? driver : registrar!;
      const dir = selfRegistration ? flag(driver, 'registration-dir')! : '/registration';
      const mount = registering.volumeMounts!.find((m) => m.mountPath === dir);
      assert.ok(mount, `${registering.name} mounts ${dir}`);
      assert.deepEqual(volume(node, mount.name).hostPath, { path: `${kubeletDir}/plugins_registry`, type: 'Directory' });
    });

    test(`${label}: ${selfRegistration ? 'one container, no sidecar; both probes on the driver /healthz' : 'registrar and livenessprobe sidecars; liveness through CSI Probe'}`, () => {
      const metricsPort = driver.ports!.find((p) => p.name === driver.readinessProbe?.httpGet?.port);
      assert.ok(metricsPort, 'readiness probe names a driver port');
      assert.equal(driver.readinessProbe?.httpGet?.path, '/healthz');
      assert.equal(driver.livenessProbe?.httpGet?.path, '/healthz');
      assert.equal(flag(driver, 'metrics-addr'), `:${metricsPort.containerPort}`);
      if (selfRegistration) {
        assert.deepEqual(node.containers.map((c) => c.name), ['driver']);
        assert.equal(driver.livenessProbe?.httpGet?.port, 'metrics');
        return;
      }
      assert.equal(flag(driver, 'registration-dir'), undefined, 'the driver does not register beside the registrar');
      const healthPort = liveness!.ports!.find((p) => p.name === driver.livenessProbe?.httpGet?.port);
      assert.ok(healthPort, 'liveness probe names the livenessprobe sidecar port');
      assert.equal(flag(liveness!, 'health-port'), String(healthPort.containerPort));
      const registrarPort = registrar!.ports!.find((p) => p.name === registrar!.livenessProbe?.httpGet?.port);
      assert.equal(flag(registrar!, 'http-endpoint'), `:${registrarPort?.containerPort}`);
      const ports = node.containers.flatMap((c) => (c.ports ?? []).map((p) => p.containerPort));
      assert.equal(new Set(ports).size, ports.length, 'no two containers listen on one port (matters with hostNetwork)');
    });

    test('runs everywhere and stays scheduled: tolerations, system-node-critical, resources on every container', () => {
      if (label === 'default') assert.deepEqual(node.tolerations, [{ operator: 'Exists' }]);
      else assert.ok((node.tolerations ?? []).length > 0);
      assert.equal(node.priorityClassName, 'system-node-critical');
      for (const c of [...node.containers, ...controllerPod(objects).containers]) {
        assert.ok(c.resources?.requests?.['memory'] && c.resources.requests['cpu'], `${c.name} has requests`);
        assert.ok(c.resources?.limits?.['memory'], `${c.name} has a memory limit`);
      }
    });

    test('every kubelet path derives from kubeletDir', () => {
      const hostPaths = node.volumes.flatMap((v) => (v.hostPath ? [v.hostPath.path] : []));
      for (const path of hostPaths.filter((p) => p !== cacheRoot)) {
        assert.ok(path.startsWith(`${kubeletDir}/`), `${path} is under ${kubeletDir}`);
      }
      if (kubeletDir !== '/var/lib/kubelet') {
        assert.ok(!JSON.stringify(objects).includes('/var/lib/kubelet/'), 'no default kubelet path left behind');
      }
      const paths = [
        ...hostPaths,
        ...node.containers.flatMap((c) => [
          ...(c.volumeMounts ?? []).map((m) => m.mountPath),
          ...(c.args ?? []).map((a) => a.replace(/^--[\w-]+=/, '').replace(/^[a-z]+:\/\//, '')),
        ]),
      ];
      for (const path of paths) assert.ok(!path.includes('//'), `no doubled slash (from a trailing / in kubeletDir): ${path}`);
    });

    test('the rendered config file is valid for the driver, and every path it names is mounted', () => {
      const configPath = flag(driver, 'config')!;
      const held = mountHolding(node, driver, configPath);
      const configMap = one(objects, 'ConfigMap', held.volume.configMap!.name) as K8sObject & { data: Record<string, string> };
      const parsed = configFileSchema.safeParse(parseYaml(configMap.data[held.rest]!));
      assert.ok(parsed.success, `config.yaml rejected by src/config/schema.ts: ${JSON.stringify(!parsed.success && parsed.error.issues)}`);
      const config = parsed.data;
      if (config.dockerConfig !== undefined) {
        const auth = mountHolding(node, driver, config.dockerConfig);
        assert.ok(auth.volume.secret, 'dockerConfig is mounted from a Secret');
        assert.deepEqual(auth.volume.secret.items, [{ key: '.dockerconfigjson', path: auth.rest }]);
        assert.equal(driver.volumeMounts!.find((m) => m.name === auth.volume.name)?.readOnly, true);
      }
      for (const [host, registry] of Object.entries(config.registries)) {
        if (registry.ca === undefined) continue;
        const ca = mountHolding(node, driver, registry.ca);
        const source = one(objects, 'ConfigMap', ca.volume.configMap!.name) as K8sObject & { data: Record<string, string> };
        assert.match(source.data[ca.rest] ?? '', /BEGIN CERTIFICATE/, `registries.${host}.ca points at a mounted PEM`);
      }
      if (label === 'full') assert.deepEqual(config.verify.map((rule) => rule.match), ['harbor.example.com/experimental/*', 'harbor.example.com/models/**']);
      // The connection caps and the ranged threshold reach the driver (parsed: 256Mi is bytes).
      const ranged = label === 'full' ? [64, 24, 256 * 2 ** 20] : [32, 16, 64 * 2 ** 20];
      assert.deepEqual([config.maxConnectionsPerNode, config.maxConnectionsPerRegistry, config.rangedMinBlobSize], ranged);
      for (const [i, rule] of config.verify.entries()) {
        for (const path of rule.keys) {
          const key = mountHolding(node, driver, path);
          const source = one(objects, 'ConfigMap', key.volume.configMap!.name) as K8sObject & { data: Record<string, string> };
          assert.match(source.data[key.rest] ?? '', /BEGIN PUBLIC KEY/, `verify[${i}].keys points at a mounted public key, from a ConfigMap (not a secret)`);
          assert.equal(driver.volumeMounts!.find((m) => m.name === key.volume.name)?.readOnly, true);
        }
      }
    });

    test('no credentials in any ConfigMap; the docker config only in a kubernetes.io/dockerconfigjson Secret', () => {
      for (const cm of objects.filter((o) => o.kind === 'ConfigMap')) {
        const text = JSON.stringify(cm);
        assert.doesNotMatch(text, /auths|password|\.dockerconfigjson|"auth"/i, `${cm.metadata.name} holds no docker config`);
        assert.ok(!text.includes(SENTINEL_PASSWORD) && !text.includes(Buffer.from(SENTINEL_PASSWORD).toString('base64').slice(0, 16)));
      }
      for (const o of objects.filter((x) => x.kind !== 'Secret')) {
        assert.ok(!JSON.stringify(o).includes(SENTINEL_PASSWORD), `${o.kind}/${o.metadata.name} holds no credential`);
      }
      const secrets = objects.filter((o) => o.kind === 'Secret') as (K8sObject & { type: string; data: Record<string, string> })[];
      if (label === 'full') {
        assert.equal(secrets.length, 1);
        assert.equal(secrets[0]!.type, 'kubernetes.io/dockerconfigjson');
        const decoded = JSON.parse(Buffer.from(secrets[0]!.data['.dockerconfigjson']!, 'base64').toString('utf8'));
        assert.equal(decoded.auths['harbor.example.com'].password, SENTINEL_PASSWORD);
      } else {
        assert.equal(secrets.length, 0, 'no auth configured: no Secret');
      }
    });

    test('controller: csi-provisioner dials the driver endpoint, with metadata, leader election, a long timeout', () => {
      const pod = controllerPod(objects);
      const ctl = container(pod, 'driver');
      const provisioner = container(pod, 'csi-provisioner');
      assert.equal(ctl.args?.[0], 'controller');
      const socket = flag(ctl, 'endpoint')!.slice('unix://'.length);
      const ctlMount = mountHolding(pod, ctl, socket);
      const provMount = mountHolding(pod, provisioner, flag(provisioner, 'csi-address')!);
      assert.equal(provMount.volume.name, ctlMount.volume.name);
      assert.equal(provMount.rest, ctlMount.rest);
      assert.ok(ctlMount.volume.emptyDir, 'the controller socket is private to the pod');
      assert.equal(flag(provisioner, 'extra-create-metadata'), '');
      assert.equal(flag(provisioner, 'leader-election'), '');
      const timeout = flag(provisioner, 'timeout')!;
      const seconds = Number(timeout.slice(0, -1)) * (timeout.endsWith('m') ? 60 : 1);
      assert.ok(seconds >= 120, `--timeout=${timeout} is at least 120s`);
      assert.notEqual(ctl.securityContext?.['privileged'], true);
      assert.equal(ctl.securityContext?.['readOnlyRootFilesystem'], true);
    });

    test('RBAC: csi-provisioner gets what it needs; the node account may create and patch events and do its ModelCache part, nothing else', () => {
      const pod = controllerPod(objects);
      type Role = K8sObject & { rules: { apiGroups: string[]; resources: string[]; verbs: string[] }[] };
      const role = one(objects, 'ClusterRole', '-provisioner') as Role;
      const allowed = (group: string, resource: string, verb: string): boolean =>
        role.rules.some((r) => r.apiGroups.includes(group) && r.resources.includes(resource) && r.verbs.includes(verb));
      for (const verb of ['get', 'list', 'watch', 'create', 'delete']) assert.ok(allowed('', 'persistentvolumes', verb), `pv ${verb}`);
      for (const verb of ['get', 'list', 'watch', 'update']) assert.ok(allowed('', 'persistentvolumeclaims', verb), `pvc ${verb}`);
      for (const verb of ['get', 'list', 'watch']) {
        assert.ok(allowed('storage.k8s.io', 'storageclasses', verb));
        assert.ok(allowed('storage.k8s.io', 'csinodes', verb));
        assert.ok(allowed('', 'nodes', verb));
      }
      for (const verb of ['list', 'watch', 'create', 'update', 'patch']) assert.ok(allowed('', 'events', verb), `events ${verb}`);
      assert.ok(!allowed('storage.k8s.io', 'volumeattachments', 'get'), 'no volumeattachments: attachRequired is false');
      assert.ok(!role.rules.some((r) => r.verbs.includes('*') || r.resources.includes('*')), 'no wildcards');
      const secretsRule = role.rules.find((r) => r.resources.includes('secrets'));
      if (label === 'full') assert.deepEqual(secretsRule?.verbs, ['get'], 'a provisionerSecret class: get Secrets, nothing more');
      else assert.equal(secretsRule, undefined, 'no provisioner secrets: no access to Secrets');

      const leases = one(objects, 'Role') as K8sObject & { rules: { apiGroups: string[]; resources: string[] }[] };
      assert.equal(leases.metadata.namespace, 'model-csi');
      assert.deepEqual(leases.rules.map((r) => [r.apiGroups, r.resources]), [[['coordination.k8s.io'], ['leases']]]);

      const nodeRole = one(objects, 'ClusterRole', '-node') as Role;
      assert.deepEqual(nodeRole.rules, [
        { apiGroups: [''], resources: ['events'], verbs: ['create', 'patch'] },
        // modelCache.enabled (the default): watch caches, write own status entry, own labels, named Secrets only
        { apiGroups: ['model.csi.example.org'], resources: ['modelcaches'], verbs: ['get', 'list', 'watch'] },
        { apiGroups: ['model.csi.example.org'], resources: ['modelcaches/status'], verbs: ['patch'] },
        { apiGroups: [''], resources: ['nodes'], verbs: ['get'] },
        { apiGroups: [''], resources: ['secrets'], verbs: ['get'] },
      ]);
      const summaryRole = one(objects, 'ClusterRole', '-modelcache-summary') as Role;
      assert.deepEqual(summaryRole.rules, [
        { apiGroups: ['model.csi.example.org'], resources: ['modelcaches'], verbs: ['get', 'list', 'watch'] },
        { apiGroups: ['model.csi.example.org'], resources: ['modelcaches/status'], verbs: ['patch'] },
        { apiGroups: ['storage.k8s.io'], resources: ['csinodes'], verbs: ['list'] },
        { apiGroups: [''], resources: ['nodes'], verbs: ['list'] },
      ]);
      type Binding = K8sObject & { subjects: { name: string }[]; roleRef: { name: string } };
      const bindings = objects.filter((o) => o.kind === 'ClusterRoleBinding' || o.kind === 'RoleBinding') as Binding[];
      const boundTo = (account: string) => bindings.filter((b) => b.subjects.some((s) => s.name === account)).map((b) => b.roleRef.name);
      assert.deepEqual(new Set(bindings.flatMap((b) => b.subjects.map((s) => s.name))), new Set([pod.serviceAccountName, node.serviceAccountName]));
      assert.deepEqual(boundTo(node.serviceAccountName!), [nodeRole.metadata.name], 'the node account is bound to its own role only');
      assert.ok(boundTo(pod.serviceAccountName!).includes(summaryRole.metadata.name), 'the controller account keeps the summaries');
      assert.equal(node.automountServiceAccountToken, true, 'the token for events');
    });

    test('images: the driver tag defaults to appVersion; node and controller run the same image', () => {
      const expected = label === 'default' ? `ghcr.io/example/model-csi:${chart.appVersion}` : 'registry.example.com/platform/model-csi:0.1.0-rc1';
      assert.equal(driver.image, expected);
      assert.equal(container(controllerPod(objects), 'driver').image, expected);
      assert.equal(chart.appVersion, '0.1.0');
    });
  });
}

describe('values-driven objects', () => {
  test('StorageClasses: one per entry, prefixed parameters, secret refs, Delete and Immediate', () => {
    const classes = render(['-f', FULL_VALUES]).filter((o) => o.kind === 'StorageClass') as (K8sObject & Record<string, any>)[];
    assert.deepEqual(classes.map((c) => c.metadata.name), ['qwen2-5-0-5b', 'minilm']);
    for (const sc of classes) {
      assert.equal(sc['provisioner'], DRIVER);
      assert.equal(sc['reclaimPolicy'], 'Delete');
      assert.equal(sc['volumeBindingMode'], 'Immediate');
      for (const key of Object.keys(sc['parameters'])) assert.match(key, /^(model\.csi\.example\.org|csi\.storage\.k8s\.io)\//);
    }
    assert.deepEqual(classes[0]!['parameters'], {
      'model.csi.example.org/reference': 'harbor.example.com/models/qwen2.5-0.5b:v1',
      'model.csi.example.org/subPath': 'weights',
      'model.csi.example.org/include': '*.safetensors,*.json',
      'model.csi.example.org/exclude': 'original/*',
      'model.csi.example.org/pullPolicy': 'IfNotPresent',
      'csi.storage.k8s.io/provisioner-secret-name': 'registry-creds',
      'csi.storage.k8s.io/provisioner-secret-namespace': 'model-csi',
      'csi.storage.k8s.io/node-publish-secret-name': 'registry-creds',
      'csi.storage.k8s.io/node-publish-secret-namespace': '${pvc.namespace}',
    });
    assert.equal(render().filter((o) => o.kind === 'StorageClass').length, 0, 'none by default');
  });

  test('ServiceMonitor: off by default; when on, its Service selects the driver pods', () => {
    assert.equal(render().filter((o) => o.kind === 'ServiceMonitor' || o.kind === 'Service').length, 0);
    const objects = render(['-f', FULL_VALUES]);
    const service = one(objects, 'Service') as K8sObject & { spec: { selector: Record<string, string>; ports: { port: number }[] } };
    const monitor = one(objects, 'ServiceMonitor') as K8sObject & { spec: { selector: { matchLabels: Record<string, string> }; endpoints: { port: string }[] } };
    for (const [k, v] of Object.entries(monitor.spec.selector.matchLabels)) assert.equal(service.metadata.labels?.[k], v);
    for (const workload of [one<Workload>(objects, 'DaemonSet'), one<Workload>(objects, 'Deployment')]) {
      const labels = workload.spec.template.metadata.labels;
      for (const [k, v] of Object.entries(service.spec.selector)) assert.equal(labels[k], v, `${workload.kind} pods selected`);
    }
    assert.equal(service.spec.ports[0]!.port, 9100);
    assert.equal(monitor.metadata.labels?.['release'], 'prometheus');
  });

  test('auth.existingSecret is mounted as is and no Secret is made', () => {
    const objects = render(['--set', 'auth.existingSecret=team-registry']);
    assert.equal(objects.filter((o) => o.kind === 'Secret').length, 0);
    for (const pod of [nodePod(objects), controllerPod(objects)]) {
      const auth = pod.volumes.find((v) => v.secret?.secretName === 'team-registry');
      assert.ok(auth, 'the existing Secret is a volume');
    }
  });

  test('modelCache.enabled=false: the config says so and no RBAC for it is made (events stay)', () => {
    const objects = render(['--set', 'modelCache.enabled=false']);
    type Role = K8sObject & { rules: { resources: string[] }[] };
    assert.deepEqual((one(objects, 'ClusterRole', '-node') as Role).rules.map((r) => r.resources), [['events']]);
    assert.equal(objects.filter((o) => o.metadata.name.endsWith('-modelcache-summary')).length, 0);
    const configMap = one(objects, 'ConfigMap', '-config') as K8sObject & { data: Record<string, string> };
    assert.deepEqual(configFileSchema.parse(parseYaml(configMap.data['config.yaml']!)).modelCache, { enabled: false });
  });

  test('the ModelCache CRD: cluster-scoped v1alpha1 with a status subresource, READY/DIGEST/AGE columns, the node map-list, and a spec schema without open ends', () => {
    const crd = parseYaml(readFileSync(`${CHART}/crds/modelcaches.yaml`, 'utf8')) as {
      spec: { group: string; scope: string; names: { kind: string; plural: string }; versions: Array<{ name: string; subresources: unknown; additionalPrinterColumns: { name: string; jsonPath: string }[]; schema: { openAPIV3Schema: Schema } }> };
    };
    type Schema = { type?: string; properties?: Record<string, Schema>; items?: Schema; additionalProperties?: unknown; 'x-kubernetes-preserve-unknown-fields'?: boolean; 'x-kubernetes-list-type'?: string; 'x-kubernetes-list-map-keys'?: string[]; required?: string[] };
    assert.equal(crd.spec.group, 'model.csi.example.org');
    assert.equal(crd.spec.scope, 'Cluster');
    assert.equal(crd.spec.names.kind, 'ModelCache');
    const [version] = crd.spec.versions;
    assert.equal(version!.name, 'v1alpha1');
    assert.deepEqual(version!.subresources, { status: {} });
    const columns = Object.fromEntries(version!.additionalPrinterColumns.map((c) => [c.name, c.jsonPath]));
    assert.equal(columns['Ready'], '.status.ready');
    assert.equal(columns['Digest'], '.status.digest');
    assert.equal(columns['Age'], '.metadata.creationTimestamp');
    const root = version!.schema.openAPIV3Schema;
    const spec = root.properties!['spec']!;
    assert.deepEqual(Object.keys(spec.properties!).sort(), ['exclude', 'include', 'nodeSelector', 'pin', 'pullSecretRef', 'reference', 'refreshInterval']);
    assert.deepEqual(spec.required, ['reference']);
    // Typos are refused only where nothing preserves unknown fields (structural pruning + kubectl's strict validation).
    const open = (schema: Schema, path: string): string[] =>
      [schema['x-kubernetes-preserve-unknown-fields'] ? [path] : [], ...Object.entries(schema.properties ?? {}).map(([k, v]) => open(v, `${path}.${k}`)), schema.items ? open(schema.items, `${path}[]`) : []].flat();
    assert.deepEqual(open(root, ''), []);
    const nodes = root.properties!['status']!.properties!['nodes']!;
    assert.equal(nodes['x-kubernetes-list-type'], 'map', 'a map-list: each node applies its own entry');
    assert.deepEqual(nodes['x-kubernetes-list-map-keys'], ['node']);
    assert.deepEqual(Object.keys(nodes.items!.properties!).sort(), ['bytes', 'digest', 'lastTransitionTime', 'message', 'node', 'phase', 'progress']);
  });

  test('hostNetwork switches the DNS policy so cluster names still resolve', () => {
    const pod = nodePod(render(['--set', 'node.hostNetwork=true']));
    assert.equal(pod.hostNetwork, true);
    assert.equal(pod.dnsPolicy, 'ClusterFirstWithHostNet');
  });
});

describe('values.schema.json and template checks refuse bad values', () => {
  const refused: [string, string[], RegExp][] = [
    ['a typo at the top level', ['--set', 'cacheBudgett=100Gi'], /cacheBudgett/],
    ['a typo under node', ['--set', 'node.tolerationz[0].operator=Exists'], /tolerationz/],
    ['a typo in a registry entry', ['--set', 'registries.harbor\\.example\\.com.insecrue=true'], /insecrue/],
    ['a typo under metrics.serviceMonitor', ['--set', 'metrics.serviceMonitor.enable=true'], /enable/],
    ['publishWaitSeconds past kubelet\'s deadline', ['--set', 'publishWaitSeconds=300'], /publishWaitSeconds/],
    ['an unknown log level', ['--set', 'logLevel=verbose'], /logLevel/],
    ['a relative kubeletDir', ['--set', 'kubeletDir=var/lib/kubelet'], /kubeletDir/],
    ['a bad cache budget', ['--set', 'cacheBudget=lots'], /cacheBudget/],
    ['no connections to a registry', ['--set', 'maxConnectionsPerRegistry=0'], /maxConnectionsPerRegistry/],
    ['a StorageClass without a reference', ['--set', 'storageClasses[0].name=x'], /reference/],
    ['both auth sources', ['--set', 'auth.existingSecret=a', '--set', 'auth.dockerconfigjson=b'], /existingSecret or dockerconfigjson/],
    ['a registry CA naming no customCA key', ['--set', 'registries.h\\.io.ca=missing.pem'], /customCA/],
    ['a verify key naming no verifyKeys key', ['--set', 'verify[0].match=h.io/**', '--set', 'verify[0].keys[0]=release.pub'], /verifyKeys is empty/],
    ['a typo in a verify rule', ['--set', 'verify[0].match=h.io/**', '--set', 'verify[0].key[0]=/k.pub'], /key/],
    ['two verify key sources', ['--set', 'verifyKeys.existingSecret=a', '--set', 'verifyKeys.existingConfigMap=b'], /verifyKeys: set one of/],
  ];
  for (const [what, args, message] of refused) {
    test(`${what} fails helm template`, () => {
      const result = helm(['template', 'mcsi', CHART, ...args]);
      assert.notEqual(result.status, 0, `helm template ${args.join(' ')} should fail`);
      assert.match(result.stderr, message);
    });
  }
});
