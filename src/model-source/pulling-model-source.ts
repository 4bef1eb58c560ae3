import { SingleFlight } from '../concurrency/single-flight.js';
import type { Logger } from '../log/logger.js';
import type { Metrics } from '../metrics/metrics.js';
import type { AcquiredModel, ModelRequest, ModelSource } from '../node/model-source.js';
import { formatReference, parseReference, type Reference } from '../registry/reference.js';
import type { ResolvedManifest } from '../registry/oci-types.js';
import type { RegistryClient, RequestAuth } from '../registry/registry-client.js';
import type { ModelPuller, PullProgress } from '../artifacts/model-puller.js';
import type { ModelStore } from '../store/model-store.js';
import { modelKeyFor } from '../store/model-key.js';
import type { PullEvents } from '../kube/pull-events.js';
import { credentialHash, type AccessGrants } from './access-grants.js';
import type { CacheBudget } from './cache-budget.js';
import { PullTracker, waitForJob } from './pull-tracker.js';
import type { TagCache } from './tag-cache.js';
import type { SignatureVerifier } from '../verify/signature-verifier.js';

/**
 * The ModelSource of the product: resolve the reference, serve the model from the node cache
 * when it is there, else pull it in the background (one pull per model however many volumes
 * ask) and wait a bounded time for it.
 */
export class PullingModelSource implements ModelSource {
  readonly pulls = new PullTracker<AcquiredModel>();
  private readonly resolving = new SingleFlight<string>();
  /** Manifests just fetched to resolve a tag, handed to the pull so it does not fetch them again. */
  private readonly resolved = new Map<string, ResolvedManifest>();

  constructor(
    private readonly deps: {
      client: RegistryClient;
      puller: ModelPuller;
      models: ModelStore;
      tags: TagCache;
      budget: CacheBudget;
      grants: AccessGrants;
      events: PullEvents;
      metrics: Metrics;
      logger: Logger;
      /** The signature policy (verify/): checked once the digest is known, before the cache and any pull. */
      signatures?: SignatureVerifier;
    },
  ) {}

  async acquire(request: ModelRequest, options: { waitMs: number; log: Logger }): Promise<AcquiredModel> {
    const reference = parseReference(request.reference);
    const auth: RequestAuth = request.dockerConfigJson === undefined ? {} : { dockerConfigJson: request.dockerConfigJson };
    const caller: Caller = { auth, repository: `${reference.registry}/${reference.repository}`, credentials: credentialHash(request.dockerConfigJson) };
    const digest = await this.digestFor(reference, request.pullPolicy, caller);
    const key = modelKeyFor(digest, request.include, request.exclude);
    const log = options.log.child({ reference: request.reference, digest });
    await this.deps.signatures?.check(reference, digest, { auth, log, pod: request.pod });
    const pinned: Reference = { registry: reference.registry, repository: reference.repository, digest };
    // What is already on the node (or on its way) is shared only with callers the registry
    // would let pull it themselves (access-grants.ts).
    const mayRead = () => this.deps.grants.check(caller.repository, caller.credentials, () => this.deps.client.resolve(pinned, { auth }));

    const cached = await this.cachedModel(key, digest);
    if (cached) {
      await mayRead();
      this.deps.metrics.cacheHits.inc();
      this.deps.events.cacheHit(key, request.pod, { reference: request.reference, digest, bytes: cached.sizeBytes });
      log.debug({ model: key }, 'model served from the node cache');
      return cached;
    }
    const running = this.pulls.get(key);
    if (running) {
      await mayRead();
      this.deps.events.waiting(key, request.pod);
      return waitForJob(running, options.waitMs);
    }
    this.deps.metrics.cacheMisses.inc();
    this.deps.events.started(key, request.reference);
    const job = this.pulls.start(key, formatReference(reference), (progress) => this.pull(pinned, key, digest, request, caller, progress, log));
    this.deps.events.waiting(key, request.pod);
    return waitForJob(job, options.waitMs);
  }

  /** Model keys that are being written now: never evicted. */
  pullingKeys(): Set<string> {
    return new Set(this.pulls.list().map((job) => job.key));
  }

  private async cachedModel(key: string, digest: string): Promise<AcquiredModel | undefined> {
    const entry = await this.deps.models.touch(key);
    return entry && { path: entry.path, digest, modelKey: key, sizeBytes: entry.sizeBytes };
  }

  /**
   * Tag → digest. A digest reference needs no registry; `IfNotPresent` reuses what the tag
   * resolved to when this node last pulled it; `Always` asks the registry. Concurrent
   * resolutions of one reference with the same credentials share one request.
   */
  private async digestFor(reference: Reference, pullPolicy: ModelRequest['pullPolicy'], caller: Caller): Promise<string> {
    if (reference.digest) return reference.digest;
    const name = formatReference(reference);
    if (pullPolicy === 'IfNotPresent') {
      const cached = await this.deps.tags.get(name);
      if (cached) return cached.digest;
    }
    return this.resolving.run(`${name}\0${caller.credentials}`, async () => {
      const resolved = await this.deps.client.resolve(reference, { auth: caller.auth });
      await this.deps.grants.grant(caller.repository, caller.credentials);
      await this.deps.tags.set(name, resolved.rootDigest);
      if (!(await this.deps.models.has(modelKeyFor(resolved.rootDigest)))) {
        // Bounded: an entry no pull consumes (a partial selection already cached) ages out.
        if (this.resolved.size >= 32) this.resolved.delete(this.resolved.keys().next().value!);
        this.resolved.set(resolved.rootDigest, resolved);
      }
      return resolved.rootDigest;
    });
  }

  private async pull(
    reference: Reference,
    key: string,
    digest: string,
    request: ModelRequest,
    caller: Caller,
    progress: PullProgress,
    log: Logger,
  ): Promise<AcquiredModel> {
    const { auth } = caller;
    const { metrics, puller, budget } = this.deps;
    const started = Date.now();
    metrics.pullsInFlight.inc();
    let reservation: { release(): void } | undefined;
    try {
      const handedOver = this.resolved.get(digest);
      this.resolved.delete(digest);
      const resolved = handedOver ?? (await this.deps.client.resolve(reference, { auth }));
      await this.deps.grants.grant(caller.repository, caller.credentials);
      const plan = puller.plan(resolved, request.include, request.exclude);
      progress.totalBytes = plan.totalBytes;
      this.deps.events.sized(key, plan.totalBytes);
      reservation = await budget.reserve(formatReference(reference), plan.totalBytes);
      log.info({ model: key, totalBytes: plan.totalBytes }, 'pull started');
      const pulled = await puller.pull({
        reference,
        resolved,
        include: request.include,
        exclude: request.exclude,
        auth,
        log,
        onProgress: (p) => {
          progress.doneBytes = p.doneBytes;
          progress.totalBytes = p.totalBytes;
        },
      });
      metrics.pullSeconds.observe({ result: 'success' }, (Date.now() - started) / 1000);
      metrics.cacheBytes.set(await this.deps.models.usedBytes());
      const seconds = (Date.now() - started) / 1000;
      log.info({ model: key, sizeBytes: pulled.sizeBytes, seconds }, 'pull complete');
      this.deps.events.pulled(key, { digest, bytes: plan.totalBytes, seconds });
      return { path: pulled.path, digest, modelKey: key, sizeBytes: pulled.sizeBytes };
    } catch (err) {
      metrics.pullSeconds.observe({ result: 'failure' }, (Date.now() - started) / 1000);
      const code = (err as { code?: string }).code ?? 'INTERNAL';
      metrics.pullFailures.inc({ reason: code });
      log.warn({ err, model: key }, 'pull failed');
      this.deps.events.failed(key, { code, message: (err as Error).message });
      throw err;
    } finally {
      reservation?.release();
      metrics.pullsInFlight.dec();
    }
  }
}

/** Who asks: their credentials for the registry, and the identity grants are kept under. */
interface Caller {
  auth: RequestAuth;
  /** `host/repository` */
  repository: string;
  /** credentialHash() of the call's pull secret. */
  credentials: string;
}
