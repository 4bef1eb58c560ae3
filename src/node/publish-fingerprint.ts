import { createHash } from 'node:crypto';
import { sortedEntries } from '../csi/sorted-entries.js';
import type { NodePublishVolumeRequest } from '../csi/types.js';

/**
 * A hash of everything that makes two NodePublishVolume calls "the same" for the idempotency
 * rule of the spec (same target + same arguments → OK, different → ALREADY_EXISTS). Secrets
 * are left out: a rotated pull secret does not change what is mounted.
 */
export function publishFingerprint(request: NodePublishVolumeRequest): string {
  const capability = request.volume_capability ?? {};
  const canonical = {
    volumeId: request.volume_id,
    readonly: request.readonly,
    accessMode: capability.access_mode?.mode ?? 'UNKNOWN',
    accessType: capability.block ? 'block' : 'mount',
    fsType: capability.mount?.fs_type ?? '',
    mountFlags: [...(capability.mount?.mount_flags ?? [])].sort(),
    context: sortedEntries(request.volume_context ?? {}),
  };
  return createHash('sha256').update(JSON.stringify(canonical)).digest('hex');
}
