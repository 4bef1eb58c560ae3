import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { parseListenAddress } from '../config/settings.js';
import type { Metrics } from './metrics.js';

/**
 * `/metrics` (Prometheus text format) and `/healthz` (200 while `healthy()` is true, which
 * the livenessprobe sidecar and the chart's probes rely on).
 */
export async function startMetricsServer(
  addr: string,
  metrics: Metrics,
  healthy: () => Promise<boolean> | boolean,
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
      Promise.resolve(healthy())
        .then((ok) => res.writeHead(ok ? 200 : 503, { 'content-type': 'text/plain' }).end(ok ? 'ok\n' : 'not ready\n'))
        .catch(() => res.writeHead(503).end('not ready\n'));
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
