import { createHash } from 'node:crypto';
import { DriverError } from '../errors/driver-error.js';
import { normalizeSelection } from '../artifacts/selection.js';
import { digestHex } from '../registry/digest.js';

/**
 * The key of a cached model: `sha256/<manifest hex>` for the whole model, or
 * `sha256/<hex>-<16 hex>` for a partial pull, the suffix being the first 16 hex of the sha256
 * of the normalized include/exclude selection. The node service relies on a full model living
 * at exactly `<root>/models/sha256/<hex>`.
 */
const MODEL_KEY = /^sha256\/[a-f0-9]{64}(-[a-f0-9]{16})?$/;

export function modelKeyFor(digest: string, include: readonly string[] = [], exclude: readonly string[] = []): string {
  const hex = digestHex(digest, 'model');
  const selection = normalizeSelection(include, exclude);
  if (selection.include.length === 0 && selection.exclude.length === 0) return `sha256/${hex}`;
  const suffix = createHash('sha256').update(JSON.stringify(selection)).digest('hex').slice(0, 16);
  return `sha256/${hex}-${suffix}`;
}

export function assertModelKey(key: string): void {
  if (!MODEL_KEY.test(key)) {
    throw new DriverError('INVALID_ARGUMENT', `"${key}" is not a model key (sha256/<hex>[-<selection>]); see model-csi cache ls`);
  }
}

/** `sha256/<hex>-<sel>` → `sha256_<hex>-<sel>`: state files live in one flat directory. */
export function keyToFileName(key: string): string {
  assertModelKey(key);
  return key.replace('/', '_');
}
