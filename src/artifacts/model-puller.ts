import { setMaxListeners } from 'node:events';
import { SingleFlight, type Flight } from '../concurrency/single-flight.js';
import type { ConfigFile } from '../config/schema.js';
import { DriverError } from '../errors/driver-error.js';
import { classifyFsError } from '../errors/fs-error.js';
import type { Logger } from '../log/logger.js';
import type { ImageManifest, ResolvedManifest } from '../registry/oci-types.js';
import { formatReference, type Reference } from '../registry/reference.js';
import type { RegistryClient, RequestAuth } from '../registry/registry-client.js';
import type { ContentStore } from '../store/content-store.js';
import { modelKeyFor } from '../store/model-key.js';
import type { ModelStore } from '../store/model-store.js';
import { describeArtifact, type ArtifactKind } from './artifact.js';
import { planPull, type PlannedLayer, type PullPlan } from './plan.js';
import { Semaphore } from '../concurrency/semaphore.js';
import { BlobLocation } from '../registry/blob-location.js';
import { placeRawLayer } from './unpack/raw-file.js';
import { checkSymlinksInside } from './unpack/symlink-check.js';
import { defaultTarLimits, extractTarLayer } from './unpack/tar-extractor.js';

/** Bytes of a pull on disk so far, of the bytes it needs (what a waiter or a progress line shows). */
export interface PullProgress {
  doneBytes: number;
  totalBytes: number;
}

export interface PullRequest {
  reference: Reference;
  /** Skip resolution: the manifest the caller already resolved for this reference. */
  resolved?: ResolvedManifest;
  include?: readonly string[];
  exclude?: readonly string[];
  auth?: RequestAuth;
  signal?: AbortSignal;
  onProgress?: (progress: PullProgress) => void;
  log?: Logger;
}

export interface PulledModel {
  key: string;
  path: string;
  /** Digest the reference resolved to (the index digest when there was one). */
  digest: string;
  sizeBytes: number;
}

export interface ArtifactInspection {
  reference: string;
  digest: string;
  manifestDigest: string;
  mediaType: string;
  artifactType?: string;
  configMediaType?: string;
  kind: ArtifactKind;
  totalBytes: number;
  layers: Array<{ mediaType: string; digest: string; size: number; format: string; path?: string; role?: string }>;
}

/**
 * The pull pipeline: resolve → plan → download the needed blobs in parallel (bounded by
 * `maxConcurrentDownloads`), unpacking each as soon as it is verified → check the tree →
 * publish by rename → record. One assembly per model key at a time in this process; a model
 * already in the cache is returned as is. A caller's `signal` detaches that caller only; the
 * assembly stops when every caller has left.
 */
export class ModelPuller {
  private readonly assemblies = new SingleFlight<PulledModel, undefined, PullRequest>();
  private readonly downloads: Semaphore;

  constructor(
    private readonly deps: {
      client: RegistryClient;
      store: ContentStore;
      models: ModelStore;
      config: Readonly<ConfigFile>;
      logger: Logger;
    },
  ) {
    this.downloads = new Semaphore(deps.config.maxConcurrentDownloads);
  }

  /** What a pull of this manifest with this selection would fetch (used for the budget). */
  plan(resolved: ResolvedManifest, include: readonly string[] = [], exclude: readonly string[] = [], reference = resolved.digest): PullPlan {
    return planPull(resolved.manifest, include, exclude, reference);
  }

  async pull(request: PullRequest): Promise<PulledModel> {
    const resolved = request.resolved ?? (await this.deps.client.resolve(request.reference, { auth: request.auth ?? {}, signal: request.signal }));
    const key = modelKeyFor(resolved.rootDigest, request.include ?? [], request.exclude ?? []);
    return this.assemblies.run(key, (flight) => this.assemble(key, resolved, request, flight), { signal: request.signal, context: request });
  }

  async inspect(reference: Reference, auth?: RequestAuth): Promise<ArtifactInspection> {
    return inspectArtifact(this.deps.client, reference, auth);
  }

  /**
   * Built from the first caller's request (its credentials fetch the layers); progress goes to
   * every caller still waiting, and the flight's signal stops it once none is.
   */
  private async assemble(key: string, resolved: ResolvedManifest, request: PullRequest, flight: Flight<undefined, PullRequest>): Promise<PulledModel> {
    const { models, store } = this.deps;
    const name = formatReference(request.reference);
    const log = (request.log ?? this.deps.logger).child({ reference: name, digest: resolved.rootDigest, model: key });
    const existing = await models.touch(key);
    if (existing) return { key, path: existing.path, digest: resolved.rootDigest, sizeBytes: existing.sizeBytes };
    const plan = planPull(resolved.manifest, request.include ?? [], request.exclude ?? [], name);
    const wanted = plan.layers.filter((layer) => layer.fetch);
    log.info({ kind: plan.kind, layers: wanted.length, skippedLayers: plan.layers.length - wanted.length, totalBytes: plan.totalBytes }, 'pulling model');

    const release = store.lease(wanted.map((layer) => layer.descriptor.digest));
    const temp = await models.createTemp();
    const abort = new AbortController();
    // Shared by every layer on purpose (the first failure stops them all): each running
    // download listens on it a few times (request, stream, retry sleep), more than the
    // default 10 once several layers run; the warning would be noise on the CLI's stderr.
    setMaxListeners(Math.max(10, 4 * wanted.length), abort.signal);
    const onOuterAbort = (): void => abort.abort(flight.signal.reason);
    flight.signal.addEventListener('abort', onOuterAbort, { once: true });
    const progress = new ProgressCounter(plan.totalBytes, (event) => {
      for (const waiter of flight.waiters()) waiter.context.onProgress?.(event);
    });
    try {
      const results = await Promise.allSettled(wanted.map((layer, index) => this.fetchAndPlace(layer, index, temp, plan, request, progress, abort)));
      const failure = results.find((result): result is PromiseRejectedResult => result.status === 'rejected');
      // The first failure aborts the others; report it, not the aborts it caused.
      if (failure) throw abort.signal.aborted && abort.signal.reason !== undefined ? abort.signal.reason : failure.reason;
      const files = results.reduce((sum, result) => sum + (result.status === 'fulfilled' ? result.value : 0), 0);
      if (files === 0 && (plan.include.length > 0 || plan.exclude.length > 0)) {
        throw new DriverError('INVALID_ATTRIBUTE', `include ${JSON.stringify(plan.include)} / exclude ${JSON.stringify(plan.exclude)} select no file of ${name}; check the globs against model-csi inspect`);
      }
      await checkSymlinksInside(temp, name);
      const blobs = wanted.filter((layer) => layer.format === 'raw').map((layer) => layer.descriptor.digest);
      const entry = await models.publish(key, temp, { digest: resolved.rootDigest, reference: name, blobs: [...new Set(blobs)] });
      log.info({ sizeBytes: entry.sizeBytes, path: entry.path }, 'model published');
      return { key, path: entry.path, digest: resolved.rootDigest, sizeBytes: entry.sizeBytes };
    } catch (err) {
      await models.discardTemp(temp).catch((cleanupError: unknown) => log.warn({ err: cleanupError }, 'could not remove the temp dir of a failed pull'));
      throw classifyFsError(err, `pulling ${name}`);
    } finally {
      flight.signal.removeEventListener('abort', onOuterAbort);
      release();
    }
  }

  /** Download one layer (under the download semaphore), then unpack it. Returns files written. */
  private async fetchAndPlace(
    layer: PlannedLayer,
    index: number,
    temp: string,
    plan: PullPlan,
    request: PullRequest,
    progress: ProgressCounter,
    abort: AbortController,
  ): Promise<number> {
    const { client, store, models } = this.deps;
    const desc = layer.descriptor;
    const where = `layer ${desc.digest} (${desc.mediaType}) of ${formatReference(request.reference)}`;
    let blobPath: string;
    // Where the registry redirected this pull's first request for the blob: its later pieces go there.
    const location = new BlobLocation();
    try {
      blobPath = await this.downloads.use(() =>
        store.ingest(
          desc,
          // `signal` is the shared download's (aborted only once every puller of this blob left).
          (offset, signal, attempt, end) => client.fetchBlob(request.reference, desc, { offset, end, auth: request.auth ?? {}, signal, attempt, location }),
          // Bytes received are counted in model_csi_pulled_bytes_total by the registry client.
          (event) => progress.set(index, event.doneBytes),
          // This pull's own: a failure of another of its layers detaches it from a blob
          // download other pulls share, and cancels the download only if none is left.
          { signal: abort.signal, retrier: client.retrier, connections: client.connectionsFor(request.reference) },
        ),
      );
    } catch (err) {
      abort.abort(err);
      throw err;
    }
    try {
      if (layer.format === 'raw') {
        await placeRawLayer({ blobPath, path: layer.path!, root: temp, where, models, ...(layer.metadata ? { metadata: layer.metadata } : {}) });
        return 1;
      }
      const result = await extractTarLayer({
        blobPath,
        format: layer.format,
        root: temp,
        filter: plan.filter,
        where,
        limits: defaultTarLimits(desc.size, layer.format),
        imageLayer: layer.imageLayer,
        share: (path, hex, mode) => models.shareFile(path, hex, mode),
      });
      return result.files;
    } catch (err) {
      abort.abort(err);
      throw err;
    }
  }
}

/** What an artifact holds, from the registry alone: no cache is opened or written. */
export async function inspectArtifact(client: RegistryClient, reference: Reference, auth?: RequestAuth): Promise<ArtifactInspection> {
  const resolved = await client.resolve(reference, { auth: auth ?? {} });
  const name = formatReference(reference);
  const manifest: ImageManifest = resolved.manifest;
  const description = describeArtifact(manifest, name);
  const inspection: ArtifactInspection = {
    reference: name,
    digest: resolved.rootDigest,
    manifestDigest: resolved.digest,
    mediaType: resolved.mediaType,
    kind: description.kind,
    totalBytes: manifest.layers.reduce((sum, layer) => sum + layer.size, 0),
    layers: description.layers.map((layer) => ({
      mediaType: layer.descriptor.mediaType,
      digest: layer.descriptor.digest,
      size: layer.descriptor.size,
      format: layer.format,
      ...(layer.path !== undefined ? { path: layer.path } : {}),
      ...(layer.role !== undefined ? { role: layer.role } : {}),
    })),
  };
  if (manifest.artifactType !== undefined) inspection.artifactType = manifest.artifactType;
  if (manifest.config?.mediaType !== undefined) inspection.configMediaType = manifest.config.mediaType;
  return inspection;
}

/** Sums per-layer byte counts (which may go back to 0 on a restart of that layer). */
class ProgressCounter {
  private readonly perLayer = new Map<number, number>();
  private done = 0;

  constructor(
    private readonly total: number,
    private readonly listener?: (progress: PullProgress) => void,
  ) {
    listener?.({ doneBytes: 0, totalBytes: total });
  }

  set(layer: number, bytes: number): void {
    this.done += bytes - (this.perLayer.get(layer) ?? 0);
    this.perLayer.set(layer, bytes);
    this.listener?.({ doneBytes: this.done, totalBytes: this.total });
  }
}
