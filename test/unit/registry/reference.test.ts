import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import { isDriverError } from '../../../src/errors/driver-error.js';
import { apiHost, formatReference, parseReference } from '../../../src/registry/reference.js';

const D = 'sha256:' + 'a'.repeat(64);

const good: Array<[string, { registry: string; repository: string; tag?: string; digest?: string }]> = [
  ['ubuntu', { registry: 'docker.io', repository: 'library/ubuntu', tag: 'latest' }],
  ['ubuntu:22.04', { registry: 'docker.io', repository: 'library/ubuntu', tag: '22.04' }],
  ['bitnami/redis', { registry: 'docker.io', repository: 'bitnami/redis', tag: 'latest' }],
  ['docker.io/ubuntu', { registry: 'docker.io', repository: 'library/ubuntu', tag: 'latest' }],
  ['index.docker.io/library/ubuntu:1', { registry: 'docker.io', repository: 'library/ubuntu', tag: '1' }],
  ['localhost/model', { registry: 'localhost', repository: 'model', tag: 'latest' }],
  ['localhost:5000/a/b:v1', { registry: 'localhost:5000', repository: 'a/b', tag: 'v1' }],
  ['127.0.0.1:5000/models/qwen:v1', { registry: '127.0.0.1:5000', repository: 'models/qwen', tag: 'v1' }],
  ['registry.example.com/models/qwen2.5-0.5b:v1', { registry: 'registry.example.com', repository: 'models/qwen2.5-0.5b', tag: 'v1' }],
  [`ghcr.io/org/m@${D}`, { registry: 'ghcr.io', repository: 'org/m', digest: D }],
  [`ghcr.io/org/m:v2@${D}`, { registry: 'ghcr.io', repository: 'org/m', tag: 'v2', digest: D }],
  ['Registry.Example.com:443/a__b/c-d--e/f.g:_T.1-x', { registry: 'Registry.Example.com:443', repository: 'a__b/c-d--e/f.g', tag: '_T.1-x' }],
  ['[::1]:5000/m:v', { registry: '[::1]:5000', repository: 'm', tag: 'v' }],
  // Not lowercase, so docker reads it as a host even without '.' or ':'.
  ['MyHost/m', { registry: 'MyHost', repository: 'm', tag: 'latest' }],
];

const bad: Array<[string, RegExp]> = [
  ['', /empty/],
  [' ubuntu', /whitespace/],
  ['Ubuntu', /lowercase/],
  ['example.com/Models/x', /lowercase/],
  ['example.com/', /no repository/],
  ['example.com/a//b', /component ""/],
  ['example.com/-a', /component "-a"/],
  ['example.com/a:', /tag ""/],
  ['example.com/a:.v1', /tag ".v1"/],
  [`example.com/a:${'t'.repeat(129)}`, /tag/],
  ['example.com/a@sha256:abc', /digest/],
  [`example.com/a@sha512:${'a'.repeat(128)}`, /digest/],
  [`example.com/a@sha256:${'A'.repeat(64)}`, /digest/],
  ['exa_mple.com/a', /registry host/],
  [`example.com/${'a'.repeat(250)}`, /longer than 255/],
  ['a b/c', /component/],
];

test('parseReference accepts references the way docker resolves them', () => {
  for (const [input, want] of good) {
    assert.deepEqual({ ...parseReference(input) }, want, input);
  }
});

test('parseReference rejects malformed references with INVALID_REFERENCE naming the input', () => {
  for (const [input, why] of bad) {
    assert.throws(
      () => parseReference(input),
      (err: unknown) => isDriverError(err, 'INVALID_REFERENCE') && err.message.includes(`"${input}"`) && why.test(err.message),
      `${JSON.stringify(input)} should be refused matching ${why}`,
    );
  }
});

test('formatReference round-trips and docker.io is fetched from registry-1.docker.io', () => {
  for (const [input] of good) {
    const ref = parseReference(input);
    assert.deepEqual(parseReference(formatReference(ref)), ref, input);
  }
  assert.equal(formatReference(parseReference('ubuntu')), 'docker.io/library/ubuntu:latest');
  assert.equal(apiHost('docker.io'), 'registry-1.docker.io');
  assert.equal(apiHost('ghcr.io'), 'ghcr.io');
});
