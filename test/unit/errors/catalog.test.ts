import { strict as assert } from 'node:assert';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { status } from '@grpc/grpc-js';
import { DriverError, ErrorCodes } from '../../../src/errors/driver-error.js';
import { toGrpcError } from '../../../src/errors/to-grpc.js';
import { scrubSecrets } from '../../../src/errors/scrub.js';

test('every error code is documented in docs/errors.md with its gRPC status', () => {
  const doc = readFileSync(new URL('../../../docs/errors.md', import.meta.url), 'utf8');
  for (const [code, grpcStatus] of Object.entries(ErrorCodes)) {
    const row = doc.split('\n').find((line) => line.startsWith(`| ${code} |`));
    assert.ok(row, `docs/errors.md has no row for ${code}`);
    assert.ok(row.includes(`| ${status[grpcStatus]} |`), `docs/errors.md row for ${code} must say ${status[grpcStatus]}`);
  }
});

test('a Node system error reaches the wire as INTERNAL, never UNKNOWN', () => {
  const err = Object.assign(new Error('ENOENT: no such file'), { code: 'ENOENT' });
  const wire = toGrpcError(err);
  assert.equal(wire.code, status.INTERNAL);
  assert.match(wire.details, /^INTERNAL: internal error: ENOENT/);
});

test('a DriverError keeps its status and code on the wire', () => {
  const wire = toGrpcError(new DriverError('MANIFEST_NOT_FOUND', 'no tag v9 in reg/x'));
  assert.equal(wire.code, status.NOT_FOUND);
  assert.equal(wire.details, 'MANIFEST_NOT_FOUND: no tag v9 in reg/x');
  assert.deepEqual(wire.metadata?.get('model-csi-error-code'), ['MANIFEST_NOT_FOUND']);
});

test('credentials that slip into a message are scrubbed before the wire', () => {
  const wire = toGrpcError(new Error('GET https://alice:s3cret@reg.example/v2/ failed, Authorization: Basic YWxpY2U6czNjcmV0'));
  assert.ok(!wire.details.includes('s3cret'));
  assert.ok(!wire.details.includes('YWxpY2U6czNjcmV0'));
  assert.equal(scrubSecrets('{"password":"hunter2","user":"bob"}'), '{"password":"***","user":"bob"}');
});

test('UNAVAILABLE errors are retryable by default, others are not', () => {
  assert.equal(new DriverError('PULL_IN_PROGRESS', 'x').retryable, true);
  assert.equal(new DriverError('UNSAFE_PATH', 'x').retryable, false);
});

test('our gRPC status numbers are the ones grpc-js puts on the wire', async () => {
  const { GrpcStatus } = await import('../../../src/errors/grpc-status.js');
  for (const [name, value] of Object.entries(GrpcStatus)) assert.equal(value, status[name as keyof typeof status], name);
});
