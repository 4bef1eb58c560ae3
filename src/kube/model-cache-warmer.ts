import { setTimeout as sleep } from 'node:timers/promises';
import { DriverError, isDriverError } from '../errors/driver-error.js';
import { grpcStatusName } from '../errors/grpc-status.js';
import { scrubSecrets } from '../errors/scrub.js';
import type { Logger } from '../log/logger.js';
import type { AcquiredModel, ModelRequest, ModelSource } from '../node/model-source.js';
import { percent, refreshSeconds, selectsNode, warmKey, type ModelCache, type NodeLabels, type NodePhase, type NodeStatus } from './model-cache.js';

/** What the warmer needs from the API server (ModelCacheApi in production). */
export interface WarmerApi {
  /** The `.dockerconfigjson` of a `kubernetes.io/dockerconfigjson` Secret. */
  pullSecret(ref: { name: string; namespace: string }): Promise<string>;
  /** This node's entry in `status.nodes` of the cache with this name and uid (server-side apply, one field manager per node); undefined removes it. */
  applyNodeStatus(cache: { name: string; uid?: string | undefined }, entry: NodeStatus | undefined): Promise<void>;
}

export interface WarmerOptions {
  nodeName: string;
  /** The same source NodePublishVolume uses: one store, one pull per model, shared with pods. */
  source: ModelSource;
  /** Bytes done / needed of the running pull of a reference, for `progress`. */
  progressOf(reference: string): { doneBytes: number; totalBytes: number } | undefined;
  api: WarmerApi;
  logger: Logger;
  /** How long one acquire waits before the status shows progress (ms). */
  pollMs?: number;
  /** First retry delay after a failure (ms); doubles up to the refresh interval. */
  retryMs?: number;
  /** The refresh interval of a spec (ms); `spec.refreshInterval` unless a test shortens it. */
  refreshMs?: (spec: ModelCache['spec']) => number;
}

interface Warm {
  readonly key: string;
  readonly uid: string | undefined;
  readonly abort: AbortController;
  /** The model key this warm holds (pinned when the spec says pin). */
  modelKey?: string;
  pin: boolean;
  last?: NodeStatus;
}

/**
 * The node side of ModelCache: for every cache that selects this node, keep its model in the
 * node cache, pinned if asked, and report this node's entry. Pulls go through the same
 * ModelSource as NodePublishVolume, so a pod published meanwhile joins the warm's pull (and a
 * warm joins a pod's). The tag is resolved at start and again every `refreshInterval`; a moved
 * tag is pulled and the new digest replaces the old one (and its pin) once it is ready.
 */
export class ModelCacheWarmer {
  private readonly warms = new Map<string, Warm>();
  /** Status writes per cache, in order: a late Pulling must never land after Ready. */
  private readonly writes = new Map<string, Promise<void>>();

  constructor(private readonly options: WarmerOptions) {}

  /** Start, restart and stop warms to match `caches` as seen by `node`. */
  sync(caches: readonly ModelCache[], node: NodeLabels): void {
    const wanted = new Map(caches.filter((cache) => selectsNode(cache, node)).map((cache) => [cache.metadata.name, cache]));
    for (const [name, warm] of this.warms) {
      const cache = wanted.get(name);
      if (cache && warm.key === warmKey(cache.spec) && warm.uid === cache.metadata.uid) continue;
      warm.abort.abort();
      this.warms.delete(name);
      // Still there but no longer selecting this node: take our entry out of its status.
      // (A deleted cache takes its status with it.)
      const stillExists = caches.some((other) => other.metadata.name === name && other.metadata.uid === warm.uid);
      if (stillExists && !cache) this.write(name, warm.uid, undefined);
    }
    for (const [name, cache] of wanted) if (!this.warms.has(name)) this.start(cache);
  }

  /** Model keys that ModelCaches pin on this node: the budget never evicts them. */
  pinnedKeys(): Set<string> {
    const keys = new Set<string>();
    for (const warm of this.warms.values()) if (warm.pin && warm.modelKey) keys.add(warm.modelKey);
    return keys;
  }

  /**
   * The budget evicted `modelKey` (only unpinned models are evicted): the caches that held it
   * no longer have it on this node, so their entries stop saying Ready. The model is warmed
   * again at the next refresh, not now: pulling it back at once would evict the model it just
   * made room for.
   */
  evicted(modelKey: string): void {
    for (const [name, warm] of this.warms) {
      if (warm.modelKey !== modelKey) continue;
      warm.modelKey = undefined;
      this.report(name, warm, 'Failed', {
        message: `evicted from this node by the cache budget to make room for another model; warmed again at the next refresh; set pin: true to keep it`,
      });
    }
  }

  stop(): void {
    for (const warm of this.warms.values()) warm.abort.abort();
    this.warms.clear();
  }

  private start(cache: ModelCache): void {
    const warm: Warm = { key: warmKey(cache.spec), uid: cache.metadata.uid, abort: new AbortController(), pin: cache.spec.pin === true };
    this.warms.set(cache.metadata.name, warm);
    void this.run(cache, warm);
  }

  private async run(cache: ModelCache, warm: Warm): Promise<void> {
    const { signal } = warm.abort;
    const name = cache.metadata.name;
    const log = this.options.logger.child({ modelCache: name, reference: cache.spec.reference });
    const refreshMs = this.options.refreshMs?.(cache.spec) ?? refreshSeconds(cache.spec) * 1000;
    let retryMs = this.options.retryMs ?? 15_000;
    while (!signal.aborted) {
      let waitMs = refreshMs;
      try {
        const { model, note } = await this.warmOnce(cache, warm, log);
        warm.modelKey = model.modelKey;
        const message = [warm.pin ? 'cached and pinned' : 'cached', note].filter(Boolean).join('; ');
        this.report(name, warm, 'Ready', { digest: model.digest, bytes: model.sizeBytes, progress: '100%', message });
        retryMs = this.options.retryMs ?? 15_000;
      } catch (err) {
        if (signal.aborted) break;
        log.warn({ err: scrubSecrets((err as Error).message) }, 'ModelCache warm failed');
        this.report(name, warm, 'Failed', { message: failureMessage(err) });
        waitMs = Math.min(refreshMs, retryMs);
        retryMs *= 2;
      }
      await sleep(waitMs, undefined, { signal }).catch(() => undefined);
    }
  }

  /**
   * One pass: the model the reference names now, present (pulled now, joined, or cached).
   * The tag is always resolved at the registry (`Always`): a warm is for what the tag points
   * to, not for what this node saw last. When the registry cannot be reached (a retryable
   * failure), what the node holds for the tag serves (`IfNotPresent`), so an outage does not
   * turn a warm node Failed.
   */
  private async warmOnce(cache: ModelCache, warm: Warm, log: Logger): Promise<{ model: AcquiredModel; note?: string }> {
    const { spec } = cache;
    const request: ModelRequest = {
      reference: spec.reference,
      include: spec.include ?? [],
      exclude: spec.exclude ?? [],
      pullPolicy: 'Always',
      ...(spec.pullSecretRef ? { dockerConfigJson: await this.options.api.pullSecret(spec.pullSecretRef) } : {}),
    };
    try {
      return { model: await this.acquire(cache.metadata.name, warm, request, log) };
    } catch (err) {
      if (!isDriverError(err) || !err.retryable || isDriverError(err, 'PULL_IN_PROGRESS')) throw err;
      let model: AcquiredModel;
      try {
        model = await this.acquire(cache.metadata.name, warm, { ...request, pullPolicy: 'IfNotPresent' }, log);
      } catch {
        throw err; // nothing here for the tag either: the registry's failure is the reason
      }
      return { model, note: `resolving the tag failed (${failureMessage(err)}); serving the digest this node holds for it` };
    }
  }

  /** acquire until the pull is done, reporting progress while it runs. */
  private async acquire(name: string, warm: Warm, request: ModelRequest, log: Logger): Promise<AcquiredModel> {
    const pollMs = this.options.pollMs ?? 5_000;
    for (;;) {
      warm.abort.signal.throwIfAborted();
      try {
        return await this.options.source.acquire(request, { waitMs: pollMs, log });
      } catch (err) {
        if (!isDriverError(err, 'PULL_IN_PROGRESS')) throw err;
        const progress = this.options.progressOf(request.reference);
        this.report(name, warm, 'Pulling', {
          ...(progress && progress.totalBytes > 0 ? { bytes: progress.totalBytes, progress: percent(progress.doneBytes, progress.totalBytes) } : { progress: '0%' }),
          message: `pulling ${request.reference}`,
        });
      }
    }
  }

  private report(name: string, warm: Warm, phase: NodePhase, fields: Omit<NodeStatus, 'node' | 'phase' | 'lastTransitionTime'>): void {
    const last = warm.last;
    const entry: NodeStatus = {
      node: this.options.nodeName,
      phase,
      ...fields,
      ...(fields.message === undefined ? {} : { message: scrubSecrets(fields.message).slice(0, 1024) }),
      lastTransitionTime: last && last.phase === phase ? last.lastTransitionTime : new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
    };
    if (last && JSON.stringify(last) === JSON.stringify(entry)) return;
    warm.last = entry;
    if (!warm.abort.signal.aborted) this.write(name, warm.uid, entry);
  }

  private write(name: string, uid: string | undefined, entry: NodeStatus | undefined): void {
    const previous = this.writes.get(name) ?? Promise.resolve();
    const next = previous.then(() =>
      this.options.api.applyNodeStatus({ name, uid }, entry).catch((err: unknown) => {
        this.options.logger.warn({ modelCache: name, err: scrubSecrets(String((err as Error).message ?? err)) }, 'cannot write the ModelCache status');
      }),
    );
    this.writes.set(name, next);
    void next.then(() => {
      if (this.writes.get(name) === next) this.writes.delete(name);
    });
  }

  /** Settles when every status write queued so far has been sent (tests, shutdown). */
  async flush(): Promise<void> {
    await Promise.all([...this.writes.values()]);
  }
}

/** `RESOURCE_EXHAUSTED (NO_SPACE): …`: the gRPC status a publish would get, the stable code, the message. */
function failureMessage(err: unknown): string {
  const driverError = err instanceof DriverError ? err : new DriverError('INTERNAL', err instanceof Error ? err.message : String(err));
  return `${grpcStatusName(driverError.grpcStatus)} (${driverError.code}): ${scrubSecrets(driverError.message)}`;
}
