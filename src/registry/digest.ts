import { DriverError } from '../errors/driver-error.js';

/**
 * Content digests: `sha256:<64 lowercase hex>` only (OCI image spec, "Digests": sha256 is the
 * algorithm every registry must support). The one pattern for references, descriptors, tag
 * records and the store, whose hex part names files on disk, so it is validated before it is
 * ever joined into a path.
 */
const SHA256_DIGEST = /^sha256:([a-f0-9]{64})$/;
const SHA256_HEX = /^[a-f0-9]{64}$/;

export function isSha256Digest(value: string): boolean {
  return SHA256_DIGEST.test(value);
}

/** The hex of a digest the store accepts, else UNSUPPORTED_MEDIA_TYPE naming `what`. */
export function digestHex(digest: string, what = 'blob'): string {
  const match = SHA256_DIGEST.exec(digest);
  if (!match) {
    throw new DriverError('UNSUPPORTED_MEDIA_TYPE', `${what} digest "${digest}" is not sha256:<64 hex>; only sha256 content is supported`);
  }
  return match[1]!;
}

/** A file name under `blobs/sha256/` or `files/sha256/`: the hex alone. */
export function isSha256Hex(name: string): boolean {
  return SHA256_HEX.test(name);
}
