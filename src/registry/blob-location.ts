/**
 * Where a blob's bytes were found after the registry redirected (object storage: S3, GCS,
 * Azure Blob, a CDN), so that the ranged pieces of one download go there directly instead of
 * asking the registry, and being redirected, once per piece.
 *
 * One per download source (the pull's credentials decide what the registry lets it see, so a
 * location is never shared between pulls). Kept per endpoint: a mirror's redirect is not the
 * origin's. A location is used until it expires (from the URL's own presigning parameters,
 * less a margin) or is refused (401/403: `forget`), then the registry is asked again.
 * Authorization is never sent to a location: it is on another host, and a presigned URL
 * carries its own.
 */
export class BlobLocation {
  /** Per endpoint, where its blob GETs end: a location, or `direct` (it serves the bytes itself). */
  private readonly byEndpoint = new Map<string, { url: URL | 'direct'; expiresAt: number }>();
  /** An ask of the registry in progress per endpoint: the other connections wait for its answer. */
  private readonly asking = new Map<string, Promise<void>>();

  constructor(private readonly now: () => number = Date.now) {}

  /**
   * The location to fetch from for this endpoint, once any ask in progress has its answer; or
   * undefined, and then this caller asks the registry and must call `answered` once it has the
   * response head (the next callers wait until then, so one redirect is followed, not one per
   * connection).
   */
  async next(endpoint: string): Promise<{ url: URL | undefined; answered: () => void }> {
    for (let pending = this.asking.get(endpoint); pending !== undefined; pending = this.asking.get(endpoint)) await pending;
    const known = this.lookup(endpoint);
    if (known !== undefined) return { url: known === 'direct' ? undefined : known, answered: () => undefined };
    let answered!: () => void;
    const ask = new Promise<void>((resolve) => (answered = resolve)).finally(() => this.asking.delete(endpoint));
    this.asking.set(endpoint, ask);
    return { url: undefined, answered };
  }

  /** Where this endpoint's blob GETs end, while still valid; undefined when the registry must be asked. */
  private lookup(endpoint: string): URL | 'direct' | undefined {
    const known = this.byEndpoint.get(endpoint);
    if (known === undefined) return undefined;
    if (this.now() >= known.expiresAt) {
      this.byEndpoint.delete(endpoint);
      return undefined;
    }
    return known.url;
  }

  /** The registry at `endpoint` redirected a blob GET that ended at `url` (on another host). */
  remember(endpoint: string, url: URL): void {
    this.byEndpoint.set(endpoint, { url, expiresAt: presignedExpiry(url, this.now()) });
  }

  /** The registry at `endpoint` answered a blob GET itself: no redirect to wait for. */
  rememberDirect(endpoint: string): void {
    this.byEndpoint.set(endpoint, { url: 'direct', expiresAt: Infinity });
  }

  forget(endpoint: string): void {
    this.byEndpoint.delete(endpoint);
  }
}

/** Stop using a presigned URL this long before it says it expires (clock skew, a slow piece). */
const EXPIRY_MARGIN_MS = 30_000;
/** A location that says nothing of its expiry is asked for again after this long. */
const DEFAULT_LIFETIME_MS = 5 * 60_000;

/**
 * When a presigned URL stops working, from its query: S3 SigV4 (`X-Amz-Date` + `X-Amz-Expires`),
 * GCS V4 (`X-Goog-Date` + `X-Goog-Expires`), S3 SigV2 and CloudFront (`Expires`, epoch
 * seconds), Azure SAS (`se`, ISO 8601). Anything else: DEFAULT_LIFETIME_MS.
 */
export function presignedExpiry(url: URL, now: number): number {
  const q = url.searchParams;
  for (const prefix of ['X-Amz', 'X-Goog']) {
    const date = q.get(`${prefix}-Date`);
    const expires = Number(q.get(`${prefix}-Expires`));
    const start = date === null ? NaN : parseCompactDate(date);
    if (Number.isFinite(start) && Number.isFinite(expires) && expires > 0) return start + expires * 1000 - EXPIRY_MARGIN_MS;
  }
  const epoch = Number(q.get('Expires'));
  if (q.has('Expires') && Number.isFinite(epoch) && epoch > 0) return epoch * 1000 - EXPIRY_MARGIN_MS;
  const sas = q.get('se');
  if (sas !== null && Number.isFinite(Date.parse(sas))) return Date.parse(sas) - EXPIRY_MARGIN_MS;
  return now + DEFAULT_LIFETIME_MS;
}

/** `20261202T081500Z` (ISO 8601 basic, UTC) as epoch milliseconds; NaN when it is not one. */
function parseCompactDate(value: string): number {
  const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(value);
  return m ? Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3]), Number(m[4]), Number(m[5]), Number(m[6])) : NaN;
}
