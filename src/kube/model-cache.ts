/**
 * The ModelCache custom resource (`model.csi.example.org/v1alpha1`, cluster-scoped): which
 * model to keep warm on which nodes, and each node's report. The CRD (with the OpenAPI schema
 * that refuses typos at apply time) is `deploy/helm/model-csi/crds/modelcaches.yaml`; this file
 * is its TypeScript side: the shapes, the defaults, and the pure decisions both plugins make
 * (which nodes a cache selects, what the summary says). Nothing here talks to the API server.
 */

export const MODEL_CACHE_GROUP = 'model.csi.example.org';
export const MODEL_CACHE_VERSION = 'v1alpha1';
export const MODEL_CACHE_PLURAL = 'modelcaches';
export const MODEL_CACHE_KIND = 'ModelCache';
export const MODEL_CACHE_PATH = `/apis/${MODEL_CACHE_GROUP}/${MODEL_CACHE_VERSION}/${MODEL_CACHE_PLURAL}`;

/** How often a tag is resolved again when the spec does not say (`spec.refreshInterval`). */
const DEFAULT_REFRESH_INTERVAL = '10m';
const DEFAULT_REFRESH_SECONDS = 600;
/** Below this a busy tag would cost every node a registry request too often. */
const MIN_REFRESH_SECONDS = 30;

export type NodePhase = 'Pulling' | 'Ready' | 'Failed';

export interface ModelCacheSpec {
  reference: string;
  /** Match labels on the Node; empty selects every node the node plugin runs on. */
  nodeSelector?: Record<string, string>;
  /** A `kubernetes.io/dockerconfigjson` Secret. */
  pullSecretRef?: { name: string; namespace: string };
  include?: string[];
  exclude?: string[];
  /** A pinned model is never evicted by the cache budget. */
  pin?: boolean;
  /** How often a tag is resolved again (`30s`, `10m`, `1h`); digests never are. */
  refreshInterval?: string;
}

export interface NodeStatus {
  node: string;
  phase: NodePhase;
  digest?: string;
  bytes?: number;
  /** `41%` while pulling, `100%` when ready. */
  progress?: string;
  message?: string;
  lastTransitionTime: string;
}

interface ModelCacheStatus {
  nodes?: NodeStatus[];
  /** `ready: 2/3`: nodes Ready of the nodes the cache selects. */
  ready?: string;
  /** The digest the Ready nodes hold (the most common one while a tag moves). */
  digest?: string;
  /** Nodes the cache selects (that run the node plugin). */
  selectedNodes?: number;
  readyNodes?: number;
}

export interface ModelCache {
  apiVersion?: string;
  kind?: string;
  metadata: { name: string; uid?: string; generation?: number; resourceVersion?: string; creationTimestamp?: string | Date };
  spec: ModelCacheSpec;
  status?: ModelCacheStatus;
}

/** A node as the selection sees it. */
export interface NodeLabels {
  name: string;
  labels: Readonly<Record<string, string>>;
}

/** Empty or absent selector: every node the plugin runs on. Otherwise every label must match. */
export function selectsNode(cache: ModelCache, node: NodeLabels): boolean {
  const selector = cache.spec.nodeSelector ?? {};
  return Object.entries(selector).every(([key, value]) => node.labels[key] === value);
}

/**
 * `30s`, `10m`, `1h30m` → seconds (the CRD's pattern already refuses anything else; this is
 * the second line for objects written before the schema, or by hand against a looser one).
 */
export function refreshSeconds(spec: ModelCacheSpec): number {
  const text = spec.refreshInterval ?? DEFAULT_REFRESH_INTERVAL;
  const match = /^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$/.exec(text);
  if (!match || text === '') return DEFAULT_REFRESH_SECONDS;
  const seconds = Number(match[1] ?? 0) * 3600 + Number(match[2] ?? 0) * 60 + Number(match[3] ?? 0);
  return Math.max(MIN_REFRESH_SECONDS, seconds);
}

/**
 * What one node does for one cache, derived from the spec alone: two specs with the same
 * warm key need the same work, so an unrelated edit (a label on the object) restarts nothing.
 */
export function warmKey(spec: ModelCacheSpec): string {
  return JSON.stringify([
    spec.reference,
    spec.pullSecretRef?.namespace ?? '',
    spec.pullSecretRef?.name ?? '',
    [...(spec.include ?? [])],
    [...(spec.exclude ?? [])],
    spec.pin === true,
    refreshSeconds(spec),
  ]);
}

export interface Summary {
  ready: string;
  readyNodes: number;
  selectedNodes: number;
  digest?: string;
}

/**
 * The summary the controller keeps true: Ready entries among the nodes the cache selects now.
 * Entries of nodes that left (or no longer match) do not count, so the summary follows nodes
 * as they come and go without anyone deleting another node's entry.
 */
export function summarize(cache: ModelCache, pluginNodes: readonly NodeLabels[]): Summary {
  const selected = new Set(pluginNodes.filter((node) => selectsNode(cache, node)).map((node) => node.name));
  const ready = (cache.status?.nodes ?? []).filter((entry) => entry.phase === 'Ready' && selected.has(entry.node));
  const counts = new Map<string, number>();
  for (const entry of ready) if (entry.digest) counts.set(entry.digest, (counts.get(entry.digest) ?? 0) + 1);
  const digest = [...counts.entries()].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]))[0]?.[0];
  return {
    ready: `${ready.length}/${selected.size}`,
    readyNodes: ready.length,
    selectedNodes: selected.size,
    ...(digest === undefined ? {} : { digest }),
  };
}

/** True when the object's status already says what `summary` says (no write needed). */
export function summaryCurrent(cache: ModelCache, summary: Summary): boolean {
  const status = cache.status ?? {};
  return (
    status.ready === summary.ready &&
    status.readyNodes === summary.readyNodes &&
    status.selectedNodes === summary.selectedNodes &&
    status.digest === summary.digest
  );
}

/** `41%` of a pull, from the bytes done and the bytes it needs. */
export function percent(doneBytes: number, totalBytes: number): string {
  if (totalBytes <= 0) return '0%';
  return `${Math.min(100, Math.floor((doneBytes / totalBytes) * 100))}%`;
}
