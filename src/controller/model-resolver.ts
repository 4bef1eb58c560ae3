import { DriverError } from '../errors/driver-error.js';
import { pinnedDigest } from '../node/pinned-reference.js';

/** A reference resolved once, in the controller, so every node of a PV mounts the same bytes. */
export interface ResolvedModel {
  /** `host/repo@sha256:…` */
  pinnedReference: string;
  /** `sha256:…` */
  digest: string;
  /** Bytes of the model; 0 when unknown. */
  sizeBytes: number;
}

/** The controller's seam to the registry (src/pulls/registry-model-resolver.ts fits it). */
export interface ModelResolver {
  resolve(reference: string, dockerConfigJson?: string): Promise<ResolvedModel>;
}

/**
 * Accepts only references already pinned by digest, without asking any registry; the size is
 * unknown (0). The registry resolver replaces it where tags must be resolved.
 */
export class PinnedOnlyResolver implements ModelResolver {
  async resolve(reference: string): Promise<ResolvedModel> {
    const digest = pinnedDigest(reference);
    if (digest === undefined) {
      throw new DriverError(
        'INVALID_REFERENCE',
        `reference ${reference} is not pinned by digest; this controller resolves only host/repo@sha256:<hex> references`,
      );
    }
    const pinnedReference = `${reference.slice(0, reference.indexOf('@')).replace(/:[^/:]+$/, '')}@${digest}`;
    return { pinnedReference, digest, sizeBytes: 0 };
  }
}
