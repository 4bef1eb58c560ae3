import { createHash } from 'node:crypto';
import { Readable, Transform, type TransformCallback } from 'node:stream';
import type { Logger } from 'pino';
import type { ConfigFile } from '../config/schema.js';
import { ConnectionBudget, type RegistryConnections } from '../concurrency/connection-budget.js';
import { DriverError, isDriverError } from '../errors/driver-error.js';
import type { Metrics } from '../metrics/metrics.js';
import { piecePool } from '../fs/piece-pool.js';
import { Authenticator } from './auth/authenticator.js';
import { pullScope } from './auth/challenge.js';
import { CredentialStore, type RequestAuth } from './auth/credentials.js';
import { TokenCache } from './auth/token-cache.js';
import { isAbort, parseRetryAfter, statusError, type Target } from './http-errors.js';
import { MANIFEST_ACCEPT, MAX_MANIFEST_BYTES, nodePlatform, parseManifest, selectFromIndex, type Platform } from './manifest.js';
import { MediaTypes, type Descriptor, type ImageIndex, type ResolvedManifest } from './oci-types.js';
import type { BlobLocation } from './blob-location.js';
import { apiHost, formatReference, manifestReference, type Reference } from './reference.js';
import { RegistryHttp, type Endpoint, type SendInit, type SendResult } from './registry-http.js';
import { DEFAULT_RETRY, Retrier, type RetryPolicy } from './retry.js';
import { Transport } from './transport.js';

export type { RequestAuth } from './auth/credentials.js';

export interface RegistryClientOptions {
  config: Readonly<ConfigFile>;
  logger: Logger;
  metrics?: Metrics;
  /**
   * The retry policy (retry.ts; tests shorten the delays): manifests here, blobs in the content
   * store's resume loop, which takes it from `retrier`. Mirrors get one attempt per streak.
   */
  retry?: Partial<RetryPolicy>;
  /** Platform chosen from an index; default the node's (linux/amd64 here). */
  platform?: Platform;
}

/** Default cap for fetchBlobBytes (configs): same as manifests. */
const MAX_SMALL_BLOB_BYTES = MAX_MANIFEST_BYTES;
/** From this size a blob gets a connection of its own (raw-http.ts); smaller ones share keep-alive sockets. */
const LARGE_BLOB_BYTES = 8 * 2 ** 20;
const MAX_INDEX_DEPTH = 2;

export interface FetchedManifest {
  bytes: Buffer;
  digest: string;
  contentType: string | undefined;
}

/**
 * The OCI distribution client (distribution-spec "Pulling manifests" / "Pulling blobs").
 * Each call tries the registry's mirrors in order, then the origin. A manifest's retryable
 * failures against the origin are retried here (`retrier`); a blob open is one pass, retried
 * and resumed by the content store with the same `retrier`, so the two never multiply.
 * Blob bodies stream; nothing large is buffered.
 */
export class RegistryClient {
  private readonly config: Readonly<ConfigFile>;
  private readonly logger: Logger;
  private readonly metrics: Metrics | undefined;
  private readonly transport: Transport;
  private readonly credentials: CredentialStore;
  private readonly http: RegistryHttp;
  /** The one retry layer, shared with blob downloads (store/blob-download.ts); counts every retry. */
  readonly retrier: Retrier;
  /** Blob connections open at once, per node and per registry (config maxConnectionsPer*). */
  readonly connections: ConnectionBudget;
  private readonly platform: Platform;

  constructor(options: RegistryClientOptions) {
    this.config = options.config;
    this.logger = options.logger.child({ component: 'registry' });
    this.metrics = options.metrics;
    const metrics = options.metrics;
    this.retrier = new Retrier({ ...DEFAULT_RETRY, ...options.retry }, ({ reason }) => metrics?.registryRetries.inc({ reason }));
    this.platform = options.platform ?? nodePlatform();
    this.connections = new ConnectionBudget({ perNode: this.config.maxConnectionsPerNode, perRegistry: this.config.maxConnectionsPerRegistry });
    this.transport = new Transport(this.config, { connections: Math.max(16, this.config.maxConcurrentDownloads * 4) });
    this.credentials = new CredentialStore(this.config.dockerConfig, this.logger);
    this.http = new RegistryHttp(this.transport, new Authenticator(this.transport, new TokenCache(), this.logger), this.logger);
  }

  async resolve(ref: Reference, opts: { auth?: RequestAuth; signal?: AbortSignal } = {}): Promise<ResolvedManifest> {
    const name = formatReference(ref);
    const root = await this.fetchManifest(ref, manifestReference(ref), opts);
    if (ref.digest !== undefined && root.digest !== ref.digest) {
      throw new DriverError('DIGEST_MISMATCH', `manifest for ${name} has digest ${root.digest}, not the ${ref.digest} asked for`, { retryable: true });
    }
    let current = root;
    let parsed = parseManifest(root.bytes, root.contentType, `manifest ${name}`);
    for (let depth = 0; parsed.kind === 'index'; depth++) {
      if (depth >= MAX_INDEX_DEPTH) {
        throw new DriverError('REGISTRY_PROTOCOL', `index ${name} nests indexes more than ${MAX_INDEX_DEPTH} deep`, { retryable: false });
      }
      const entry = selectFromIndex(parsed.index, this.platform, `manifest ${name}`);
      if (entry.size > MAX_MANIFEST_BYTES) throw tooLarge(`manifest ${entry.digest} of ${name}`, entry.size);
      current = await this.fetchManifest(ref, entry.digest, opts);
      if (current.digest !== entry.digest || current.bytes.length !== entry.size) {
        throw new DriverError(
          'DIGEST_MISMATCH',
          `manifest ${entry.digest} of ${name} arrived as ${current.bytes.length} bytes with digest ${current.digest} (index says ${entry.size} bytes)`,
          { retryable: true },
        );
      }
      parsed = parseManifest(current.bytes, current.contentType, `manifest ${entry.digest} of ${name}`);
    }
    return { digest: current.digest, rootDigest: root.digest, mediaType: parsed.mediaType, manifest: parsed.manifest, bytes: current.bytes };
  }

  /**
   * A blob as a stream from `offset` (`Range: bytes=<offset>-`), or the piece [offset, end)
   * when `end` is given (`Range: bytes=<offset>-<end - 1>`). The returned offset is the one
   * the server honoured: 0 when it ignored the range and sent the whole blob (a caller asking
   * for pieces then takes the blob as one stream). The stream fails if the registry sends more
   * than asked for, or ends early (resume from there). One pass, no retry: the caller's resume
   * loop retries (retry.ts). `attempt` is that loop's attempt in its streak: mirrors are asked
   * on the first only, the origin every time. With `location`, a redirect the registry answered
   * is remembered and later pieces go straight there (blob-location.ts).
   */
  async fetchBlob(
    ref: Reference,
    desc: Descriptor,
    opts: { offset?: number; end?: number; auth?: RequestAuth; signal?: AbortSignal; attempt?: number; location?: BlobLocation } = {},
  ): Promise<{ body: Readable; offset: number; end: number; recycle: (chunks: readonly Buffer[]) => void }> {
    const offset = opts.offset ?? 0;
    const end = opts.end ?? desc.size;
    if (!Number.isSafeInteger(offset) || offset < 0 || offset > desc.size || !Number.isSafeInteger(end) || end < offset || end > desc.size) {
      throw new DriverError('INVALID_ARGUMENT', `range ${offset}-${end} is outside blob ${desc.digest} of ${desc.size} bytes`);
    }
    if (offset === end) return { body: Readable.from([]), offset, end, recycle: givePieces };
    const target: Target = { registry: ref.registry, repository: ref.repository };
    const pass = { retry: false, mirrors: (opts.attempt ?? 1) === 1 };
    const range = offset === 0 && end === desc.size ? undefined : end === desc.size ? `bytes=${offset}-` : `bytes=${offset}-${end - 1}`;
    return this.acrossEndpoints(ref, opts, 'fetching a blob of', pass, async (endpoint) => {
      const init: SendInit = {
        headers: range === undefined ? {} : { range },
        largeBody: end - offset >= LARGE_BLOB_BYTES,
        ...this.sendContext(ref, endpoint, 'fetching a blob of', opts.signal),
      };
      const { res } = await this.sendBlobGet(ref, desc, endpoint, init, opts.location);
      let honoured: number;
      let carries = desc.size;
      if (res.statusCode === 200) honoured = 0;
      else if (res.statusCode === 206) {
        carries = end;
        const m = /^bytes (\d+)-(\d+)\/(?:\d+|\*)$/.exec(String(res.headers['content-range'] ?? ''));
        honoured = m ? Number(m[1]) : NaN;
        if (honoured !== offset || Number(m![2]) !== end - 1) {
          res.body.destroy();
          throw new DriverError('REGISTRY_PROTOCOL', `registry ${endpoint.host} answered a range request (${range}) for blob ${desc.digest} of ${ref.repository} with Content-Range "${String(res.headers['content-range'])}"`, { retryable: false });
        }
      } else {
        await res.body.dump();
        throw statusError(res.statusCode, target, endpoint.host, { blob: desc.digest }, parseRetryAfter(res.headers['retry-after']));
      }
      const body = countingStream(res.body, {
        expected: carries - honoured,
        onBytes: (n) => this.metrics?.bytesPulled.inc({ registry: ref.registry }, n),
        describe: `blob ${desc.digest} from registry ${endpoint.host} (${ref.repository})`,
      });
      // The reader may hand body chunks back once done with them (raw-http.ts reuses them: piece-pool.ts).
      return { body, offset: honoured, end: carries, recycle: givePieces };
    });
  }

  /**
   * One blob GET: straight to the location the registry redirected to before, while it is
   * valid (blob-location.ts); else to the registry, remembering where it redirects. A location
   * that answers 401/403 (expired, revoked) is dropped and the registry asked again.
   */
  private async sendBlobGet(ref: Reference, desc: Descriptor, endpoint: Endpoint, init: SendInit, location: BlobLocation | undefined): Promise<SendResult> {
    for (;;) {
      const next = await location?.next(endpoint.host);
      if (next?.url !== undefined) {
        const sent = await this.http.sendToLocation(next.url, init);
        if (sent.res.statusCode !== 401 && sent.res.statusCode !== 403) return sent;
        await sent.res.body.dump();
        location!.forget(endpoint.host);
        continue;
      }
      try {
        const sent = await this.http.send(endpoint, `/v2/${ref.repository}/blobs/${desc.digest}`, init);
        const ok = sent.res.statusCode === 200 || sent.res.statusCode === 206;
        if (location !== undefined && ok) {
          if (sent.url.host !== endpoint.host) location.remember(endpoint.host, sent.url);
          else location.rememberDirect(endpoint.host);
        }
        return sent;
      } finally {
        next?.answered();
      }
    }
  }

  /** The connection slots of blob downloads from this reference's registry (maxConnectionsPer*). */
  connectionsFor(ref: Reference): RegistryConnections {
    return this.connections.forRegistry(ref.registry);
  }

  /** A small blob (a config) read whole, size-capped and sha256-verified. */
  async fetchBlobBytes(ref: Reference, desc: Descriptor, opts: { auth?: RequestAuth; maxBytes?: number; signal?: AbortSignal } = {}): Promise<Buffer> {
    const max = opts.maxBytes ?? MAX_SMALL_BLOB_BYTES;
    if (desc.size > max) throw tooLarge(`blob ${desc.digest} of ${formatReference(ref)}`, desc.size, max);
    const { body } = await this.fetchBlob(ref, desc, { auth: opts.auth, signal: opts.signal });
    const chunks: Buffer[] = [];
    const hash = createHash('sha256');
    for await (const chunk of body as AsyncIterable<Buffer>) {
      hash.update(chunk);
      chunks.push(chunk);
    }
    const digest = `sha256:${hash.digest('hex')}`;
    if (digest !== desc.digest) {
      throw new DriverError('DIGEST_MISMATCH', `blob ${desc.digest} of ${formatReference(ref)} arrived with digest ${digest}; nothing was kept`, { retryable: true });
    }
    return Buffer.concat(chunks);
  }

  /**
   * A manifest by tag or digest, as received (no index → platform step), or undefined when
   * the repository has none: for tags that most manifests lack (cosign's `sha256-<hex>.sig`,
   * the referrers tag schema).
   */
  async fetchManifestIfPresent(ref: Reference, reference: string, opts: { auth?: RequestAuth; signal?: AbortSignal } = {}): Promise<FetchedManifest | undefined> {
    try {
      return await this.fetchManifest(ref, reference, opts);
    } catch (err) {
      if (isDriverError(err, 'MANIFEST_NOT_FOUND')) return undefined;
      throw err;
    }
  }

  /**
   * distribution-spec "Listing Referrers" (`GET /v2/<name>/referrers/<digest>`): the index of
   * the manifests whose `subject` is `digest`, or undefined when the registry does not serve
   * the API — it answers 404, which a registry that serves it MUST NOT; the caller then reads
   * the referrers tag schema (`sha256-<hex>`) instead.
   */
  async referrers(ref: Reference, digest: string, opts: { auth?: RequestAuth; signal?: AbortSignal } = {}): Promise<ImageIndex | undefined> {
    const target: Target = { registry: ref.registry, repository: ref.repository };
    const where = `referrers of ${ref.registry}/${ref.repository}@${digest}`;
    return this.acrossEndpoints(ref, opts, 'listing the referrers of', { retry: true, mirrors: true }, async (endpoint) => {
      const { res } = await this.http.send(endpoint, `/v2/${ref.repository}/referrers/${digest}`, {
        headers: { accept: MediaTypes.ociIndex },
        ...this.sendContext(ref, endpoint, 'listing the referrers of', opts.signal),
      });
      if (res.statusCode === 404) {
        await res.body.dump();
        return undefined;
      }
      if (res.statusCode !== 200) {
        await res.body.dump();
        throw statusError(res.statusCode, target, endpoint.host, {}, parseRetryAfter(res.headers['retry-after']));
      }
      const parsed = parseManifest(await readCapped(res.body, where), MediaTypes.ociIndex, where);
      if (parsed.kind !== 'index') throw new DriverError('REGISTRY_PROTOCOL', `registry ${endpoint.host} answered the ${where} with a manifest, not an index`, { retryable: false });
      return parsed.index;
    });
  }

  async close(): Promise<void> {
    await this.transport.close();
  }

  // ---- internals ----

  private async fetchManifest(ref: Reference, reference: string, opts: { auth?: RequestAuth; signal?: AbortSignal }): Promise<FetchedManifest> {
    const target: Target = { registry: ref.registry, repository: ref.repository };
    const name = `${ref.registry}/${ref.repository}@${reference}`;
    return this.acrossEndpoints(ref, opts, 'fetching the manifest of', { retry: true, mirrors: true }, async (endpoint) => {
      const { res }: SendResult = await this.http.send(endpoint, `/v2/${ref.repository}/manifests/${reference}`, {
        headers: { accept: MANIFEST_ACCEPT.join(', ') },
        ...this.sendContext(ref, endpoint, 'fetching the manifest of', opts.signal),
      });
      if (res.statusCode !== 200) {
        await res.body.dump();
        throw statusError(res.statusCode, target, endpoint.host, { manifest: reference }, parseRetryAfter(res.headers['retry-after']));
      }
      const declared = Number(res.headers['content-length']);
      if (declared > MAX_MANIFEST_BYTES) {
        res.body.destroy();
        throw tooLarge(`manifest ${name}`, declared);
      }
      const bytes = await readCapped(res.body, `manifest ${name}`);
      const digest = `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
      // distribution-spec: a client SHOULD verify the content against Docker-Content-Digest.
      const claimed = res.headers['docker-content-digest'];
      if (typeof claimed === 'string' && claimed.startsWith('sha256:') && claimed !== digest) {
        throw new DriverError('DIGEST_MISMATCH', `registry ${endpoint.host} sent manifest ${name} with digest ${digest} but labelled it ${claimed}`, { retryable: true });
      }
      const contentType = res.headers['content-type'];
      return { bytes, digest, contentType: Array.isArray(contentType) ? contentType[0] : contentType };
    });
  }

  private sendContext(ref: Reference, endpoint: Endpoint, what: string, signal: AbortSignal | undefined) {
    return {
      scope: pullScope(ref.repository),
      target: { registry: ref.registry, repository: ref.repository },
      what,
      signal,
      // containerd's convention: a mirror learns which upstream is meant from `ns`.
      ...(endpoint.isMirror ? { query: { ns: ref.registry } } : {}),
    };
  }

  /** Mirrors in configured order, then the origin. Credentials are looked up per host. */
  private async endpoints(ref: Reference, auth: RequestAuth | undefined): Promise<Endpoint[]> {
    const out: Endpoint[] = [];
    for (const mirror of this.transport.registryConfig(ref.registry)?.mirrors ?? []) {
      const url = new URL(mirror);
      out.push({
        host: url.host,
        base: `${url.protocol}//${url.host}${url.pathname.replace(/\/+$/, '')}`,
        isMirror: true,
        // Only the mirror's own credentials: the origin's are not sent to a third party.
        credential: await this.credentials.lookup(url.host, ref.repository, auth),
      });
    }
    out.push({ host: apiHost(ref.registry), isMirror: false, credential: await this.credentials.lookup(ref.registry, ref.repository, auth) });
    return out;
  }

  /**
   * Mirrors in order (once each), then the origin: retried with backoff when `pass.retry`
   * (manifests), once otherwise (a blob open: its caller retries and resumes).
   */
  private async acrossEndpoints<T>(
    ref: Reference,
    opts: { auth?: RequestAuth; signal?: AbortSignal },
    what: string,
    pass: { retry: boolean; mirrors: boolean },
    op: (endpoint: Endpoint) => Promise<T>,
  ): Promise<T> {
    const endpoints = (await this.endpoints(ref, opts.auth)).filter((endpoint) => pass.mirrors || !endpoint.isMirror);
    for (const endpoint of endpoints) {
      try {
        if (endpoint.isMirror || !pass.retry) return await op(endpoint);
        return await this.retrier.run(() => op(endpoint), opts.signal, ({ err, attempt, delayMs }) =>
          this.logger.warn(
            { registry: endpoint.host, repository: ref.repository, attempt, delayMs: Math.round(delayMs), err: (err as Error).message },
            `retrying after a failure ${what} the repository`,
          ),
        );
      } catch (err) {
        if (!endpoint.isMirror || isAbort(err) || opts.signal?.aborted) throw err;
        this.logger.warn({ mirror: endpoint.host, registry: ref.registry, repository: ref.repository, err: (err as Error).message }, 'mirror failed; trying the next endpoint');
      }
    }
    throw new Error('unreachable: the origin is always the last endpoint');
  }
}

/** A manifest-sized body read whole; past MAX_MANIFEST_BYTES the stream is cut and MANIFEST_TOO_LARGE thrown (a lying or absent content-length). */
async function readCapped(body: SendResult['res']['body'], what: string): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of body as AsyncIterable<Buffer>) {
    total += chunk.length;
    if (total > MAX_MANIFEST_BYTES) {
      body.destroy();
      throw tooLarge(what, total);
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

function tooLarge(what: string, size: number, max = MAX_MANIFEST_BYTES): DriverError {
  return new DriverError('MANIFEST_TOO_LARGE', `${what} is ${size} bytes, above the ${max}-byte cap; the artifact is malformed or hostile`, { retryable: false });
}

/** Back to the pool (body chunks that are not pool pieces are ignored). */
function givePieces(chunks: readonly Buffer[]): void {
  piecePool.give(chunks);
}

/**
 * Passes a blob body through, counting bytes into metrics and holding the registry to the
 * descriptor's size: more bytes than promised is refused at once (never buffered or
 * written past the size), fewer is a retryable break the caller resumes from.
 */
function countingStream(source: Readable, o: { expected: number; onBytes: (n: number) => void; describe: string }): Readable {
  let received = 0;
  const counter = new Transform({
    transform(chunk: Buffer, _enc, callback: TransformCallback) {
      received += chunk.length;
      if (received > o.expected) {
        callback(new DriverError('DIGEST_MISMATCH', `${o.describe} sent more than the ${o.expected} bytes its descriptor promises`, { retryable: true }));
        return;
      }
      o.onBytes(chunk.length);
      callback(null, chunk);
    },
    flush(callback: TransformCallback) {
      if (received < o.expected) {
        callback(new DriverError('REGISTRY_UNAVAILABLE', `${o.describe} ended after ${received} of ${o.expected} bytes; resume from there`, { retryable: true }));
        return;
      }
      callback();
    },
  });
  source.on('error', (err) => {
    counter.destroy(
      err instanceof DriverError
        ? err
        : new DriverError('REGISTRY_UNAVAILABLE', `${o.describe} broke after ${received} bytes (${(err as NodeJS.ErrnoException).code ?? err.message}); resume from there`, { cause: err, retryable: true }),
    );
  });
  counter.on('close', () => {
    if (!source.destroyed) source.destroy();
  });
  source.pipe(counter);
  return counter;
}
