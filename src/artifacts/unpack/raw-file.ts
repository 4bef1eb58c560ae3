import { lutimes } from 'node:fs/promises';
import { join } from 'node:path';
import { classifyFsError } from '../../errors/fs-error.js';
import type { ModelStore } from '../../store/model-store.js';
import type { FileMetadata } from '../artifact.js';
import { cachedFileMode } from './file-mode.js';
import { makeParents, unsafeEntry } from './safe-path.js';

/**
 * A raw layer is one file (ModelPack `.raw`, ORAS title): put the verified blob at its path,
 * as a hardlink of the blob when the mode allows (no copy, no second disk footprint), else a
 * copy. Mode and mtime come from `org.cncf.model.file.metadata+json` when present; since a
 * hardlink shares the blob's inode, the mtime set here is the blob's too.
 */
export async function placeRawLayer(options: {
  blobPath: string;
  /** Checked model-relative path (plan.ts). */
  path: string;
  root: string;
  where: string;
  metadata?: FileMetadata;
  models: ModelStore;
}): Promise<void> {
  const { root, path, where, metadata } = options;
  if (metadata?.mode !== undefined && metadata.mode & 0o6000) throw unsafeEntry(path, where, 'has the setuid or setgid bit in its file metadata');
  const dest = join(root, path);
  const mode = cachedFileMode(metadata?.mode ?? 0o644);
  try {
    await makeParents(root, path, where);
    await options.models.linkBlob(options.blobPath, dest, mode);
    if (metadata?.mtime) await lutimes(dest, metadata.mtime, metadata.mtime);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') throw unsafeEntry(path, where, 'is a duplicate path (another layer or entry already wrote it)');
    throw classifyFsError(err, `placing ${where} at "${path}"`);
  }
}
