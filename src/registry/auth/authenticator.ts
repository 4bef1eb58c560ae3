import type { Logger } from 'pino';
import { request } from 'undici';
import { SingleFlight } from '../../concurrency/single-flight.js';
import { DriverError } from '../../errors/driver-error.js';
import { networkError, statusError, type Target } from '../http-errors.js';
import type { Transport } from '../transport.js';
import { parseChallenges } from './challenge.js';
import type { Credential } from './docker-config.js';
import { TokenCache } from './token-cache.js';

/**
 * Authorization for registry requests: anonymous, basic, or the bearer token flow of the
 * docker token auth spec (https://distribution.github.io/distribution/spec/auth/token/):
 *
 *   GET /v2/…  → 401  WWW-Authenticate: Bearer realm="R",service="S",scope="repository:X:pull"
 *   GET R?service=S&scope=… (Basic credentials if we have any) → {"token"|"access_token", "expires_in"}
 *   GET /v2/…  Authorization: Bearer <token>
 *
 * With a docker `identitytoken` the token comes from the OAuth2 flow instead
 * (spec/auth/oauth: POST R grant_type=refresh_token). Like docker, the first request to a
 * host goes out without credentials; once a host has challenged, later requests carry the
 * cached token (or basic credentials) up front.
 */
export class Authenticator {
  private readonly schemeByHost = new Map<string, 'basic' | 'bearer'>();
  /** Concurrent 401s for one host, scope and credential share one token request. */
  private readonly tokenFetches = new SingleFlight<string>();

  constructor(
    private readonly transport: Transport,
    private readonly tokens: TokenCache,
    private readonly logger: Logger,
  ) {}

  /** The Authorization value to send before any challenge, if we already know one. */
  preemptive(host: string, scope: string, cred: Credential | undefined): string | undefined {
    const scheme = this.schemeByHost.get(host);
    if (scheme === 'bearer') {
      if (cred?.registryToken !== undefined) return `Bearer ${cred.registryToken}`;
      const token = this.tokens.get(TokenCache.key(host, scope, cred?.id ?? 'anonymous'));
      return token === undefined ? undefined : `Bearer ${token}`;
    }
    if (scheme === 'basic') return basicHeader(cred);
    return undefined;
  }

  /**
   * Answers a 401: returns the Authorization value to retry with, or undefined when there is
   * nothing better to send (the caller then reports REGISTRY_UNAUTHORIZED).
   */
  async onChallenge(
    host: string,
    scope: string,
    cred: Credential | undefined,
    wwwAuthenticate: string | string[] | undefined,
    target: Target,
    signal?: AbortSignal,
  ): Promise<string | undefined> {
    const challenges = parseChallenges(wwwAuthenticate);
    const bearer = challenges.find((c) => c.scheme === 'bearer');
    const realm = bearer?.params.realm;
    if (bearer !== undefined && realm !== undefined) {
      this.schemeByHost.set(host, 'bearer');
      if (cred?.registryToken !== undefined) return `Bearer ${cred.registryToken}`;
      const key = TokenCache.key(host, scope, cred?.id ?? 'anonymous');
      // A 401 with a token we sent means it went stale or was revoked: fetch a fresh one once.
      this.tokens.delete(key);
      // Under the flight's signal: one caller giving up does not fail the others' token.
      const pending = this.tokenFetches.run(key, (flight) => this.fetchToken(realm, bearer.params.service, scope, cred, key, target, flight.signal), { signal });
      return `Bearer ${await pending}`;
    }
    if (challenges.some((c) => c.scheme === 'basic')) {
      this.schemeByHost.set(host, 'basic');
      return basicHeader(cred);
    }
    return undefined;
  }

  private async fetchToken(
    realm: string,
    service: string | undefined,
    scope: string,
    cred: Credential | undefined,
    key: string,
    target: Target,
    signal?: AbortSignal,
  ): Promise<string> {
    let url: URL;
    try {
      url = new URL(realm);
      if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new Error('scheme');
    } catch {
      throw new DriverError('REGISTRY_PROTOCOL', `registry ${target.registry} sent a token realm that is not an http(s) URL`, { retryable: false });
    }
    const realmHost = url.host;
    const dispatcher = this.transport.dispatcherFor(realmHost);
    let res;
    try {
      if (cred?.identityToken !== undefined) {
        const form = new URLSearchParams({ grant_type: 'refresh_token', refresh_token: cred.identityToken, client_id: 'model-csi', scope });
        if (service !== undefined) form.set('service', service);
        res = await request(url, {
          method: 'POST',
          dispatcher,
          signal,
          headers: { 'content-type': 'application/x-www-form-urlencoded' },
          body: form.toString(),
        });
      } else {
        if (service !== undefined) url.searchParams.set('service', service);
        url.searchParams.set('scope', scope);
        if (cred?.username !== undefined) url.searchParams.set('account', cred.username);
        const auth = basicHeader(cred);
        res = await request(url, { method: 'GET', dispatcher, signal, headers: auth === undefined ? {} : { authorization: auth } });
      }
    } catch (err) {
      throw networkError(err, target, `token server ${realmHost}`, 'getting a pull token for');
    }
    if (res.statusCode !== 200) {
      await res.body.dump();
      if (res.statusCode === 401 || res.statusCode === 403) {
        throw new DriverError(
          'REGISTRY_UNAUTHORIZED',
          `the token server ${realmHost} of registry ${target.registry} refused ${cred === undefined ? 'anonymous access' : 'the credentials'} for repository ${target.repository} (HTTP ${res.statusCode}): check the pull secret (nodePublishSecretRef) or the node docker config`,
          { retryable: false },
        );
      }
      throw statusError(res.statusCode, target, `token server ${realmHost}`, {});
    }
    let body: { token?: unknown; access_token?: unknown; expires_in?: unknown };
    try {
      body = (await res.body.json()) as typeof body;
    } catch {
      throw new DriverError('REGISTRY_PROTOCOL', `the token server ${realmHost} of registry ${target.registry} answered with something that is not JSON`, { retryable: false });
    }
    const token = typeof body.token === 'string' && body.token !== '' ? body.token : body.access_token;
    if (typeof token !== 'string' || token === '') {
      throw new DriverError('REGISTRY_PROTOCOL', `the token server ${realmHost} of registry ${target.registry} answered without a token`, { retryable: false });
    }
    const expiresIn = typeof body.expires_in === 'number' ? body.expires_in : undefined;
    this.tokens.set(key, token, expiresIn);
    this.logger.debug({ realm: realmHost, scope, expiresIn: expiresIn ?? 'default' }, 'fetched registry token');
    return token;
  }
}

function basicHeader(cred: Credential | undefined): string | undefined {
  if (cred?.username === undefined || cred.password === undefined) return undefined;
  return 'Basic ' + Buffer.from(`${cred.username}:${cred.password}`).toString('base64');
}
