import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { DriverError } from '../../src/errors/driver-error.js';
import type { AcquiredModel, ModelRequest, ModelSource } from '../../src/node/model-source.js';

/**
 * A ModelSource for unit tests of the node service: it serves `…@sha256:<hex>` references
 * whose model directory a test placed at `<root>/models/sha256/<hex>` (where the store
 * publishes full models) and refuses anything else with NOT_FOUND, without any registry.
 * The product's source is src/model-source/pulling-model-source.ts.
 */
export class CachedModelSource implements ModelSource {
  constructor(private readonly root: string) {}

  async acquire(request: ModelRequest): Promise<AcquiredModel> {
    const digest = /@(sha256:[0-9a-f]{64})$/.exec(request.reference)?.[1];
    const modelKey = digest === undefined ? undefined : `sha256/${digest.slice('sha256:'.length)}`;
    const path = modelKey === undefined ? undefined : join(this.root, 'models', modelKey);
    const present = path !== undefined && (await stat(path).then((s) => s.isDirectory(), () => false));
    if (!present || digest === undefined || modelKey === undefined || request.include.length + request.exclude.length > 0) {
      throw new DriverError('MANIFEST_NOT_FOUND', `model ${request.reference} is not placed in this test's cache`);
    }
    return { path: path!, digest, modelKey, sizeBytes: 0 };
  }
}
