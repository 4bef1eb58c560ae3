import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, beforeEach, describe, test } from 'node:test';
import { status } from '@grpc/grpc-js';
import { pino } from 'pino';
import type { CallContext, CsiHandlers } from '../../../src/csi/call-wrapper.js';
import { isDriverError } from '../../../src/errors/driver-error.js';
import { Metrics } from '../../../src/metrics/metrics.js';
import { CachedModelSource } from '../../helpers/cached-model-source.js';
import { NodeService } from '../../../src/node/node-service.js';
import { FakeMounter } from '../../helpers/fake-mounter.js';

const HEX = 'a'.repeat(64);
const REFERENCE = `127.0.0.1:5000/models/tiny@sha256:${HEX}`;
const context: CallContext = { log: pino({ level: 'silent' }), deadline: Infinity };

let root: string;
let pods: string;
let mounter: FakeMounter;
let node: NodeService;
let handlers: CsiHandlers;

function publishRequest(target: string, overrides: Record<string, unknown> = {}) {
  return {
    volume_id: 'vol-1',
    target_path: target,
    volume_capability: { mount: { fs_type: '', mount_flags: [] }, access_mode: { mode: 'SINGLE_NODE_READER_ONLY' } },
    readonly: true,
    secrets: {},
    volume_context: { 'model.csi.example.org/reference': REFERENCE },
    ...overrides,
  };
}

async function expectStatus(call: Promise<unknown>, grpcStatus: status, code?: string): Promise<void> {
  await assert.rejects(call, (err: unknown) => {
    assert.ok(isDriverError(err), `expected a DriverError, got ${String(err)}`);
    assert.equal(err.grpcStatus, grpcStatus, err.message);
    if (code !== undefined) assert.equal(err.code, code);
    return true;
  });
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(() => true, () => false);
}

async function recordCount(): Promise<number> {
  return (await readdir(join(root, 'state', 'volumes'))).filter((n) => n.endsWith('.json')).length;
}

before(async () => {
  root = await mkdtemp(join(tmpdir(), 'model-csi-unit-'));
  pods = join(root, 'pods');
  await mkdir(pods);
  const model = join(root, 'models', 'sha256', HEX);
  await mkdir(join(model, 'weights'), { recursive: true });
  await writeFile(join(model, 'config.json'), '{}');
  await writeFile(join(model, 'weights', 'w.bin'), 'x'.repeat(10_000));
});

after(async () => {
  await rm(root, { recursive: true, force: true });
});

beforeEach(async () => {
  await rm(join(root, 'state'), { recursive: true, force: true });
  mounter = new FakeMounter();
  node = await NodeService.create({
    nodeId: 'n1', root, mounter, modelSource: new CachedModelSource(root),
    metrics: new Metrics({ defaultMetrics: false }), logger: pino({ level: 'silent' }), publishWaitMs: 1000,
  });
  handlers = node.handlers();
});

describe('NodePublishVolume idempotency table', () => {
  test('first publish creates the target, mounts the model and records it', async () => {
    const target = join(pods, 'first');
    await handlers['NodePublishVolume']!(publishRequest(target), context);
    assert.equal(mounter.mounts.get(target), join(root, 'models', 'sha256', HEX));
    assert.ok((await stat(target)).isDirectory());
    assert.equal(await recordCount(), 1);
    assert.deepEqual([...node.inUseModelKeys()], [`sha256/${HEX}`]);
  });

  test('same target + same arguments → OK without a second mount', async () => {
    const target = join(pods, 'same');
    await handlers['NodePublishVolume']!(publishRequest(target), context);
    await handlers['NodePublishVolume']!(publishRequest(target), context);
    assert.equal(mounter.bindCalls, 1);
  });

  test('same target + different arguments → ALREADY_EXISTS', async () => {
    const target = join(pods, 'different');
    await handlers['NodePublishVolume']!(publishRequest(target), context);
    const other = publishRequest(target, {
      volume_context: { 'model.csi.example.org/reference': REFERENCE, 'model.csi.example.org/subPath': 'weights' },
    });
    await expectStatus(handlers['NodePublishVolume']!(other, context), status.ALREADY_EXISTS, 'VOLUME_CONFLICT');
    await expectStatus(handlers['NodePublishVolume']!(publishRequest(target, { volume_id: 'vol-2' }), context), status.ALREADY_EXISTS);
  });

  test('concurrent identical publishes of one target mount once', async () => {
    const target = join(pods, 'concurrent');
    await Promise.all([1, 2, 3].map(() => handlers['NodePublishVolume']!(publishRequest(target), context)));
    assert.equal(mounter.bindCalls, 1);
  });

  test('a record whose target is no longer mounted is stale: publish mounts again', async () => {
    const target = join(pods, 'stale');
    await handlers['NodePublishVolume']!(publishRequest(target), context);
    mounter.mounts.delete(target); // unmounted behind our back
    await handlers['NodePublishVolume']!(publishRequest(target), context);
    assert.equal(mounter.bindCalls, 2);
    assert.ok(await mounter.isMountPoint(target));
  });

  test('a failed mount leaves neither the target nor a record', async () => {
    const target = join(pods, 'failing');
    mounter.failNextBind = true;
    await assert.rejects(handlers['NodePublishVolume']!(publishRequest(target), context));
    assert.equal(await exists(target), false);
    assert.equal(await recordCount(), 0);
  });
});

describe('NodeUnpublishVolume', () => {
  test('unmounts, removes the target and the record; a repeat is OK', async () => {
    const target = join(pods, 'unpublish');
    await handlers['NodePublishVolume']!(publishRequest(target), context);
    await handlers['NodeUnpublishVolume']!({ volume_id: 'vol-1', target_path: target }, context);
    assert.equal(await mounter.isMountPoint(target), false);
    assert.equal(await exists(target), false);
    assert.equal(await recordCount(), 0);
    await handlers['NodeUnpublishVolume']!({ volume_id: 'vol-1', target_path: target }, context);
  });

  test('an unknown, unmounted target → OK and its directory removed', async () => {
    const target = join(pods, 'unknown');
    await mkdir(target);
    await handlers['NodeUnpublishVolume']!({ volume_id: 'vol-x', target_path: target }, context);
    assert.equal(await exists(target), false);
  });

  test('another volume\'s target is not unmounted', async () => {
    const target = join(pods, 'foreign');
    await handlers['NodePublishVolume']!(publishRequest(target), context);
    await expectStatus(handlers['NodeUnpublishVolume']!({ volume_id: 'vol-2', target_path: target }, context), status.NOT_FOUND);
    assert.ok(await mounter.isMountPoint(target));
  });
});

describe('argument checks', () => {
  const target = () => join(pods, 'args');

  test('missing fields → INVALID_ARGUMENT', async () => {
    await expectStatus(handlers['NodePublishVolume']!(publishRequest(target(), { volume_id: '' }), context), status.INVALID_ARGUMENT);
    await expectStatus(handlers['NodePublishVolume']!(publishRequest('', {}), context), status.INVALID_ARGUMENT);
    await expectStatus(handlers['NodePublishVolume']!(publishRequest(target(), { volume_capability: null }), context), status.INVALID_ARGUMENT);
    await expectStatus(handlers['NodeUnpublishVolume']!({ volume_id: '', target_path: target() }, context), status.INVALID_ARGUMENT);
    await expectStatus(handlers['NodeUnpublishVolume']!({ volume_id: 'v', target_path: '' }, context), status.INVALID_ARGUMENT);
  });

  test('block access → INVALID_ARGUMENT', async () => {
    const block = { block: {}, access_mode: { mode: 'SINGLE_NODE_READER_ONLY' } };
    await expectStatus(handlers['NodePublishVolume']!(publishRequest(target(), { volume_capability: block }), context), status.INVALID_ARGUMENT, 'UNSUPPORTED_CAPABILITY');
  });

  test('multi-node writer modes need readonly; single-node writer is mounted read-only', async () => {
    const rwx = { mount: {}, access_mode: { mode: 'MULTI_NODE_MULTI_WRITER' } };
    await expectStatus(handlers['NodePublishVolume']!(publishRequest(target(), { volume_capability: rwx, readonly: false }), context), status.INVALID_ARGUMENT);
    await handlers['NodePublishVolume']!(publishRequest(join(pods, 'rwx-ro'), { volume_capability: rwx, readonly: true }), context);
    const rwo = { mount: {}, access_mode: { mode: 'SINGLE_NODE_WRITER' } };
    await handlers['NodePublishVolume']!(publishRequest(join(pods, 'rwo'), { volume_capability: rwo, readonly: false }), context);
    assert.ok(await mounter.isMountPoint(join(pods, 'rwo')));
  });

  test('an unknown attribute, a missing subPath and an uncached model are refused before mounting', async () => {
    const ctx = (extra: Record<string, string>) => ({ volume_context: { 'model.csi.example.org/reference': REFERENCE, ...extra } });
    await expectStatus(handlers['NodePublishVolume']!(publishRequest(target(), ctx({ 'model.csi.example.org/typo': 'x' })), context), status.INVALID_ARGUMENT, 'INVALID_ATTRIBUTE');
    await expectStatus(handlers['NodePublishVolume']!(publishRequest(target(), ctx({ 'model.csi.example.org/subPath': 'nope' })), context), status.FAILED_PRECONDITION, 'SUBPATH_NOT_FOUND');
    const uncached = { volume_context: { 'model.csi.example.org/reference': `r.example/m@sha256:${'b'.repeat(64)}` } };
    await expectStatus(handlers['NodePublishVolume']!(publishRequest(target(), uncached), context), status.NOT_FOUND, 'MANIFEST_NOT_FOUND');
    for (const payload of ['not json', '{"auths":{"r.example":{"auth":"bm8tY29sb24="}}}']) {
      await expectStatus(handlers['NodePublishVolume']!(publishRequest(target(), { secrets: { '.dockerconfigjson': payload } }), context), status.INVALID_ARGUMENT, 'INVALID_SECRET');
    }
    assert.equal(mounter.bindCalls, 0);
    assert.equal(await exists(target()), false);
  });
});

describe('NodeGetVolumeStats', () => {
  test('reports the model size; NOT_FOUND for unknown volume or path; abnormal when unmounted', async () => {
    const target = join(pods, 'stats');
    await handlers['NodePublishVolume']!(publishRequest(target), context);
    const stats = (await handlers['NodeGetVolumeStats']!({ volume_id: 'vol-1', volume_path: target }, context)) as {
      usage: Array<{ unit: string; used: number; total: number; available: number }>;
      volume_condition: { abnormal: boolean };
    };
    const bytes = stats.usage.find((u) => u.unit === 'BYTES')!;
    assert.ok(bytes.used >= 10_000 && bytes.total === bytes.used && bytes.available === 0);
    assert.equal(stats.usage.find((u) => u.unit === 'INODES')!.used, 4);
    assert.equal(stats.volume_condition.abnormal, false);
    await expectStatus(handlers['NodeGetVolumeStats']!({ volume_id: 'vol-9', volume_path: target }, context), status.NOT_FOUND);
    await expectStatus(handlers['NodeGetVolumeStats']!({ volume_id: 'vol-1', volume_path: '/some/path' }, context), status.NOT_FOUND);
    mounter.mounts.delete(target);
    const broken = (await handlers['NodeGetVolumeStats']!({ volume_id: 'vol-1', volume_path: target }, context)) as { volume_condition: { abnormal: boolean; message: string } };
    assert.equal(broken.volume_condition.abnormal, true);
    assert.match(broken.volume_condition.message, /no longer a mount point/);
  });
});
