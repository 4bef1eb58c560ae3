/**
 * A pass-through HTTP proxy in front of the real registry that counts what crosses it (blob
 * GETs and body bytes per digest) and can slow blob bodies down to a rate, or pause them, to
 * hold a pull in flight long enough for deadline, restart and dedup tests. The registry does
 * all the protocol work; the proxy only observes and paces, or, when a test asks, answers every
 * blob GET with an error status, holds chosen blobs until released, or flips a byte of them.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { request } from 'undici';

export interface CountingProxy {
  /** `127.0.0.1:PORT`: use it as the registry part of references. */
  host: string;
  url: string;
  /** Completed-or-started GETs per blob digest. */
  blobGets: Map<string, number>;
  /** Body bytes sent per blob digest. */
  blobBytes: Map<string, number>;
  manifestGets: number;
  /** Every request of any kind (manifests, blobs, referrers, token-less pings). */
  requests: number;
  /** Bytes per second for blob bodies; 0 = unlimited. */
  rate: number;
  /** Milliseconds each manifest request is held before it is forwarded; 0 = none. */
  manifestDelayMs: number;
  /** When not 0, every blob GET is answered with this status (503: a registry whose storage is down). */
  blobStatus: number;
  /** Blobs whose body is served with its first byte flipped (a corrupting cache or disk). */
  corruptBlobs: Set<string>;
  /** Blob GETs of these digests wait for the promise before they are forwarded. */
  holdBlobs: Map<string, Promise<void>>;
  /** Every blob GET in order: digest and its `Range` header (undefined when none). */
  blobRequests: Array<{ digest: string; range: string | undefined }>;
  /** Blob GET bodies being served now, and the most at once since the last reset. */
  openBlobBodies: number;
  maxOpenBlobBodies: number;
  totalBlobBytes(): number;
  reset(): void;
  /** Stop listening and drop open connections: the host refuses connections, as a registry that is down. */
  down(): Promise<void>;
  /** Listen again on the same port after `down()`. */
  up(): Promise<void>;
  close(): Promise<void>;
}

const BLOB_PATH = /\/blobs\/(sha256:[0-9a-f]{64})$/;

export interface CountingProxyOptions {
  rate?: number;
  /** Where to listen (default 127.0.0.1 and a free port). */
  listenHost?: string;
  port?: number;
}

export async function startCountingProxy(upstream: string, options: CountingProxyOptions = {}): Promise<CountingProxy> {
  const sockets = new Set<Socket>();
  const listenHost = options.listenHost ?? '127.0.0.1';
  let port = options.port ?? 0; // kept for up(): the registry host stays the same across down()/up()
  const proxy: CountingProxy = {
    host: '',
    url: '',
    blobGets: new Map(),
    blobBytes: new Map(),
    manifestGets: 0,
    requests: 0,
    rate: options.rate ?? 0,
    manifestDelayMs: 0,
    blobStatus: 0,
    corruptBlobs: new Set(),
    holdBlobs: new Map(),
    blobRequests: [],
    openBlobBodies: 0,
    maxOpenBlobBodies: 0,
    totalBlobBytes: () => [...proxy.blobBytes.values()].reduce((a, b) => a + b, 0),
    reset: () => {
      proxy.blobGets.clear();
      proxy.blobBytes.clear();
      proxy.manifestGets = 0;
      proxy.requests = 0;
      proxy.blobRequests.length = 0;
      proxy.maxOpenBlobBodies = proxy.openBlobBodies;
    },
    down: async () => {
      const closed = new Promise((resolve) => server.close(resolve));
      for (const socket of sockets) socket.destroy();
      await closed;
    },
    up: async () => {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, listenHost, () => {
          server.off('error', reject);
          resolve();
        });
      });
    },
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };

  const server = createServer(async (req: IncomingMessage, res: ServerResponse) => {
    const path = (req.url ?? '/').split('?')[0]!;
    const blob = BLOB_PATH.exec(path)?.[1];
    if (req.method === 'GET' && blob) {
      proxy.blobGets.set(blob, (proxy.blobGets.get(blob) ?? 0) + 1);
      proxy.blobRequests.push({ digest: blob, range: typeof req.headers.range === 'string' ? req.headers.range : undefined });
    }
    proxy.requests++;
    if (req.method === 'GET' && path.includes('/manifests/')) proxy.manifestGets++;
    if (path.includes('/manifests/') && proxy.manifestDelayMs > 0) await new Promise((resolve) => setTimeout(resolve, proxy.manifestDelayMs));
    if (blob && req.method === 'GET' && proxy.blobStatus !== 0) {
      res.writeHead(proxy.blobStatus, { 'content-type': 'text/plain' });
      res.end('blob storage unavailable');
      return;
    }
    if (blob) await proxy.holdBlobs.get(blob);
    let corrupt = blob !== undefined && req.method === 'GET' && proxy.corruptBlobs.has(blob);
    const headers: Record<string, string> = {};
    for (const [k, v] of Object.entries(req.headers)) {
      if (v !== undefined && !['host', 'connection', 'content-length', 'transfer-encoding'].includes(k)) headers[k] = Array.isArray(v) ? v.join(', ') : v;
    }
    try {
      const up = await request(upstream + (req.url ?? '/'), { method: req.method as 'GET', headers });
      const out: Record<string, string | string[]> = {};
      for (const [k, v] of Object.entries(up.headers)) if (v !== undefined && k !== 'connection' && k !== 'keep-alive') out[k] = v;
      res.writeHead(up.statusCode, out);
      if (blob !== undefined && req.method === 'GET') {
        proxy.maxOpenBlobBodies = Math.max(proxy.maxOpenBlobBodies, ++proxy.openBlobBodies);
        res.once('close', () => void proxy.openBlobBodies--);
      }
      const begun = performance.now();
      let paced = 0;
      for await (let chunk of up.body as AsyncIterable<Buffer>) {
        if (corrupt && chunk.length > 0) {
          chunk = Buffer.from(chunk);
          chunk[0] = chunk[0]! ^ 0xff;
          corrupt = false;
        }
        if (blob && req.method === 'GET') {
          proxy.blobBytes.set(blob, (proxy.blobBytes.get(blob) ?? 0) + chunk.length);
          // Paced to a schedule from the response's start, not a sleep per chunk: timers that
          // fire late (a loaded machine, many responses at once) do not lower the rate.
          paced += chunk.length;
          if (proxy.rate > 0) {
            const due = begun + (paced / proxy.rate) * 1000 - performance.now();
            if (due > 0) await new Promise((resolve) => setTimeout(resolve, due));
          }
        }
        if (res.destroyed) break;
        if (!res.write(chunk)) {
          // A client that went away (killed driver) never drains: stop on close as well.
          await new Promise<void>((resolve) => {
            const done = (): void => {
              res.off('drain', done);
              res.off('close', done);
              resolve();
            };
            res.once('drain', done);
            res.once('close', done);
          });
        }
      }
      res.end();
    } catch {
      req.socket.destroy();
    }
  });
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(port, listenHost, resolve));
  port = (server.address() as AddressInfo).port;
  proxy.host = `${listenHost}:${port}`;
  proxy.url = `http://${proxy.host}`;
  return proxy;
}
