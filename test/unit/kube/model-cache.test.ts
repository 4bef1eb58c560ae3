import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import { refreshSeconds, selectsNode, summarize, summaryCurrent, warmKey, type ModelCache, type NodeStatus } from '../../../src/kube/model-cache.js';

const D1 = `sha256:${'1'.repeat(64)}`;
const D2 = `sha256:${'2'.repeat(64)}`;
const cache = (spec: Partial<ModelCache['spec']> = {}, nodes: NodeStatus[] = []): ModelCache => ({
  metadata: { name: 'm', uid: 'u' },
  spec: { reference: 'reg/m:v1', ...spec },
  status: { nodes },
});
const entry = (node: string, phase: NodeStatus['phase'], digest?: string): NodeStatus => ({ node, phase, ...(digest ? { digest } : {}), lastTransitionTime: '2026-12-02T00:00:00Z' });

test('an empty or absent nodeSelector selects every node; otherwise every label must match', () => {
  const gpu = { name: 'a', labels: { pool: 'gpu', zone: 'z1' } };
  const cpu = { name: 'b', labels: { pool: 'cpu' } };
  assert.equal(selectsNode(cache(), cpu), true);
  assert.equal(selectsNode(cache({ nodeSelector: {} }), cpu), true);
  assert.equal(selectsNode(cache({ nodeSelector: { pool: 'gpu' } }), gpu), true);
  assert.equal(selectsNode(cache({ nodeSelector: { pool: 'gpu' } }), cpu), false);
  assert.equal(selectsNode(cache({ nodeSelector: { pool: 'gpu', zone: 'z2' } }), gpu), false);
});

test('summary: Ready entries among the nodes selected now; entries of nodes that left or stopped matching do not count', () => {
  const nodes = [
    { name: 'a', labels: { pool: 'gpu' } },
    { name: 'b', labels: { pool: 'gpu' } },
    { name: 'c', labels: { pool: 'gpu' } },
    { name: 'cpu-1', labels: { pool: 'cpu' } },
  ];
  const c = cache({ nodeSelector: { pool: 'gpu' } }, [entry('a', 'Ready', D1), entry('b', 'Ready', D1), entry('c', 'Pulling'), entry('gone', 'Ready', D1), entry('cpu-1', 'Ready', D1)]);
  assert.deepEqual(summarize(c, nodes), { ready: '2/3', readyNodes: 2, selectedNodes: 3, digest: D1 });
  // node b leaves the cluster: 1/2
  assert.deepEqual(summarize(c, nodes.filter((n) => n.name !== 'b')), { ready: '1/2', readyNodes: 1, selectedNodes: 2, digest: D1 });
  // no node yet: 0/0 and no digest
  assert.deepEqual(summarize(cache(), []), { ready: '0/0', readyNodes: 0, selectedNodes: 0 });
});

test('summary digest while a tag moves: the digest most Ready nodes hold', () => {
  const nodes = ['a', 'b', 'c'].map((name) => ({ name, labels: {} }));
  const c = cache({}, [entry('a', 'Ready', D2), entry('b', 'Ready', D1), entry('c', 'Ready', D2)]);
  assert.equal(summarize(c, nodes).digest, D2);
});

test('summaryCurrent: no write when the status already says it', () => {
  const nodes = [{ name: 'a', labels: {} }];
  const c = cache({}, [entry('a', 'Ready', D1)]);
  const summary = summarize(c, nodes);
  assert.equal(summaryCurrent(c, summary), false);
  c.status = { ...c.status, ready: '1/1', readyNodes: 1, selectedNodes: 1, digest: D1 };
  assert.equal(summaryCurrent(c, summary), true);
});

test('refreshInterval: h/m/s, at least 30 s, 10 minutes when absent or malformed', () => {
  assert.equal(refreshSeconds({ reference: 'r' }), 600);
  assert.equal(refreshSeconds({ reference: 'r', refreshInterval: '1h30m' }), 5400);
  assert.equal(refreshSeconds({ reference: 'r', refreshInterval: '45s' }), 45);
  assert.equal(refreshSeconds({ reference: 'r', refreshInterval: '5s' }), 30);
  assert.equal(refreshSeconds({ reference: 'r', refreshInterval: 'soon' }), 600);
});

test('warmKey: the work a spec asks for; an edit that changes no work keeps the key', () => {
  const base = { reference: 'reg/m:v1', pin: true, include: ['*.json'] };
  assert.equal(warmKey(base), warmKey({ ...base }));
  assert.equal(warmKey({ ...base, nodeSelector: { a: 'b' } }), warmKey(base), 'the selector decides where, not what');
  assert.equal(warmKey({ ...base, refreshInterval: '10m' }), warmKey(base), 'the default spelt out');
  for (const changed of [{ reference: 'reg/m:v2' }, { pin: false }, { include: ['*.bin'] }, { exclude: ['x'] }, { pullSecretRef: { name: 's', namespace: 'n' } }, { refreshInterval: '1m' }]) {
    assert.notEqual(warmKey({ ...base, ...changed }), warmKey(base), JSON.stringify(changed));
  }
});
