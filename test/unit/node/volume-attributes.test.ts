import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isDriverError } from '../../../src/errors/driver-error.js';
import { parseVolumeAttributes } from '../../../src/node/volume-attributes.js';

const P = 'model.csi.example.org/';
const ref = 'registry.example.com/models/qwen:v1';

function rejects(attributes: Record<string, string>, code: string, pattern: RegExp): void {
  assert.throws(
    () => parseVolumeAttributes(attributes),
    (err: unknown) => isDriverError(err) && err.code === code && pattern.test(err.message),
  );
}

test('a reference alone gives the defaults', () => {
  assert.deepEqual(parseVolumeAttributes({ [`${P}reference`]: ref }), {
    reference: ref,
    subPath: undefined,
    include: [],
    exclude: [],
    pullPolicy: 'IfNotPresent',
  });
});

test('all attributes are parsed; kubelet keys are accepted', () => {
  const parsed = parseVolumeAttributes({
    [`${P}reference`]: ` ${ref} `,
    [`${P}subPath`]: './weights/',
    [`${P}include`]: '*.safetensors, config.json,,',
    [`${P}exclude`]: '*.bin',
    [`${P}pullPolicy`]: 'Always',
    'csi.storage.k8s.io/ephemeral': 'true',
    'csi.storage.k8s.io/pod.name': 'p',
  });
  assert.equal(parsed.reference, ref);
  assert.equal(parsed.subPath, 'weights');
  assert.deepEqual(parsed.include, ['*.safetensors', 'config.json']);
  assert.deepEqual(parsed.exclude, ['*.bin']);
  assert.equal(parsed.pullPolicy, 'Always');
});

test('the reference is required, and an unprefixed one is pointed out', () => {
  rejects({}, 'INVALID_ATTRIBUTE', /reference is required/);
  rejects({ reference: ref }, 'INVALID_ATTRIBUTE', /without the prefix/);
});

test('an unknown key under our prefix is named in the error', () => {
  rejects({ [`${P}reference`]: ref, [`${P}subpath`]: 'x' }, 'INVALID_ATTRIBUTE', /"model\.csi\.example\.org\/subpath"/);
});

test('subPath must stay inside the model', () => {
  rejects({ [`${P}reference`]: ref, [`${P}subPath`]: '/etc' }, 'INVALID_ATTRIBUTE', /relative/);
  rejects({ [`${P}reference`]: ref, [`${P}subPath`]: 'a/../../b' }, 'INVALID_ATTRIBUTE', /\.\./);
  rejects({ [`${P}reference`]: ref, [`${P}subPath`]: '..' }, 'INVALID_ATTRIBUTE', /\.\./);
  assert.equal(parseVolumeAttributes({ [`${P}reference`]: ref, [`${P}subPath`]: '.' }).subPath, undefined);
});

test('pullPolicy accepts only IfNotPresent and Always', () => {
  rejects({ [`${P}reference`]: ref, [`${P}pullPolicy`]: 'Never' }, 'INVALID_ATTRIBUTE', /IfNotPresent or Always/);
});

test('references that can never be valid are refused', () => {
  rejects({ [`${P}reference`]: 'a b' }, 'INVALID_REFERENCE', /not a valid reference/);
  rejects({ [`${P}reference`]: 'host/repo@sha256:abc' }, 'INVALID_REFERENCE', /malformed digest/);
});
