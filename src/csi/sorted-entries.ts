/**
 * A CSI string map (StorageClass parameters, volume_context) as `[key, value]` pairs in code
 * unit order, so a hash of it does not depend on the order the sender wrote the keys. Both
 * the controller's parameter memo and the node's publish fingerprint hash this: the order is
 * part of fingerprints already in volume records on disk, so it never changes.
 */
export function sortedEntries(map: Readonly<Record<string, string>>): Array<[string, string]> {
  return Object.entries(map).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}
