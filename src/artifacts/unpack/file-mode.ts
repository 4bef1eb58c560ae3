/**
 * Modes of cached files. Every file in the cache is read-only and readable by all (pods run
 * as any uid); only the exec bits of the archive survive. setuid/setgid are refused before
 * this point. Hardlinks share one inode's mode, so keeping every cached file read-only is
 * what makes sharing across models and with blobs safe.
 */
export function cachedFileMode(archiveMode: number): number {
  return 0o444 | (archiveMode & 0o111 ? 0o111 : 0);
}

/** Replace a just-written file with a link to an identical one elsewhere in the store. */
export type FileSharer = (path: string, sha256Hex: string, mode: number) => Promise<unknown>;
