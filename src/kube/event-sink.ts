import type { Logger } from '../log/logger.js';

/** The pod a volume is published for (kubelet's `csi.storage.k8s.io/pod.*` attributes, podInfoOnMount). */
export interface PodRef {
  namespace: string;
  name: string;
  uid: string;
}

export interface PodEvent {
  type: 'Normal' | 'Warning';
  reason: 'Pulling' | 'Pulled' | 'PullFailed';
  message: string;
}

/**
 * Where pod events go: the API server (`KubeEventSink`), or nowhere where none is reachable
 * (the CLI, the demo, csi-sanity). `emit` never throws and never waits for the API server: an
 * event is a courtesy to the user, never a reason for a publish to fail or slow down.
 */
export interface EventSink {
  emit(pod: PodRef, event: PodEvent): void;
}

/**
 * Events off: says so once in the log, at the first event it drops (not at start-up, where
 * a start-up failure must stay the one line on stderr), then drops every event.
 */
export class NoEventSink implements EventSink {
  private told = false;

  constructor(
    private readonly logger: Logger,
    private readonly why: string,
  ) {}

  emit(): void {
    if (this.told) return;
    this.told = true;
    this.logger.info({ why: this.why }, 'pod events are off');
  }
}
