/**
 * Concurrent 401s for one host, scope and credential share one token request (auth/
 * authenticator.ts, on concurrency/single-flight.ts), and the caller that started it giving up
 * does not fail the others: a real token endpoint on loopback that answers when the test says.
 */
import { strict as assert } from 'node:assert';
import { createServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { configFileSchema } from '../../../src/config/schema.js';
import { createLogger } from '../../../src/log/logger.js';
import { Authenticator } from '../../../src/registry/auth/authenticator.js';
import { TokenCache } from '../../../src/registry/auth/token-cache.js';
import { Transport } from '../../../src/registry/transport.js';

test('the caller that started a shared token fetch cancelling does not fail the callers that joined it', async () => {
  const held: ServerResponse[] = [];
  let requests = 0;
  const server = createServer((_req, res) => {
    requests++;
    held.push(res);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const realm = `http://127.0.0.1:${(server.address() as AddressInfo).port}/token`;
  const transport = new Transport(configFileSchema.parse({}), { connections: 4 });
  const auth = new Authenticator(transport, new TokenCache(), createLogger('silent'));
  const challenge = `Bearer realm="${realm}",service="registry",scope="repository:m/x:pull"`;
  const target = { registry: 'registry.test', repository: 'm/x' };
  try {
    const first = new AbortController();
    const leader = auth.onChallenge('registry.test', 'repository:m/x:pull', undefined, challenge, target, first.signal);
    const joiner = auth.onChallenge('registry.test', 'repository:m/x:pull', undefined, challenge, target);
    while (held.length === 0) await new Promise((resolve) => setTimeout(resolve, 5));
    first.abort(new Error('the first caller went away'));
    await assert.rejects(leader, /the first caller went away/);
    held[0]!.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ token: 'tok-1', expires_in: 300 }));
    assert.equal(await joiner, 'Bearer tok-1');
    assert.equal(requests, 1, 'one token request for both callers');
  } finally {
    for (const res of held) res.destroy();
    await transport.close();
    await new Promise((resolve) => server.close(resolve));
  }
});
