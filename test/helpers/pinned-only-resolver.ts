import { DriverError } from '../../src/errors/driver-error.js';
import type { ModelResolver, ResolvedModel } from '../../src/controller/model-resolver.js';

/**
 * A ModelResolver for unit tests of the controller: accepts references already pinned by
 * digest, without a registry; the size is unknown (0). The product's resolver is
 * src/model-source/registry-model-resolver.ts (covered against a real registry in
 * test/integration/controller).
 */
export class PinnedOnlyResolver implements ModelResolver {
  async resolve(reference: string): Promise<ResolvedModel> {
    const digest = /^[^@\s]+@(sha256:[0-9a-f]{64})$/.exec(reference)?.[1];
    if (digest === undefined) throw new DriverError('INVALID_REFERENCE', `reference ${reference} is not pinned by digest`);
    const pinnedReference = `${reference.slice(0, reference.indexOf('@')).replace(/:[^/:]+$/, '')}@${digest}`;
    return { pinnedReference, digest, sizeBytes: 0 };
  }
}
