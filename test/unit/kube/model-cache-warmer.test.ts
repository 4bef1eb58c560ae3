import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { pino } from 'pino';
import { DriverError } from '../../../src/errors/driver-error.js';
import type { ModelCache, NodeStatus } from '../../../src/kube/model-cache.js';
import { ModelCacheWarmer, type WarmerApi } from '../../../src/kube/model-cache-warmer.js';
import type { AcquiredModel, ModelRequest, ModelSource } from '../../../src/node/model-source.js';

// The node side of ModelCache: which caches a node warms, what it pins, what it reports and
// in what order. The ModelSource is scripted here (the product's source is tested with a
// real registry in test/integration; warm + pod sharing one pull, pins under eviction
// pressure and status on a real API server are in the cluster e2e, test/cluster/).

const DIGEST = `sha256:${'d'.repeat(64)}`;
const logger = pino({ level: 'silent' });

/** Each reference answers from its script: 'pulling' (PULL_IN_PROGRESS) or an error or a model, in turn; the last step repeats. */
class ScriptedSource implements ModelSource {
  readonly requests: ModelRequest[] = [];
  constructor(private readonly scripts: Record<string, Array<'pulling' | Error | AcquiredModel>>) {}
  async acquire(request: ModelRequest): Promise<AcquiredModel> {
    this.requests.push(request);
    const script = this.scripts[request.reference]!;
    const step = script.length > 1 ? script.shift()! : script[0]!;
    if (step === 'pulling') throw new DriverError('PULL_IN_PROGRESS', `pulling ${request.reference}: 1 of 4`, { retryable: true });
    if (step instanceof Error) throw step;
    return step;
  }
}

class RecordingApi implements WarmerApi {
  readonly writes: Array<{ cache: string; entry: NodeStatus | undefined }> = [];
  secrets: Record<string, string> = {};
  async pullSecret(ref: { name: string; namespace: string }): Promise<string> {
    const secret = this.secrets[`${ref.namespace}/${ref.name}`];
    if (secret === undefined) throw new DriverError('INVALID_SECRET', `cannot read Secret ${ref.namespace}/${ref.name}`);
    return secret;
  }
  readonly uids: Array<string | undefined> = [];
  async applyNodeStatus(cache: { name: string; uid?: string | undefined }, entry: NodeStatus | undefined): Promise<void> {
    await sleep(Math.random() * 3); // writes must land in order whatever each one takes
    this.writes.push({ cache: cache.name, entry });
    this.uids.push(cache.uid);
  }
  phases(cache: string): string[] {
    return this.writes.filter((w) => w.cache === cache).map((w) => w.entry?.phase ?? 'removed');
  }
  last(cache: string): NodeStatus | undefined {
    return this.writes.filter((w) => w.cache === cache).at(-1)?.entry;
  }
}

const model = (key: string, digest = DIGEST): AcquiredModel => ({ path: `/cache/models/${key}`, digest, modelKey: key, sizeBytes: 4096 });
const modelCache = (name: string, spec: Partial<ModelCache['spec']> = {}, uid = `uid-${name}`): ModelCache => ({
  metadata: { name, uid },
  spec: { reference: `reg/${name}:v1`, ...spec },
});
const node = { name: 'node-a', labels: { pool: 'gpu' } };

function warmer(source: ModelSource, api: WarmerApi, progress?: { doneBytes: number; totalBytes: number }) {
  return new ModelCacheWarmer({ nodeName: 'node-a', source, api, logger, pollMs: 1, retryMs: 5, refreshMs: () => 60_000, progressOf: () => progress });
}

async function until(check: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 400 && !check(); i++) await sleep(5);
  assert.ok(check(), what);
}

test('a cache that selects this node is pulled and reported Pulling (with progress) then Ready with digest and bytes; one that does not is left alone', async () => {
  const source = new ScriptedSource({ 'reg/a:v1': ['pulling', 'pulling', model('ka')], 'reg/b:v1': [model('kb')] });
  const api = new RecordingApi();
  const w = warmer(source, api, { doneBytes: 1024, totalBytes: 4096 });
  w.sync([modelCache('a', { nodeSelector: { pool: 'gpu' } }), modelCache('b', { nodeSelector: { pool: 'cpu' } })], node);
  await until(() => api.last('a')?.phase === 'Ready', 'a Ready');
  await w.flush();
  assert.deepEqual(api.phases('a'), ['Pulling', 'Ready'], 'progress that did not change is not written again');
  const pulling = api.writes[0]!.entry!;
  assert.equal(pulling.node, 'node-a');
  assert.equal(pulling.progress, '25%');
  assert.equal(pulling.bytes, 4096);
  const ready = api.last('a')!;
  assert.equal(ready.digest, DIGEST);
  assert.equal(ready.bytes, 4096);
  assert.equal(ready.progress, '100%');
  assert.match(ready.lastTransitionTime, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
  assert.deepEqual(api.phases('b'), [], 'b selects other nodes');
  assert.ok(api.uids.every((uid) => uid === 'uid-a'), 'every write names the object it is about (a uid precondition)');
  assert.ok(source.requests.every((r) => r.reference === 'reg/a:v1' && r.pod === undefined), 'no pod: no pod events');
  w.stop();
});

test('pin: the model key is pinned once Ready; unpinned caches pin nothing; deleting the cache unpins without writing to it', async () => {
  const source = new ScriptedSource({ 'reg/p:v1': [model('kp')], 'reg/u:v1': [model('ku')] });
  const api = new RecordingApi();
  const w = warmer(source, api);
  const caches = [modelCache('p', { pin: true }), modelCache('u')];
  w.sync(caches, node);
  await until(() => api.last('p')?.phase === 'Ready' && api.last('u')?.phase === 'Ready', 'both Ready');
  assert.deepEqual([...w.pinnedKeys()], ['kp']);
  assert.match(api.last('p')!.message!, /pinned/);
  w.sync([caches[1]!], node); // p deleted
  await w.flush();
  assert.deepEqual([...w.pinnedKeys()], []);
  assert.deepEqual(api.phases('p'), ['Ready'], 'a deleted cache takes its status with it: nothing to remove');
  w.stop();
});

test('a node that stops matching drops its warm, its pin and its own status entry; the cache is kept', async () => {
  const source = new ScriptedSource({ 'reg/p:v1': [model('kp')] });
  const api = new RecordingApi();
  const w = warmer(source, api);
  const cache = modelCache('p', { pin: true, nodeSelector: { pool: 'gpu' } });
  w.sync([cache], node);
  await until(() => api.last('p')?.phase === 'Ready', 'Ready');
  w.sync([cache], { name: 'node-a', labels: { pool: 'cpu' } });
  await w.flush();
  assert.deepEqual(api.phases('p'), ['Ready', 'removed']);
  assert.deepEqual([...w.pinnedKeys()], []);
  w.stop();
});

test('a pin that cannot fit: Failed with RESOURCE_EXHAUSTED and the stable code, nothing pinned; retried, and Ready once it fits', async () => {
  const noSpace = new DriverError('NO_SPACE', 'reg/p:v1 needs 4.0 KiB but the cache budget of 1.0 KiB has 0 B free after evicting every unused model');
  const source = new ScriptedSource({ 'reg/p:v1': [noSpace, model('kp')] });
  const api = new RecordingApi();
  const w = warmer(source, api);
  w.sync([modelCache('p', { pin: true })], node);
  await until(() => api.last('p')?.phase === 'Ready', 'Ready after the retry');
  const failed = api.writes.find((x) => x.entry?.phase === 'Failed')!.entry!;
  assert.match(failed.message!, /^RESOURCE_EXHAUSTED \(NO_SPACE\): reg\/p:v1 needs/);
  assert.deepEqual([...w.pinnedKeys()], ['kp']);
  w.stop();
});

test('pullSecretRef: its .dockerconfigjson is the request\'s credentials; a missing Secret is Failed naming it; messages are scrubbed', async () => {
  const config = '{"auths":{"reg":{"auth":"dTpw"}}}';
  const source = new ScriptedSource({ 'reg/s:v1': [new DriverError('REGISTRY_UNAUTHORIZED', 'reg refused {"auth":"dTpw"}')] });
  const api = new RecordingApi();
  const w = warmer(source, api);
  w.sync([modelCache('s', { pullSecretRef: { name: 'creds', namespace: 'team' } })], node);
  await until(() => api.last('s')?.phase === 'Failed', 'Failed');
  assert.match(api.last('s')!.message!, /^INVALID_ARGUMENT \(INVALID_SECRET\): cannot read Secret team\/creds/);
  api.secrets['team/creds'] = config;
  await until(() => source.requests.length > 0, 'retried with the Secret');
  assert.equal(source.requests[0]!.dockerConfigJson, config);
  await until(() => /REGISTRY_UNAUTHORIZED/.test(api.last('s')?.message ?? ''), 'the registry refusal');
  assert.doesNotMatch(JSON.stringify(api.writes), /dTpw/);
  w.stop();
});

test('an edit that changes the work restarts the warm; a re-list with the same spec does not; a new object of the same name does', async () => {
  const source = new ScriptedSource({ 'reg/a:v1': [model('k1')], 'reg/a:v2': [model('k2', `sha256:${'e'.repeat(64)}`)] });
  const api = new RecordingApi();
  const w = warmer(source, api);
  w.sync([modelCache('a')], node);
  await until(() => api.last('a')?.phase === 'Ready', 'Ready');
  w.sync([modelCache('a', { nodeSelector: {} })], node);
  await sleep(20);
  assert.equal(source.requests.length, 1, 'same work: nothing restarted');
  w.sync([modelCache('a', { reference: 'reg/a:v2' })], node);
  await until(() => api.last('a')?.digest === `sha256:${'e'.repeat(64)}`, 'the new reference is Ready');
  w.sync([modelCache('a', { reference: 'reg/a:v2' }, 'uid-recreated')], node);
  await until(() => source.requests.length === 3, 'recreated: warmed again');
  w.stop();
});

test('the tag is resolved at the registry at start and every refresh (Always); an outage then keeps the node Ready on the digest it holds', async () => {
  const outage = new DriverError('REGISTRY_UNAVAILABLE', 'reg is not answering', { retryable: true });
  const source = new ScriptedSource({ 'reg/a:v1': [model('k1'), outage, model('k1')] });
  const api = new RecordingApi();
  const w = new ModelCacheWarmer({ nodeName: 'node-a', source, api, logger, pollMs: 1, retryMs: 5, refreshMs: () => 10, progressOf: () => undefined });
  w.sync([modelCache('a')], node);
  await until(() => /resolving the tag failed/.test(api.last('a')?.message ?? ''), 'Ready with a note');
  assert.deepEqual(
    source.requests.slice(0, 3).map((r) => r.pullPolicy),
    ['Always', 'Always', 'IfNotPresent'],
    'not what this node saw last: what the tag names now',
  );
  assert.equal(api.last('a')!.phase, 'Ready');
  assert.ok(!api.phases('a').includes('Failed'));
  w.stop();
});

test('an outage with nothing on the node for the tag is Failed with the registry\'s reason (not the fallback\'s)', async () => {
  const outage = new DriverError('REGISTRY_UNAVAILABLE', 'reg is not answering', { retryable: true });
  const source = new ScriptedSource({ 'reg/a:v1': [outage, new DriverError('MANIFEST_NOT_FOUND', 'no tag in the node cache')] });
  const api = new RecordingApi();
  const w = warmer(source, api);
  w.sync([modelCache('a')], node);
  await until(() => api.last('a')?.phase === 'Failed', 'Failed');
  assert.match(api.last('a')!.message!, /^UNAVAILABLE \(REGISTRY_UNAVAILABLE\): reg is not answering/);
  w.stop();
});

test('an unpinned model the budget evicts: its entry stops saying Ready (Failed, evicted) until the next refresh warms it again', async () => {
  const source = new ScriptedSource({ 'reg/u:v1': [model('ku')], 'reg/o:v1': [model('ko')] });
  const api = new RecordingApi();
  const w = warmer(source, api);
  w.sync([modelCache('u'), modelCache('o')], node);
  await until(() => api.last('u')?.phase === 'Ready' && api.last('o')?.phase === 'Ready', 'Ready');
  w.evicted('ku');
  await w.flush();
  assert.equal(api.last('u')!.phase, 'Failed');
  assert.match(api.last('u')!.message!, /evicted from this node by the cache budget/);
  assert.equal(api.last('o')!.phase, 'Ready', 'another model\'s cache is untouched');
  assert.equal(source.requests.filter((r) => r.reference === 'reg/u:v1').length, 1, 'not pulled back at once');
  w.stop();
});
