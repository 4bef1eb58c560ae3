import {
  CoreV1Api,
  CustomObjectsApi,
  makeInformer,
  PatchStrategy,
  setHeaderOptions,
  StorageV1Api,
  type KubeConfig,
  type KubernetesObject,
} from '@kubernetes/client-node';
import { DriverError } from '../errors/driver-error.js';
import { scrubSecrets } from '../errors/scrub.js';
import type { Logger } from '../log/logger.js';
import {
  MODEL_CACHE_GROUP,
  MODEL_CACHE_KIND,
  MODEL_CACHE_PATH,
  MODEL_CACHE_PLURAL,
  MODEL_CACHE_VERSION,
  type ModelCache,
  type NodeLabels,
  type NodeStatus,
  type Summary,
} from './model-cache.js';

/** Which cache a status write is about: the name, and the uid of the object that was seen. */
export interface CacheRef {
  name: string;
  uid?: string | undefined;
}

/** A watch that failed (API server restarting, CRD not installed yet) starts again after this. */
const REWATCH_MS = 10_000;

/**
 * ModelCache and what it needs from the API server, through @kubernetes/client-node: a
 * list-and-watch of the caches, this node's labels, pull secrets, and status writes by
 * server-side apply. Each writer applies only the fields it owns under its own field manager
 * (`model-csi-node/<node>` for a node's entry of the `nodes` map-list, `model-csi-controller`
 * for the summary), so writers never overwrite each other and no write needs a read first.
 */
export class ModelCacheApi {
  private readonly custom: CustomObjectsApi;
  private readonly core: CoreV1Api;
  private readonly storage: StorageV1Api;

  constructor(
    private readonly config: KubeConfig,
    private readonly logger: Logger,
  ) {
    this.custom = config.makeApiClient(CustomObjectsApi);
    this.core = config.makeApiClient(CoreV1Api);
    this.storage = config.makeApiClient(StorageV1Api);
  }

  /**
   * Calls `onChange` with every ModelCache whenever one is added, changed or deleted (and once
   * the first list arrives). A failed watch is logged once per failure streak and restarted.
   */
  watch(onChange: (caches: ModelCache[]) => void): { stop(): void } {
    const list = () => this.custom.listClusterCustomObject({ group: MODEL_CACHE_GROUP, version: MODEL_CACHE_VERSION, plural: MODEL_CACHE_PLURAL });
    const informer = makeInformer<KubernetesObject>(this.config, MODEL_CACHE_PATH, list as never);
    let stopped = false;
    let failing = false;
    let timer: NodeJS.Timeout | undefined;
    const changed = () => {
      failing = false;
      onChange(informer.list() as unknown as ModelCache[]);
    };
    for (const event of ['add', 'update', 'delete'] as const) informer.on(event, changed);
    informer.on('connect', changed);
    informer.on('error', (err: unknown) => {
      if (stopped) return;
      if (!failing) this.logger.warn({ err: describe(err) }, 'ModelCache watch failed; retrying every 10 s (is the CRD installed?)');
      failing = true;
      timer = setTimeout(() => void informer.start().catch(() => undefined), REWATCH_MS);
    });
    void informer.start().catch(() => undefined);
    return {
      stop: () => {
        stopped = true;
        clearTimeout(timer);
        void informer.stop();
      },
    };
  }

  async nodeLabels(name: string): Promise<NodeLabels> {
    const node = await this.core.readNode({ name });
    return { name, labels: node.metadata?.labels ?? {} };
  }

  /** Nodes where kubelet registered `driverName` (their CSINode lists it), with their labels. */
  async pluginNodes(driverName: string): Promise<NodeLabels[]> {
    const [csiNodes, nodes] = await Promise.all([this.storage.listCSINode(), this.core.listNode()]);
    const withDriver = new Set(
      csiNodes.items.filter((csiNode) => csiNode.spec.drivers.some((driver) => driver.name === driverName)).map((csiNode) => csiNode.metadata?.name ?? ''),
    );
    return nodes.items
      .filter((node) => withDriver.has(node.metadata?.name ?? ''))
      .map((node) => ({ name: node.metadata?.name ?? '', labels: node.metadata?.labels ?? {} }));
  }

  async pullSecret(ref: { name: string; namespace: string }): Promise<string> {
    const where = `Secret ${ref.namespace}/${ref.name}`;
    let secret;
    try {
      secret = await this.core.readNamespacedSecret({ name: ref.name, namespace: ref.namespace });
    } catch (err) {
      throw new DriverError('INVALID_SECRET', `cannot read the ModelCache's pullSecretRef, ${where}: ${describe(err)}; create it, or fix the reference`, { retryable: true });
    }
    const data = secret.data?.['.dockerconfigjson'];
    if (secret.type !== 'kubernetes.io/dockerconfigjson' || data === undefined) {
      throw new DriverError('INVALID_SECRET', `${where} is not of type kubernetes.io/dockerconfigjson with a .dockerconfigjson key; make it with kubectl create secret docker-registry`);
    }
    return Buffer.from(data, 'base64').toString('utf8');
  }

  /**
   * This node's entry of `status.nodes`, or (undefined) none: the apply drops what it no
   * longer names. `cache` is the object the entry is about: its uid makes the write a
   * precondition, so a report about a deleted cache never lands on a new one of the same name.
   */
  applyNodeStatus(cache: CacheRef, nodeName: string, entry: NodeStatus | undefined): Promise<void> {
    return this.applyStatus(cache, `model-csi-node/${nodeName}`.slice(0, 128), { nodes: entry ? [entry] : [] });
  }

  applySummary(cache: CacheRef, summary: Summary): Promise<void> {
    const { ready, readyNodes, selectedNodes, digest } = summary;
    return this.applyStatus(cache, 'model-csi-controller', { ready, readyNodes, selectedNodes, ...(digest === undefined ? {} : { digest }) });
  }

  private async applyStatus({ name, uid }: CacheRef, fieldManager: string, status: object): Promise<void> {
    const metadata = uid === undefined ? { name } : { name, uid };
    const body = { apiVersion: `${MODEL_CACHE_GROUP}/${MODEL_CACHE_VERSION}`, kind: MODEL_CACHE_KIND, metadata, status };
    try {
      await this.custom.patchClusterCustomObjectStatus(
        { group: MODEL_CACHE_GROUP, version: MODEL_CACHE_VERSION, plural: MODEL_CACHE_PLURAL, name, body, fieldManager, force: true },
        setHeaderOptions('Content-Type', PatchStrategy.ServerSideApply),
      );
    } catch (err) {
      // Deleted meanwhile (404), or replaced by a new object of the same name (409, uid
      // precondition): nothing left to report on; the new object gets its own reports.
      const code = (err as { code?: number }).code;
      if (code === 404 || code === 409) return;
      throw err;
    }
  }
}

/** An API error as one line: the status message the server gave, never a header. */
function describe(err: unknown): string {
  const body = (err as { body?: unknown }).body;
  let message = err instanceof Error ? err.message : String(err);
  if (typeof body === 'string') {
    try {
      message = (JSON.parse(body) as { message?: string }).message ?? message;
    } catch {
      // not JSON: keep the error's own message
    }
  }
  return scrubSecrets(message.split('\n')[0] ?? message);
}
