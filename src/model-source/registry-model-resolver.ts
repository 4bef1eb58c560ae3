import { formatReference, parseReference } from '../registry/reference.js';
import type { RegistryClient } from '../registry/registry-client.js';

/**
 * CreateVolume's resolver: a tag is resolved to a digest once, in the controller, so every
 * node that mounts the PV mounts the same bytes however the tag moves later.
 */
export class RegistryModelResolver {
  constructor(private readonly client: RegistryClient) {}

  async resolve(reference: string, dockerConfigJson?: string): Promise<{ pinnedReference: string; digest: string; sizeBytes: number }> {
    const parsed = parseReference(reference);
    const resolved = await this.client.resolve(parsed, { auth: dockerConfigJson === undefined ? {} : { dockerConfigJson } });
    const sizeBytes = resolved.manifest.layers.reduce((sum, layer) => sum + layer.size, 0);
    const pinnedReference = formatReference({ registry: parsed.registry, repository: parsed.repository, digest: resolved.rootDigest });
    return { pinnedReference, digest: resolved.rootDigest, sizeBytes };
  }
}
