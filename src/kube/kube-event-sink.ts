import { CoreV1Api, type KubeConfig } from '@kubernetes/client-node';
import { scrubSecrets } from '../errors/scrub.js';
import type { Logger } from '../log/logger.js';
import type { EventSink, PodEvent, PodRef } from './event-sink.js';

/** Component name on the events, as `kubectl describe pod` shows it in FROM. */
const COMPONENT = 'model.csi.example.org';

/**
 * Core v1 Events on pods through the API server, with the node plugin's service account
 * (in-cluster config). Fire and forget: a refused or failed create is logged (at most once a
 * minute, so an API outage does not flood the log) and dropped.
 */
export class KubeEventSink implements EventSink {
  private lastFailureLog = 0;

  private readonly api: CoreV1Api;

  /** `config` from apiServerConfig (api-server.ts). */
  constructor(
    config: KubeConfig,
    private readonly nodeId: string,
    private readonly logger: Logger,
  ) {
    this.api = config.makeApiClient(CoreV1Api);
  }

  emit(pod: PodRef, event: PodEvent): void {
    const now = new Date();
    const body = {
      metadata: { name: eventName(pod.name), namespace: pod.namespace },
      involvedObject: { apiVersion: 'v1', kind: 'Pod', namespace: pod.namespace, name: pod.name, uid: pod.uid },
      type: event.type,
      reason: event.reason,
      // Messages are built from references, digests and error messages, which never hold a
      // credential; scrubbed anyway, as everything leaving the driver is.
      message: scrubSecrets(event.message).slice(0, 1024),
      source: { component: COMPONENT, host: this.nodeId },
      reportingComponent: COMPONENT,
      reportingInstance: this.nodeId,
      firstTimestamp: now,
      lastTimestamp: now,
      count: 1,
    };
    this.api.createNamespacedEvent({ namespace: pod.namespace, body }).catch((err: unknown) => {
      if (Date.now() - this.lastFailureLog < 60_000) return;
      this.lastFailureLog = Date.now();
      this.logger.warn({ err: scrubSecrets(String((err as Error).message ?? err)), reason: event.reason, pod: `${pod.namespace}/${pod.name}` }, 'cannot create a pod event');
    });
  }
}

let lastNanos = 0n;

/**
 * `<pod>.<hex nanoseconds>`, as kubelet's recorder names events. Timestamps on core v1 events
 * have whole seconds, so a Pulling and a Pulled of a small model tie; `kubectl describe pod`
 * lists them in name order then, and hex nanoseconds (16 digits until the year 2262, and
 * strictly increasing in this process) make name order the order they happened in.
 */
export function eventName(podName: string): string {
  const wall = BigInt(Date.now()) * 1_000_000n + (process.hrtime.bigint() % 1_000_000n);
  lastNanos = wall > lastNanos ? wall : lastNanos + 1n;
  return `${podName}.${lastNanos.toString(16)}`;
}
