// Runs the real `helm` against deploy/helm/model-csi and parses what it renders. A missing
// helm is a failure naming the install step, never a skip.
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments } from 'yaml';

export const REPO = fileURLToPath(new URL('../../../', import.meta.url));
export const CHART = `${REPO}deploy/helm/model-csi`;
export const FULL_VALUES = `${REPO}test/integration/helm/full-values.yaml`;
export const DRIVER = 'model.csi.example.org';

export interface HelmResult {
  status: number;
  stdout: string;
  stderr: string;
}

export function helm(args: string[]): HelmResult {
  const result = spawnSync('helm', args, { cwd: REPO, encoding: 'utf8', maxBuffer: 64 << 20 });
  if (result.error) {
    const code = (result.error as NodeJS.ErrnoException).code;
    throw new Error(
      code === 'ENOENT'
        ? 'helm not found on PATH: run scripts/install-test-deps.sh (go install helm.sh/helm/v3/cmd/helm) and put $(go env GOPATH)/bin on PATH'
        : `helm ${args.join(' ')}: ${result.error.message}`,
    );
  }
  return { status: result.status ?? -1, stdout: result.stdout, stderr: result.stderr };
}

// Loose shapes of the Kubernetes objects the checks read.
export interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  [key: string]: unknown;
}
export interface Container {
  name: string;
  image: string;
  args?: string[];
  env?: { name: string; value?: string; valueFrom?: unknown }[];
  ports?: { name?: string; containerPort: number }[];
  volumeMounts?: { name: string; mountPath: string; mountPropagation?: string; readOnly?: boolean }[];
  securityContext?: Record<string, unknown>;
  resources?: { requests?: Record<string, string>; limits?: Record<string, string> };
  readinessProbe?: { httpGet?: { path: string; port: string | number } };
  livenessProbe?: { httpGet?: { path: string; port: string | number } };
}
export interface Volume {
  name: string;
  hostPath?: { path: string; type?: string };
  configMap?: { name: string };
  secret?: { secretName: string; items?: { key: string; path: string }[] };
  emptyDir?: unknown;
}
export interface PodSpec {
  containers: Container[];
  volumes: Volume[];
  serviceAccountName?: string;
  automountServiceAccountToken?: boolean;
  priorityClassName?: string;
  tolerations?: Record<string, unknown>[];
  hostNetwork?: boolean;
  dnsPolicy?: string;
}
export interface Workload extends K8sObject {
  spec: { template: { metadata: { labels: Record<string, string> }; spec: PodSpec } };
}

/** `helm template` → parsed objects; throws with helm's stderr when rendering fails. */
export function render(args: string[] = []): K8sObject[] {
  const result = helm(['template', 'mcsi', CHART, '--namespace', 'model-csi', ...args]);
  if (result.status !== 0) throw new Error(`helm template failed (${result.status}): ${result.stderr}`);
  return parseAllDocuments(result.stdout)
    .map((doc) => {
      if (doc.errors.length > 0) throw new Error(`rendered YAML does not parse: ${doc.errors[0]!.message}`);
      return doc.toJS() as K8sObject | null;
    })
    .filter((obj): obj is K8sObject => obj !== null);
}

export function one<T extends K8sObject = K8sObject>(objects: K8sObject[], kind: string, nameSuffix = ''): T {
  const found = objects.filter((o) => o.kind === kind && o.metadata.name.endsWith(nameSuffix));
  if (found.length !== 1) throw new Error(`expected one ${kind} *${nameSuffix}, found ${found.length}`);
  return found[0] as T;
}

export function container(pod: PodSpec, name: string): Container {
  const found = pod.containers.find((c) => c.name === name);
  if (!found) throw new Error(`no container ${name} (have ${pod.containers.map((c) => c.name).join(', ')})`);
  return found;
}

/** The value of `--flag=value` in a container's args; undefined when absent. */
export function flag(c: Container, name: string): string | undefined {
  const prefix = `--${name}=`;
  const hit = (c.args ?? []).find((a) => a === `--${name}` || a.startsWith(prefix));
  if (hit === undefined) return undefined;
  return hit === `--${name}` ? '' : hit.slice(prefix.length);
}

export function volume(pod: PodSpec, name: string): Volume {
  const found = pod.volumes.find((v) => v.name === name);
  if (!found) throw new Error(`no volume ${name}`);
  return found;
}

/** The mount of `c` that holds container path `path`, with its volume. */
export function mountHolding(pod: PodSpec, c: Container, path: string): { mountPath: string; volume: Volume; rest: string } {
  const candidates = (c.volumeMounts ?? []).filter((m) => path === m.mountPath || path.startsWith(`${m.mountPath.replace(/\/$/, '')}/`));
  candidates.sort((a, b) => b.mountPath.length - a.mountPath.length);
  const m = candidates[0];
  if (!m) throw new Error(`container ${c.name} has no mount holding ${path}`);
  return { mountPath: m.mountPath, volume: volume(pod, m.name), rest: path.slice(m.mountPath.replace(/\/$/, '').length + 1) };
}
