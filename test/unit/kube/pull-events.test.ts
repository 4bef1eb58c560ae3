import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import type { EventSink, PodEvent, PodRef } from '../../../src/kube/event-sink.js';
import { PullEvents } from '../../../src/kube/pull-events.js';

// Which pod is told what, and how often. The events reaching a real API server are checked by
// the cluster e2e (test/cluster/e2e.sh); here the sink records what it is handed.
class RecordingSink implements EventSink {
  readonly events: Array<{ pod: string } & PodEvent> = [];
  emit(pod: PodRef, event: PodEvent): void {
    this.events.push({ pod: pod.name, ...event });
  }
  reasons(pod: string): string[] {
    return this.events.filter((e) => e.pod === pod).map((e) => e.reason);
  }
}

const pod = (name: string): PodRef => ({ namespace: 'ns', name, uid: `uid-${name}` });
const DIGEST = `sha256:${'a'.repeat(64)}`;

test('once per pull per pod: kubelet retries that join the same pull add no event; every waiter hears Pulled with the digest', () => {
  const sink = new RecordingSink();
  const events = new PullEvents(sink);
  events.started('k', 'reg/m:v1');
  events.waiting('k', pod('a'));
  assert.equal(sink.events.length, 0, 'Pulling waits for the size');
  events.sized('k', 3 * 2 ** 30);
  events.waiting('k', pod('a')); // kubelet's retry
  events.waiting('k', pod('b'));
  events.waiting('k', pod('b'));
  events.pulled('k', { digest: DIGEST, bytes: 3 * 2 ** 30, seconds: 10 });
  assert.deepEqual(sink.reasons('a'), ['Pulling', 'Pulled']);
  assert.deepEqual(sink.reasons('b'), ['Pulling', 'Pulled']);
  assert.equal(sink.events[0]!.message, 'Pulling reg/m:v1 (3.0 GiB)');
  assert.match(sink.events.at(-1)!.message, new RegExp(`^Pulled reg/m:v1 \\(${DIGEST}\\): 3\\.0 GiB in 10\\.0 s \\(322\\.1 MB/s\\)$`));
  // The retry after the pull finished is a cache hit: not told again.
  events.cacheHit('k', pod('a'), { reference: 'reg/m:v1', digest: DIGEST, bytes: 1 });
  assert.deepEqual(sink.reasons('a'), ['Pulling', 'Pulled']);
});

test('a cache hit is told once, with the digest; a pod without pod info is told nothing', () => {
  const sink = new RecordingSink();
  const events = new PullEvents(sink);
  events.cacheHit('k', pod('c'), { reference: 'reg/m:v1', digest: DIGEST, bytes: 2048 });
  events.cacheHit('k', pod('c'), { reference: 'reg/m:v1', digest: DIGEST, bytes: 2048 });
  events.cacheHit('k', undefined, { reference: 'reg/m:v1', digest: DIGEST, bytes: 2048 });
  assert.deepEqual(sink.events.map((e) => [e.pod, e.reason, e.type]), [['c', 'Pulled', 'Normal']]);
  assert.match(sink.events[0]!.message, new RegExp(`reg/m:v1 \\(${DIGEST}\\) is already on the node: 2\\.0 KiB from the cache`));
});

test('a failed pull tells its waiters PullFailed with the code and message, as a Warning; the next pull starts afresh', () => {
  const sink = new RecordingSink();
  const events = new PullEvents(sink);
  events.started('k', 'reg/m:v1');
  events.waiting('k', pod('d'));
  events.failed('k', { code: 'UNSUPPORTED_MEDIA_TYPE', message: 'layer type application/x-unknown is not a model layer' });
  assert.deepEqual(sink.events, [
    { pod: 'd', type: 'Warning', reason: 'PullFailed', message: 'Pulling reg/m:v1 failed: UNSUPPORTED_MEDIA_TYPE: layer type application/x-unknown is not a model layer' },
  ]);
  events.started('k', 'reg/m:v1');
  events.waiting('k', pod('d'));
  events.sized('k', 10);
  assert.deepEqual(sink.reasons('d'), ['PullFailed', 'Pulling'], 'a new pull is a new Pulling');
});
