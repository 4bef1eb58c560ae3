import { strict as assert } from 'node:assert';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, before, test } from 'node:test';
import { configFileSchema } from '../../../src/config/schema.js';
import { createLogger } from '../../../src/log/logger.js';
import { Metrics } from '../../../src/metrics/metrics.js';
import { parseReference } from '../../../src/registry/reference.js';
import { RegistryClient } from '../../../src/registry/registry-client.js';
import { freePort, pushArtifact, startRegistry, type TestRegistry } from '../../helpers/registry.js';
import { dockerConfigJson } from './common.js';
import { startProxy, type Proxy } from './proxy.js';

// Every failure path of a pull, with a known password in play, logged through the driver's
// own logger the way the driver logs a failed pull: the captured lines never hold it.
const PASSWORD = 'Sup3r-s3cret-pw';
const BASIC = Buffer.from(`alice:${PASSWORD}`).toString('base64');
let registry: TestRegistry;
let failing: Proxy;
let deadPort: number;
let work: string;

before(async () => {
  work = mkdtempSync(join(tmpdir(), 'model-csi-log-secrets-'));
  registry = await startRegistry({ htpasswd: { user: 'alice', password: PASSWORD } });
  await pushArtifact(registry, 'private/m', 'v1', { layers: [{ bytes: 'weights', mediaType: 'application/octet-stream' }] });
  // A proxy that answers 503 and, like some do, echoes the request's credentials in its body
  // and a header.
  failing = await startProxy(registry.url, (req) => ({ status: 503, headers: { 'x-upstream-auth': String(req.headers.authorization ?? '') }, body: `upstream refused Authorization: Basic ${BASIC} for https://alice:${PASSWORD}@${registry.host}/v2/` }));
  deadPort = await freePort();
});
after(async () => {
  await failing.close();
  await registry.stop();
  rmSync(work, { recursive: true, force: true });
});

function capture(): { logs: string[]; logger: ReturnType<typeof createLogger> } {
  const logs: string[] = [];
  const sink = new Writable({
    write(chunk, _enc, cb) {
      logs.push(String(chunk));
      cb();
    },
  });
  return { logs, logger: createLogger('trace', sink) };
}

test('no failure path of a pull puts the password in a log line', { timeout: 120_000 }, async () => {
  const { logs, logger } = capture();
  const nodeConfig = join(work, 'config.json');
  writeFileSync(nodeConfig, dockerConfigJson(registry.host, 'alice', PASSWORD));
  const config = configFileSchema.parse({
    dockerConfig: nodeConfig,
    registries: {
      // A mirror whose URL carries credentials, unreachable.
      [registry.host]: { mirrors: [`http://alice:${PASSWORD}@127.0.0.1:${deadPort}/`] },
    },
  });
  const client = new RegistryClient({ config, logger, metrics: new Metrics({ defaultMetrics: false }), retry: { baseDelayMs: 5, maxDelayMs: 20 } });
  const cases: Array<[string, string, { dockerConfigJson: string } | undefined]> = [
    ['bad credentials against htpasswd', `${registry.host}/private/m:v1`, { dockerConfigJson: dockerConfigJson(registry.host, 'alice', `wrong-${PASSWORD}`) }],
    ['a registry answering 5xx', `${failing.host}/private/m:v1`, { dockerConfigJson: dockerConfigJson(failing.host, 'alice', PASSWORD) }],
    ['an unreachable registry', `127.0.0.1:${deadPort}/private/m:v1`, { dockerConfigJson: dockerConfigJson(`127.0.0.1:${deadPort}`, 'alice', PASSWORD) }],
  ];
  try {
    for (const [what, reference, auth] of cases) {
      const err = await client.resolve(parseReference(reference), auth === undefined ? {} : { auth }).then(
        () => assert.fail(`${what}: resolved`),
        (e: unknown) => e,
      );
      // As the driver logs a failed pull and an internal error: the raw error object.
      const log = logger.child({ case: what });
      log.warn({ err, model: reference }, 'pull failed');
      log.error({ err: new Error(`${what}: ${(err as Error).message}`, { cause: err }) }, 'call failed with an internal error');
    }
    // A raw error from a lower layer, carrying what a library may echo back: a URL with
    // userinfo, a header, request options, a cause.
    const echoed = Object.assign(new Error(`GET https://alice:${PASSWORD}@${registry.host}/v2/ failed`), {
      options: { headers: { authorization: `Basic ${BASIC}` }, body: { password: PASSWORD } },
      cause: Object.assign(new Error(`upstream said {"password":"${PASSWORD}"}`), { config: { auth: `alice:${PASSWORD}` } }),
    });
    logger.warn({ err: echoed }, 'mirror failed; trying the next endpoint');
    logger.warn({ err: echoed.message }, 'blob download interrupted; resuming from the bytes on disk');
    logger.info(`registry said: Authorization: Basic ${BASIC}`);
  } finally {
    await client.close();
  }
  await new Promise<void>((resolve) => logger.flush(() => resolve()));
  const text = logs.join('');
  assert.ok(text.includes('pull failed') && text.includes('REGISTRY_UNAUTHORIZED') && text.includes('REGISTRY_UNAVAILABLE'), 'the failures were logged');
  const hits = text.split('\n').filter((line) => line.includes(PASSWORD) || line.includes(BASIC));
  assert.deepEqual(hits, [], 'log lines with the password or its basic-auth form');
});
