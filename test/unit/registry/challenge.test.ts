import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import { parseChallenges } from '../../../src/registry/auth/challenge.js';

test('parses a docker token-auth Bearer challenge', () => {
  const [c] = parseChallenges('Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/ubuntu:pull"');
  assert.deepEqual(c, {
    scheme: 'bearer',
    params: { realm: 'https://auth.docker.io/token', service: 'registry.docker.io', scope: 'repository:library/ubuntu:pull' },
  });
});

test('parses several challenges, token values, spaces and escapes', () => {
  const got = parseChallenges('Basic realm="reg \\"x\\"", charset=UTF-8 ,  BEARER  realm = "https://r/t" , error="invalid_token"');
  assert.deepEqual(got, [
    { scheme: 'basic', params: { realm: 'reg "x"', charset: 'UTF-8' } },
    { scheme: 'bearer', params: { realm: 'https://r/t', error: 'invalid_token' } },
  ]);
});

test('scope with several actions and commas inside quotes stays whole; header arrays are flattened', () => {
  const got = parseChallenges(['Bearer realm="r",scope="repository:a/b:pull,push repository:c:pull"', 'Basic realm="x"']);
  assert.equal(got.length, 2);
  assert.equal(got[0]!.params.scope, 'repository:a/b:pull,push repository:c:pull');
  assert.equal(got[1]!.scheme, 'basic');
});

test('missing or garbage headers give no challenges rather than throwing', () => {
  assert.deepEqual(parseChallenges(undefined), []);
  assert.deepEqual(parseChallenges(''), []);
  assert.deepEqual(parseChallenges('=,,"'), []);
  assert.deepEqual(parseChallenges('Bearer'), [{ scheme: 'bearer', params: {} }]);
});
