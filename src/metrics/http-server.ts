import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { parseListenAddress } from '../config/settings.js';
import type { Metrics } from './metrics.js';

/**
 * `/metrics` (Prometheus text format) and `/healthz`: 200 `ok` while `problem()` finds none,
 * else 503 with the problem (the chart's readiness and liveness probes use it).
 */
export async function startMetricsServer(
  addr: string,
  metrics: Metrics,
  problem: () => Promise<string | undefined>,
): Promise<{ server: Server; port: number }> {
  const { host, port } = parseListenAddress(addr);
  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (path === '/metrics') {
      metrics.registry
        .metrics()
        .then((body) => {
          res.writeHead(200, { 'content-type': metrics.registry.contentType });
          res.end(body);
        })
        .catch((err: Error) => {
          res.writeHead(500).end(err.message);
        });
      return;
    }
    if (path === '/healthz') {
      problem()
        .then((found) => res.writeHead(found === undefined ? 200 : 503, { 'content-type': 'text/plain' }).end(`${found ?? 'ok'}\n`))
        .catch((err: Error) => res.writeHead(503).end(`health check failed: ${err.message}\n`));
      return;
    }
    res.writeHead(404).end();
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  return { server, port: (server.address() as AddressInfo).port };
}
