import assert from 'node:assert/strict';
import { test } from 'node:test';
import { status } from '@grpc/grpc-js';
import { pino } from 'pino';
import { ControllerService } from '../../../src/controller/controller-service.js';
import type { ModelResolver } from '../../../src/controller/model-resolver.js';
import { PinnedOnlyResolver } from '../../helpers/pinned-only-resolver.js';
import { parseVolumeId } from '../../../src/controller/volume-id.js';
import type { CallContext } from '../../../src/csi/call-wrapper.js';
import { isDriverError } from '../../../src/errors/driver-error.js';

const HEX = 'c'.repeat(64);
const REF_KEY = 'model.csi.example.org/reference';
const context: CallContext = { log: pino({ level: 'silent' }), deadline: Infinity };
const rox = { mount: {}, access_mode: { mode: 'MULTI_NODE_READER_ONLY' } };

function request(name: string, overrides: Record<string, unknown> = {}) {
  return {
    name,
    volume_capabilities: [rox],
    parameters: { [REF_KEY]: `registry.example.com/models/tiny:v1@sha256:${HEX}`, 'model.csi.example.org/subPath': 'weights' },
    ...overrides,
  };
}

async function expectStatus(call: Promise<unknown>, grpcStatus: status): Promise<void> {
  await assert.rejects(call, (err: unknown) => isDriverError(err) && err.grpcStatus === grpcStatus);
}

test('CreateVolume pins the reference and is idempotent by name', async () => {
  const handlers = new ControllerService(new PinnedOnlyResolver()).handlers();
  const first = (await handlers['CreateVolume']!(request('pvc-1'), context)) as { volume: { volume_id: string; capacity_bytes: number; volume_context: Record<string, string> } };
  assert.equal(first.volume.volume_context[REF_KEY], `registry.example.com/models/tiny@sha256:${HEX}`);
  assert.equal(first.volume.volume_context['model.csi.example.org/subPath'], 'weights');
  assert.equal(first.volume.capacity_bytes, 1);
  assert.equal(parseVolumeId(first.volume.volume_id)?.digest, `sha256:${HEX}`);
  // A fresh controller (restart) gives the same id: ids are derived, not stored.
  const again = (await new ControllerService(new PinnedOnlyResolver()).handlers()['CreateVolume']!(request('pvc-1'), context)) as typeof first;
  assert.equal(again.volume.volume_id, first.volume.volume_id);
  const other = (await handlers['CreateVolume']!(request('pvc-2'), context)) as typeof first;
  assert.notEqual(other.volume.volume_id, first.volume.volume_id);
});

test('capacity is the claim\'s request, else the model size; a conflicting repeat is ALREADY_EXISTS', async () => {
  const sized: ModelResolver = { resolve: async () => ({ pinnedReference: `r/m@sha256:${HEX}`, digest: `sha256:${HEX}`, sizeBytes: 5000 }) };
  const handlers = new ControllerService(sized).handlers();
  const bySize = (await handlers['CreateVolume']!(request('a'), context)) as { volume: { capacity_bytes: number } };
  assert.equal(bySize.volume.capacity_bytes, 5000);
  const range = { required_bytes: 1 << 30, limit_bytes: 1 << 30 };
  const byClaim = (await handlers['CreateVolume']!(request('b', { capacity_range: range }), context)) as typeof bySize;
  assert.equal(byClaim.volume.capacity_bytes, 1 << 30);
  await handlers['CreateVolume']!(request('b', { capacity_range: range }), context);
  await expectStatus(handlers['CreateVolume']!(request('b', { capacity_range: { required_bytes: 2 << 30, limit_bytes: 2 << 30 } }), context), status.ALREADY_EXISTS);
  await expectStatus(handlers['CreateVolume']!(request('b', { capacity_range: range, parameters: { [REF_KEY]: `r/m@sha256:${HEX}` } }), context), status.ALREADY_EXISTS);
});

test('argument checks: name, capabilities, block, multi-node writers, unpinned references', async () => {
  const handlers = new ControllerService(new PinnedOnlyResolver()).handlers();
  await expectStatus(handlers['CreateVolume']!(request(''), context), status.INVALID_ARGUMENT);
  await expectStatus(handlers['CreateVolume']!(request('x', { volume_capabilities: [] }), context), status.INVALID_ARGUMENT);
  await expectStatus(handlers['CreateVolume']!(request('x', { volume_capabilities: [{ block: {}, access_mode: { mode: 'MULTI_NODE_READER_ONLY' } }] }), context), status.INVALID_ARGUMENT);
  await expectStatus(handlers['CreateVolume']!(request('x', { volume_capabilities: [{ mount: {}, access_mode: { mode: 'MULTI_NODE_MULTI_WRITER' } }] }), context), status.INVALID_ARGUMENT);
  await expectStatus(handlers['CreateVolume']!(request('x', { parameters: { [REF_KEY]: 'registry.example.com/m:v1' } }), context), status.INVALID_ARGUMENT);
  await expectStatus(handlers['CreateVolume']!(request('x', { parameters: {} }), context), status.INVALID_ARGUMENT);
});

test('ValidateVolumeCapabilities confirms read-only mount modes and knows its own ids', async () => {
  const handlers = new ControllerService(new PinnedOnlyResolver()).handlers();
  const { volume } = (await handlers['CreateVolume']!(request('v'), context)) as { volume: { volume_id: string } };
  const ok = (await handlers['ValidateVolumeCapabilities']!({ volume_id: volume.volume_id, volume_capabilities: [rox] }, context)) as { confirmed?: object };
  assert.ok(ok.confirmed);
  const rwx = { mount: {}, access_mode: { mode: 'MULTI_NODE_MULTI_WRITER' } };
  const refused = (await handlers['ValidateVolumeCapabilities']!({ volume_id: volume.volume_id, volume_capabilities: [rwx] }, context)) as { confirmed?: object; message: string };
  assert.equal(refused.confirmed, undefined);
  assert.match(refused.message, /read-only/);
  await expectStatus(handlers['ValidateVolumeCapabilities']!({ volume_id: 'fake-vol-id-1', volume_capabilities: [rox] }, context), status.NOT_FOUND);
  await expectStatus(handlers['ValidateVolumeCapabilities']!({ volume_id: volume.volume_id, volume_capabilities: [] }, context), status.INVALID_ARGUMENT);
  await handlers['DeleteVolume']!({ volume_id: 'anything' }, context);
  await expectStatus(handlers['DeleteVolume']!({ volume_id: '' }, context), status.INVALID_ARGUMENT);
});
