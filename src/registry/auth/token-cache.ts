/**
 * Bearer tokens by (registry host, scope, credential identity), reused until shortly before
 * they expire. The credential identity is a hash (see docker-config.ts), so a token fetched
 * with one pull secret is never handed to a caller with another.
 */
export interface CachedToken {
  token: string;
  expiresAt: number;
}

/** Refresh this long before expiry so a token does not lapse in flight. */
const EXPIRY_SLACK_MS = 5_000;
/** Token spec: "If omitted, a default of 60 seconds should be assumed". */
const DEFAULT_TOKEN_LIFETIME_S = 60;

export class TokenCache {
  private readonly entries = new Map<string, CachedToken>();

  constructor(private readonly now: () => number = Date.now) {}

  static key(host: string, scope: string, credentialId: string): string {
    return `${host}\n${scope}\n${credentialId}`;
  }

  get(key: string): string | undefined {
    const entry = this.entries.get(key);
    if (entry === undefined) return undefined;
    if (entry.expiresAt - EXPIRY_SLACK_MS <= this.now()) {
      this.entries.delete(key);
      return undefined;
    }
    return entry.token;
  }

  set(key: string, token: string, expiresInSeconds: number | undefined): void {
    const lifetime = expiresInSeconds !== undefined && expiresInSeconds > 0 ? expiresInSeconds : DEFAULT_TOKEN_LIFETIME_S;
    this.entries.set(key, { token, expiresAt: this.now() + lifetime * 1000 });
  }

  delete(key: string): void {
    this.entries.delete(key);
  }

  get size(): number {
    return this.entries.size;
  }
}
