import type { PodRef } from '../kube/event-sink.js';
import type { Logger } from '../log/logger.js';

/**
 * The seam between the node service and whatever produces a complete model directory on
 * this node. NodePublishVolume only ever bind-mounts what `acquire` returns; how the model got
 * there (already cached, pulled now, joined an in-flight pull) is the source's business.
 */
export interface ModelRequest {
  /** The `reference` volume attribute, as the user wrote it. */
  reference: string;
  /** Globs from `include` / `exclude` (already split on commas, trimmed, non-empty). */
  include: readonly string[];
  exclude: readonly string[];
  pullPolicy: 'IfNotPresent' | 'Always';
  /** `.dockerconfigjson` payload from the call's secrets, if any. Never logged. */
  dockerConfigJson?: string;
  /** The pod that asked (kubelet's pod info), told of the pull with events. */
  pod?: PodRef;
}

export interface AcquiredModel {
  /** Absolute path of the complete, read-only model directory in the cache. */
  path: string;
  /** `sha256:…` manifest digest the directory holds. */
  digest: string;
  /** Stable key of the cached model (digest plus selection), used for in-use tracking. */
  modelKey: string;
  /** Bytes of the model on disk. */
  sizeBytes: number;
}

export interface ModelSource {
  /**
   * Resolve and make the model present. Waits at most `waitMs` for a pull in progress;
   * past that it throws a retryable DriverError (PULL_IN_PROGRESS) whose message shows
   * progress. Abandoning the wait never cancels the pull.
   */
  acquire(request: ModelRequest, options: { waitMs: number; log: Logger }): Promise<AcquiredModel>;
}
