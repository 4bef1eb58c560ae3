import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/**
 * Every metric the driver exports, created once per process and passed down. Labels never
 * carry credentials; references are labelled by registry host only to bound cardinality.
 */
export class Metrics {
  readonly registry = new Registry();

  readonly csiCalls = new Counter({
    name: 'model_csi_rpc_total',
    help: 'CSI calls by method and gRPC code',
    labelNames: ['method', 'code'] as const,
    registers: [this.registry],
  });
  readonly csiCallSeconds = new Histogram({
    name: 'model_csi_rpc_duration_seconds',
    help: 'CSI call duration by method',
    labelNames: ['method'] as const,
    buckets: [0.001, 0.005, 0.02, 0.1, 0.5, 2, 10, 60, 120],
    registers: [this.registry],
  });
  readonly pullSeconds = new Histogram({
    name: 'model_csi_pull_duration_seconds',
    help: 'Duration of completed model pulls',
    labelNames: ['result'] as const,
    buckets: [1, 5, 15, 30, 60, 120, 300, 600, 1200, 3600, 7200],
    registers: [this.registry],
  });
  readonly bytesPulled = new Counter({
    name: 'model_csi_pulled_bytes_total',
    help: 'Bytes received from registries (after resume, not counting bytes already on disk)',
    labelNames: ['registry'] as const,
    registers: [this.registry],
  });
  readonly registryRetries = new Counter({
    name: 'model_csi_registry_retries_total',
    help: 'Registry requests retried after a retryable failure (manifests and blob resumes), by error code',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });
  readonly pullFailures = new Counter({
    name: 'model_csi_pull_failures_total',
    help: 'Failed pulls by error code',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });
  readonly pullsInFlight = new Gauge({
    name: 'model_csi_pulls_in_flight',
    help: 'Model pulls currently running',
    registers: [this.registry],
  });
  readonly cacheBytes = new Gauge({
    name: 'model_csi_cache_bytes',
    help: 'Bytes used by the node cache',
    registers: [this.registry],
  });
  readonly cacheHits = new Counter({
    name: 'model_csi_cache_hits_total',
    help: 'Publishes served from a model already in the cache',
    registers: [this.registry],
  });
  readonly cacheMisses = new Counter({
    name: 'model_csi_cache_misses_total',
    help: 'Publishes that needed a pull',
    registers: [this.registry],
  });
  readonly evictions = new Counter({
    name: 'model_csi_cache_evictions_total',
    help: 'Models evicted from the cache',
    registers: [this.registry],
  });
  readonly mountedVolumes = new Gauge({
    name: 'model_csi_mounted_volumes',
    help: 'Volumes currently published on this node',
    registers: [this.registry],
  });

  constructor(options: { defaultMetrics?: boolean } = {}) {
    if (options.defaultMetrics ?? true) collectDefaultMetrics({ register: this.registry });
  }
}
