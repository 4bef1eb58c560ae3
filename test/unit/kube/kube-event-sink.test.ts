import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import { eventName } from '../../../src/kube/kube-event-sink.js';

// Events of one pull often share a second; `kubectl describe pod` then shows them in name
// order, which must be the order they were emitted (Pulling before Pulled). The cluster e2e
// checks the order kubectl shows (test/cluster/e2e-model-cache.sh).
test('event names are <pod>.<hex nanoseconds>, fixed width and strictly increasing, so name order is emission order', () => {
  const names = Array.from({ length: 1000 }, () => eventName('reader-0'));
  for (const name of names) assert.match(name, /^reader-0\.[0-9a-f]{16}$/);
  assert.deepEqual([...names].sort(), names);
  assert.equal(new Set(names).size, names.length);
  const nanos = BigInt(`0x${names[0]!.split('.')[1]}`);
  assert.ok(Math.abs(Number(nanos / 1_000_000n) - Date.now()) < 5_000, 'wall-clock nanoseconds, as kubelet uses');
});
