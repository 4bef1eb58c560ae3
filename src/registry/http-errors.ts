import { DriverError } from '../errors/driver-error.js';

/**
 * Turning transport failures and registry status codes into catalog errors. Every message
 * names the registry and repository and says what to do; none carries a credential.
 */

/** Where a request went, for messages: the registry as the user named it, and the repository. */
export interface Target {
  registry: string;
  repository: string;
}

const NOT_TLS_CODES = new Set(['ERR_SSL_WRONG_VERSION_NUMBER', 'ERR_SSL_PACKET_LENGTH_TOO_LONG', 'ERR_SSL_HTTP_REQUEST']);

function errorCode(err: unknown): string | undefined {
  const e = err as { code?: unknown; cause?: { code?: unknown } } | undefined;
  if (typeof e?.code === 'string') return e.code;
  if (typeof e?.cause?.code === 'string') return e.cause.code;
  return undefined;
}

/** The peer answered a TLS handshake with something else: it speaks plain HTTP. */
export function isNotTlsError(err: unknown): boolean {
  const code = errorCode(err);
  return code !== undefined && (NOT_TLS_CODES.has(code) || (code === 'EPROTO' && /wrong version number/i.test(String((err as Error).message))));
}

/** Certificate verification or handshake failures (not "the peer is not TLS"). */
function isTlsError(err: unknown): boolean {
  const code = errorCode(err);
  if (code === undefined || isNotTlsError(err)) return false;
  return /CERT|SELF_SIGNED|ERR_TLS|ERR_SSL|UNABLE_TO_(GET|VERIFY)/.test(code);
}

export function isAbort(err: unknown): boolean {
  return (err as Error | undefined)?.name === 'AbortError' || errorCode(err) === 'UND_ERR_ABORTED' || errorCode(err) === 'ABORT_ERR';
}

/**
 * A failure below HTTP (connect, TLS, reset) as a DriverError. `endpoint` is what we were
 * talking to (a mirror or the origin), shown only as host, never as a URL with userinfo.
 */
export function networkError(err: unknown, target: Target, endpoint: string, what: string): DriverError {
  if (err instanceof DriverError) return err;
  const code = errorCode(err) ?? 'unknown error';
  if (isTlsError(err)) {
    return new DriverError(
      'TLS_FAILURE',
      `TLS verification failed for registry ${endpoint} (${code}) while ${what} ${target.repository}: ` +
        `set registries."${target.registry}".ca to the registry's CA bundle in the driver config, or insecure: true for a test registry`,
      { cause: err, retryable: false },
    );
  }
  return new DriverError(
    'REGISTRY_UNAVAILABLE',
    `registry ${endpoint} could not be reached (${code}) while ${what} ${target.repository}; check the network and the registry's health`,
    // Resets, refusals, timeouts, DNS hiccups: all worth another attempt.
    { cause: err, retryable: true },
  );
}

/** An HTTP status the caller did not expect, as a DriverError. */
export function statusError(
  status: number,
  target: Target,
  endpoint: string,
  kind: { manifest?: string; blob?: string },
  retryAfterMs?: number,
): DriverError & { retryAfterMs?: number } {
  const repo = `${target.registry}/${target.repository}`;
  if (status === 401 || status === 403) {
    return new DriverError(
      'REGISTRY_UNAUTHORIZED',
      `registry ${endpoint} denied access to repository ${target.repository} (HTTP ${status}): check the pull secret (nodePublishSecretRef) or the node docker config credentials for ${target.registry}`,
      { retryable: false },
    );
  }
  if (status === 404 && kind.manifest !== undefined) {
    const what = kind.manifest.startsWith('sha256:') ? `no manifest ${kind.manifest}` : `no tag ${kind.manifest}`;
    return new DriverError('MANIFEST_NOT_FOUND', `${what} in ${repo} (registry ${endpoint} answered 404): check the reference`, {
      retryable: false,
    });
  }
  if (status === 404 && kind.blob !== undefined) {
    return new DriverError(
      'BLOB_NOT_FOUND',
      `registry ${endpoint} has no blob ${kind.blob} in ${repo} although the manifest names it: the artifact is broken in the registry, push it again`,
      { retryable: false },
    );
  }
  if (status === 429 || status >= 500) {
    const err = new DriverError(
      'REGISTRY_UNAVAILABLE',
      `registry ${endpoint} answered HTTP ${status} for ${repo}${status === 429 ? ' (rate limited)' : ''}; retry later or check the registry's health`,
      { retryable: true },
    ) as DriverError & { retryAfterMs?: number };
    if (retryAfterMs !== undefined) err.retryAfterMs = retryAfterMs;
    return err;
  }
  return new DriverError('REGISTRY_PROTOCOL', `registry ${endpoint} answered unexpected HTTP ${status} for ${repo}`, { retryable: false });
}

/** `Retry-After` as milliseconds: delta-seconds or an HTTP date (RFC 9110 §10.2.3). */
export function parseRetryAfter(value: string | string[] | undefined, now = Date.now()): number | undefined {
  const v = Array.isArray(value) ? value[0] : value;
  if (v === undefined || v.trim() === '') return undefined;
  if (/^\d+$/.test(v.trim())) return Number(v.trim()) * 1000;
  const date = Date.parse(v);
  return Number.isNaN(date) ? undefined : Math.max(0, date - now);
}
