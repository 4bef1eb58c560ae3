import type { Logger } from 'pino';
import type { Readable } from 'node:stream';
import { request } from 'undici';
import { DriverError } from '../errors/driver-error.js';
import type { Authenticator } from './auth/authenticator.js';
import type { Credential } from './auth/docker-config.js';
import { isAbort, isNotTlsError, networkError, type Target } from './http-errors.js';
import { rawRequest } from './raw-http.js';
import { BODY_IDLE_TIMEOUT_MS, HEADERS_TIMEOUT_MS, type Transport } from './transport.js';

/**
 * One distribution-API request against one endpoint (a mirror or the origin), built from three
 * small steps each readable alone: scheme choice (transport.ts), authorization on challenge
 * (auth/authenticator.ts) and redirects (below). Retries and mirror fallback wrap this.
 */
export interface Endpoint {
  /** `host[:port]`: for credentials, TLS config and messages. */
  host: string;
  /** Fixed base URL (mirrors are configured with one); the origin's scheme is chosen by the transport. */
  base?: string;
  isMirror: boolean;
  credential: Credential | undefined;
}

export interface SendInit {
  method?: 'GET' | 'HEAD';
  headers?: Record<string, string>;
  /** Query parameters added to the registry URL (not to redirect targets). */
  query?: Record<string, string>;
  scope: string;
  target: Target;
  /** What we were doing, for messages: "fetching manifest of". */
  what: string;
  signal?: AbortSignal;
  /**
   * The body may be large (a big blob): fetch it on a connection of its own that reads into a
   * reused buffer (raw-http.ts) instead of undici's keep-alive pool.
   */
  largeBody?: boolean;
}

/** What both HTTP paths answer: undici's response data, or raw-http's. */
interface HttpResponse {
  statusCode: number;
  headers: Record<string, string | string[] | undefined>;
  body: Readable & { dump(): Promise<void> };
}

export interface SendResult {
  res: HttpResponse;
  url: URL;
}

const MAX_REDIRECTS = 5;

export class RegistryHttp {
  constructor(
    private readonly transport: Transport,
    private readonly auth: Authenticator,
    private readonly logger: Logger,
  ) {}

  async send(endpoint: Endpoint, path: string, init: SendInit): Promise<SendResult> {
    const schemes = endpoint.base !== undefined ? [undefined] : this.transport.schemesFor(endpoint.host);
    for (let i = 0; ; i++) {
      const scheme = schemes[i];
      const base = endpoint.base ?? `${scheme}://${endpoint.host}`;
      const url = new URL(base.replace(/\/+$/, '') + path);
      for (const [k, v] of Object.entries(init.query ?? {})) url.searchParams.set(k, v);
      try {
        const result = await this.sendAuthorized(endpoint, url, init);
        if (scheme !== undefined && schemes.length > 1) this.transport.rememberScheme(endpoint.host, scheme);
        return result;
      } catch (err) {
        if (scheme === 'https' && i + 1 < schemes.length && isNotTlsError(err)) {
          // Allowed for loopback and `insecure` registries only (transport.schemesFor).
          this.logger.debug({ registry: endpoint.host }, 'registry does not speak TLS; using plain HTTP');
          continue;
        }
        if (isAbort(err)) throw err; // the caller cancelled: not a registry failure
        throw networkError(err, init.target, endpoint.host, init.what);
      }
    }
  }

  private async sendAuthorized(endpoint: Endpoint, url: URL, init: SendInit): Promise<SendResult> {
    let authorization = this.auth.preemptive(endpoint.host, init.scope, endpoint.credential);
    for (let attempt = 0; ; attempt++) {
      const result = await this.followRedirects(url, init, authorization);
      if (result.res.statusCode !== 401 || attempt > 0) return result;
      const challenge = result.res.headers['www-authenticate'];
      const next = await this.auth.onChallenge(endpoint.host, init.scope, endpoint.credential, challenge, init.target, init.signal);
      if (next === undefined || (next === authorization && !next.startsWith('Bearer '))) return result;
      await result.res.body.dump();
      authorization = next;
    }
  }

  /**
   * A request straight to a URL the registry redirected to before (registry/blob-location.ts):
   * no Authorization, as for any redirect to another host. Network failures are classed as
   * for the registry itself.
   */
  async sendToLocation(url: URL, init: SendInit): Promise<SendResult> {
    try {
      return await this.followRedirects(url, init, undefined);
    } catch (err) {
      if (isAbort(err)) throw err;
      throw networkError(err, init.target, url.host, init.what);
    }
  }

  /**
   * Follows 301/302/303/307/308 (blob GETs redirect to object storage). Authorization goes
   * only to the origin it was meant for: a redirect to another host gets none — presigned
   * URLs carry their own authorization, and our token must not leak to a third party.
   */
  private async followRedirects(start: URL, init: SendInit, authorization: string | undefined): Promise<SendResult> {
    let url = start;
    for (let hop = 0; ; hop++) {
      const headers: Record<string, string> = { ...(init.headers ?? {}) };
      if (authorization !== undefined && url.origin === start.origin) headers.authorization = authorization;
      const method = init.method ?? 'GET';
      const res: HttpResponse = init.largeBody
        ? await rawRequest(url, {
            method,
            headers,
            tls: this.transport.tlsOptionsFor(url.host),
            signal: init.signal,
            headersTimeoutMs: HEADERS_TIMEOUT_MS,
            idleTimeoutMs: BODY_IDLE_TIMEOUT_MS,
          })
        : await request(url, { method, headers, dispatcher: this.transport.dispatcherFor(url.host), signal: init.signal });
      const location = res.headers.location;
      if (![301, 302, 303, 307, 308].includes(res.statusCode) || location === undefined) return { res, url };
      await res.body.dump();
      if (hop >= MAX_REDIRECTS) {
        throw new DriverError('REGISTRY_PROTOCOL', `registry ${start.host} redirected more than ${MAX_REDIRECTS} times for ${init.target.repository}`, { retryable: false });
      }
      url = new URL(Array.isArray(location) ? location[0]! : location, url);
    }
  }
}
