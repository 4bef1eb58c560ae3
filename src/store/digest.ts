import { DriverError } from '../errors/driver-error.js';

/**
 * Digests the store accepts: `sha256:<64 lowercase hex>` only (OCI image spec, "Digests":
 * sha256 is the algorithm every registry must support). The hex part names files on disk, so
 * it is validated before it is ever joined into a path.
 */
const SHA256_DIGEST = /^sha256:([a-f0-9]{64})$/;

export function digestHex(digest: string, what = 'blob'): string {
  const match = SHA256_DIGEST.exec(digest);
  if (!match) {
    throw new DriverError('UNSUPPORTED_MEDIA_TYPE', `${what} digest "${digest}" is not sha256:<64 hex>; only sha256 content is supported`);
  }
  return match[1]!;
}

export function isSha256Hex(name: string): boolean {
  return /^[a-f0-9]{64}$/.test(name);
}
