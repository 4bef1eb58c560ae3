import { formatBytes } from '../config/quantity.js';
import type { EventSink, PodRef } from './event-sink.js';

/** Pods remembered as told "Pulled" for a model, so a kubelet retry that now hits the cache is not told again. */
const TOLD_LIMIT = 4096;

interface PullWatchers {
  reference: string;
  totalBytes: number | undefined;
  /** pod uid → pod, and whether it has had its `Pulling` event. */
  pods: Map<string, { pod: PodRef; toldPulling: boolean }>;
}

/**
 * Which pod hears what about a pull: `Pulling` (reference, size) once per pull per pod,
 * `Pulled` (digest, bytes, seconds, MB/s; or a cache hit, still with the digest) and
 * `PullFailed` (code and message) to every pod that waited on that pull, whichever of its
 * kubelet retries was waiting when the pull ended. Keyed by model key: one pull per key at a
 * time (PullTracker).
 */
export class PullEvents {
  private readonly pulls = new Map<string, PullWatchers>();
  private readonly told = new Set<string>();

  constructor(private readonly sink: EventSink) {}

  /** A pull of `key` begins (before its size is known). */
  started(key: string, reference: string): void {
    this.pulls.set(key, { reference, totalBytes: undefined, pods: new Map() });
  }

  /** `pod` waits on the running pull of `key` (its first ask or a retry). */
  waiting(key: string, pod: PodRef | undefined): void {
    const pull = this.pulls.get(key);
    if (pull === undefined || pod === undefined || pull.pods.has(pod.uid)) return;
    pull.pods.set(pod.uid, { pod, toldPulling: false });
    this.tellPulling(pull);
  }

  /** The pull knows how much it will fetch. */
  sized(key: string, totalBytes: number): void {
    const pull = this.pulls.get(key);
    if (pull === undefined) return;
    pull.totalBytes = totalBytes;
    this.tellPulling(pull);
  }

  pulled(key: string, result: { digest: string; bytes: number; seconds: number }): void {
    const pull = this.pulls.get(key);
    this.pulls.delete(key);
    if (pull === undefined) return;
    const rate = result.seconds > 0 ? result.bytes / result.seconds / 1e6 : 0;
    const message = `Pulled ${pull.reference} (${result.digest}): ${formatBytes(result.bytes)} in ${result.seconds.toFixed(1)} s (${rate.toFixed(1)} MB/s)`;
    for (const { pod } of pull.pods.values()) {
      this.remember(pod, key);
      this.sink.emit(pod, { type: 'Normal', reason: 'Pulled', message });
    }
  }

  failed(key: string, error: { code: string; message: string }): void {
    const pull = this.pulls.get(key);
    this.pulls.delete(key);
    if (pull === undefined) return;
    for (const { pod } of pull.pods.values()) {
      this.sink.emit(pod, pullFailed(pull.reference, error));
    }
  }

  /** `pod` was refused `reference` before any pull began (the signature policy): one PullFailed, as a failed pull tells. */
  refused(pod: PodRef | undefined, reference: string, error: { code: string; message: string }): void {
    if (pod === undefined) return;
    this.sink.emit(pod, pullFailed(reference, error));
  }

  /** `pod` got `key` from the node cache: told once, unless it was told of the pull that brought it. */
  cacheHit(key: string, pod: PodRef | undefined, model: { reference: string; digest: string; bytes: number }): void {
    if (pod === undefined || this.told.has(`${pod.uid}\0${key}`)) return;
    this.remember(pod, key);
    this.sink.emit(pod, {
      type: 'Normal',
      reason: 'Pulled',
      message: `${model.reference} (${model.digest}) is already on the node: ${formatBytes(model.bytes)} from the cache, nothing pulled`,
    });
  }

  private tellPulling(pull: PullWatchers): void {
    if (pull.totalBytes === undefined) return;
    for (const watcher of pull.pods.values()) {
      if (watcher.toldPulling) continue;
      watcher.toldPulling = true;
      this.sink.emit(watcher.pod, { type: 'Normal', reason: 'Pulling', message: `Pulling ${pull.reference} (${formatBytes(pull.totalBytes)})` });
    }
  }

  private remember(pod: PodRef, key: string): void {
    if (this.told.size >= TOLD_LIMIT) this.told.delete(this.told.values().next().value!);
    this.told.add(`${pod.uid}\0${key}`);
  }
}

function pullFailed(reference: string, error: { code: string; message: string }) {
  return { type: 'Warning', reason: 'PullFailed', message: `Pulling ${reference} failed: ${error.code}: ${error.message}` } as const;
}
