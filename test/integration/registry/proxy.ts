/**
 * A small HTTP proxy in front of the real registry, for faults a real registry will not
 * produce on demand: 5xx, connection resets, ignored Range headers, oversized bodies,
 * redirects, revoked tokens. Every request is recorded (method, path, headers).
 */
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import { request } from 'undici';

export interface SeenRequest {
  method: string;
  path: string;
  headers: IncomingHttpHeaders;
}

export type ProxyAction =
  | 'pass'
  | 'reset'
  | { status: number; headers?: Record<string, string>; body?: Buffer | string }
  | { rewriteHeaders: (h: Record<string, string>) => Record<string, string> };

export interface Proxy {
  url: string;
  host: string;
  seen: SeenRequest[];
  close(): Promise<void>;
}

export async function startProxy(upstream: string, decide: (req: SeenRequest, index: number) => ProxyAction = () => 'pass', listenHost = '127.0.0.1'): Promise<Proxy> {
  const seen: SeenRequest[] = [];
  const server = createServer(async (req: IncomingMessage, res: ServerResponse) => {
    const record: SeenRequest = { method: req.method ?? 'GET', path: req.url ?? '/', headers: req.headers };
    seen.push(record);
    const action = decide(record, seen.length - 1);
    if (action === 'reset') {
      req.socket.destroy();
      return;
    }
    if (typeof action === 'object' && 'status' in action) {
      res.writeHead(action.status, action.headers ?? {});
      res.end(action.body ?? '');
      return;
    }
    let headers: Record<string, string> = {};
    for (const [k, v] of Object.entries(req.headers)) {
      if (v !== undefined && !['host', 'connection', 'content-length', 'transfer-encoding'].includes(k)) headers[k] = Array.isArray(v) ? v.join(', ') : v;
    }
    if (typeof action === 'object' && 'rewriteHeaders' in action) headers = action.rewriteHeaders(headers);
    try {
      const up = await request(upstream + (req.url ?? '/'), { method: req.method as 'GET', headers });
      const out: Record<string, string | string[]> = {};
      for (const [k, v] of Object.entries(up.headers)) if (v !== undefined && k !== 'connection' && k !== 'keep-alive') out[k] = v;
      res.writeHead(up.statusCode, out);
      for await (const chunk of up.body) res.write(chunk);
      res.end();
    } catch {
      req.socket.destroy();
    }
  });
  await new Promise<void>((resolve) => server.listen(0, listenHost, resolve));
  const { port } = server.address() as { port: number };
  return {
    url: `http://${listenHost}:${port}`,
    host: `${listenHost}:${port}`,
    seen,
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
