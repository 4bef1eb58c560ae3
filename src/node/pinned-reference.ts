/**
 * `host/repo[:tag]@sha256:<hex>` → `sha256:<hex>`; undefined when the reference is not pinned
 * by a sha256 digest. Enough for the sources that serve only pinned references; full
 * reference parsing lives with the registry client.
 */
export function pinnedDigest(reference: string): string | undefined {
  const match = /^[^@\s]+@(sha256:[0-9a-f]{64})$/.exec(reference);
  return match?.[1];
}
