import { createHash } from 'node:crypto';

/**
 * Volume ids are self-describing, so the controller keeps no state: `model-<16 hex of
 * sha256(name)>-<64 hex of the manifest digest>` (87 bytes, within the 128 the CSI spec's
 * size limits allow). The same claim name resolving to the same digest always gets the same id.
 */
const VOLUME_ID = /^model-([0-9a-f]{16})-([0-9a-f]{64})$/;

export function volumeIdFor(name: string, digest: string): string {
  const nameHash = createHash('sha256').update(name).digest('hex').slice(0, 16);
  return `model-${nameHash}-${digest.replace(/^sha256:/, '')}`;
}

/** The digest an id of ours names, or undefined for an id this driver never issued. */
export function parseVolumeId(volumeId: string): { digest: string } | undefined {
  const match = VOLUME_ID.exec(volumeId);
  return match ? { digest: `sha256:${match[2]}` } : undefined;
}
