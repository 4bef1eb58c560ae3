import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { DriverError } from '../errors/driver-error.js';
import { diskUsage } from '../fs/disk-usage.js';
import type { Logger } from '../log/logger.js';
import type { AcquiredModel, ModelRequest, ModelSource } from './model-source.js';
import { pinnedDigest } from './pinned-reference.js';

/**
 * A ModelSource that never touches the network: it serves references pinned by digest whose
 * complete model is already in the node cache, at the place the puller publishes full models
 * (`<root>/models/sha256/<hex>`, model key `sha256/<hex>`). Anything else is
 * MODEL_NOT_CACHED. The pulling source replaces it without changing the node service.
 */
export class LocalModelSource implements ModelSource {
  private readonly sizes = new Map<string, number>();

  constructor(private readonly root: string) {}

  async acquire(request: ModelRequest, _options: { waitMs: number; log: Logger }): Promise<AcquiredModel> {
    const digest = pinnedDigest(request.reference);
    if (digest === undefined) {
      throw new DriverError(
        'MODEL_NOT_CACHED',
        `model ${request.reference} is not in the node cache: this node serves only references pinned by digest (…@sha256:<hex>) that are already cached`,
      );
    }
    if (request.include.length > 0 || request.exclude.length > 0) {
      throw new DriverError(
        'MODEL_NOT_CACHED',
        `model ${request.reference} with include/exclude is not in the node cache: this node serves only complete cached models`,
      );
    }
    const modelKey = `sha256/${digest.slice('sha256:'.length)}`;
    const path = join(this.root, 'models', modelKey);
    const isDirectory = await stat(path).then(
      (s) => s.isDirectory(),
      () => false,
    );
    if (!isDirectory) {
      throw new DriverError('MODEL_NOT_CACHED', `model ${request.reference} is not in the node cache (${path} is missing)`);
    }
    let sizeBytes = this.sizes.get(path);
    if (sizeBytes === undefined) {
      sizeBytes = (await diskUsage(path)).bytes; // the model is immutable: once is enough
      this.sizes.set(path, sizeBytes);
    }
    return { path, digest, modelKey, sizeBytes };
  }
}
