import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import { isDriverError } from '../../../src/errors/driver-error.js';
import { keyMatches, lookupCredentials, normalizeKey, parseDockerConfig } from '../../../src/registry/auth/docker-config.js';
import { TokenCache } from '../../../src/registry/auth/token-cache.js';

const b64 = (s: string) => Buffer.from(s).toString('base64');

test('keys normalise as kubelet does: scheme dropped, /v1/ and /v2/ mean the host', () => {
  assert.equal(normalizeKey('https://index.docker.io/v1/'), 'index.docker.io');
  assert.equal(normalizeKey('http://r.example.com:5000/v2/'), 'r.example.com:5000');
  assert.equal(normalizeKey('r.example.com'), 'r.example.com');
  assert.equal(normalizeKey('r.example.com/team/'), 'r.example.com/team/');
  assert.equal(normalizeKey('https://r.example.com/team'), 'r.example.com/team');
});

test('host matching: exact, port, path prefix, per-label wildcards', () => {
  const cases: Array<[string, string, boolean]> = [
    ['r.example.com', 'r.example.com/a/b', true],
    ['r.example.com', 'r.example.com:5000/a', false], // port must match
    ['r.example.com:5000', 'r.example.com:5000/a', true],
    ['r.example.com:5000', 'r.example.com/a', false],
    ['r.example.com/team', 'r.example.com/team/model', true],
    ['r.example.com/team', 'r.example.com/other/model', false],
    ['*.example.com', 'r.example.com/a', true],
    ['*.example.com', 'a.b.example.com/a', false], // one label per '*'
    ['*.example.com', 'example.com/a', false],
    ['r.*.com', 'r.example.com/a', true],
    ['R.Example.com', 'r.example.com/a', true],
    ['example.com', 'evil-example.com/a', false],
  ];
  for (const [key, target, want] of cases) assert.equal(keyMatches(key, target), want, `${key} vs ${target}`);
});

test('parses auth (base64), username/password and identitytoken; most specific key wins', () => {
  const entries = parseDockerConfig(
    JSON.stringify({
      auths: {
        'r.example.com': { auth: b64('alice:pa:ss') },
        'r.example.com/team': { username: 'bob', password: 'pw' },
        'https://index.docker.io/v1/': { auth: b64('hub:hubpw') },
        '*.corp.io': { identitytoken: 'refresh-123' },
      },
    }),
    'test',
  );
  assert.deepEqual(pick(lookupCredentials(entries, 'r.example.com', 'team/m')[0]), { username: 'bob', password: 'pw' });
  assert.deepEqual(pick(lookupCredentials(entries, 'r.example.com', 'x/m')[0]), { username: 'alice', password: 'pa:ss' });
  assert.deepEqual(pick(lookupCredentials(entries, 'docker.io', 'library/ubuntu')[0]), { username: 'hub', password: 'hubpw' });
  assert.equal(lookupCredentials(entries, 'a.corp.io', 'm')[0]?.identityToken, 'refresh-123');
  assert.equal(lookupCredentials(entries, 'other.io', 'm').length, 0);
  // Same user, different password: different identity, so tokens are never shared.
  const [a] = parseDockerConfig(JSON.stringify({ auths: { h: { auth: b64('u:1') } } }), 't');
  const [b] = parseDockerConfig(JSON.stringify({ auths: { h: { auth: b64('u:2') } } }), 't');
  assert.notEqual(a!.credential.id, b!.credential.id);
});

test('broken payloads are INVALID_SECRET without echoing secrets', () => {
  assert.throws(() => parseDockerConfig('{not json', 'the pull secret'), (e: unknown) => isDriverError(e, 'INVALID_SECRET') && /not valid JSON/.test(e.message));
  assert.throws(() => parseDockerConfig('[]', 'the pull secret'), (e: unknown) => isDriverError(e, 'INVALID_SECRET'));
  assert.throws(
    () => parseDockerConfig(JSON.stringify({ auths: { h: { auth: b64('nocolonsecret') } } }), 'the pull secret'),
    (e: unknown) => isDriverError(e, 'INVALID_SECRET') && !e.message.includes('nocolonsecret') && !e.message.includes(b64('nocolonsecret')),
  );
  // Legacy .dockercfg: the map itself.
  const legacy = parseDockerConfig(JSON.stringify({ 'r.io': { auth: b64('u:p') } }), 't');
  assert.equal(legacy[0]!.credential.username, 'u');
});

test('token cache reuses a token until shortly before expiry, default 60s', () => {
  let now = 1_000_000;
  const cache = new TokenCache(() => now);
  const k = TokenCache.key('r', 'repository:a:pull', 'anon');
  cache.set(k, 't1', undefined);
  now += 50_000;
  assert.equal(cache.get(k), 't1');
  now += 6_000; // 56s: inside the 5s slack before 60s
  assert.equal(cache.get(k), undefined);
  cache.set(k, 't2', 300);
  now += 290_000;
  assert.equal(cache.get(k), 't2');
  assert.equal(cache.get(TokenCache.key('r', 'repository:a:pull', 'other')), undefined);
});

function pick(c: { username?: string; password?: string } | undefined) {
  return c === undefined ? undefined : { username: c.username, password: c.password };
}
