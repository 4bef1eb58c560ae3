import { createHash } from 'node:crypto';
import { constants as fsConstants, createReadStream } from 'node:fs';
import { link, lstat, open, symlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import tar from 'tar-stream';
import { DriverError, isDriverError } from '../../errors/driver-error.js';
import { cacheFsError } from '../../errors/fs-error.js';
import type { LayerFormat } from '../media-types.js';
import type { PathFilter } from '../selection.js';
import { decompressorFor } from './decompress.js';
import { cachedFileMode, type FileSharer } from './file-mode.js';
import { checkEntryPath, checkSymlinkTarget, makeParents, unsafeEntry, unsafePath } from './safe-path.js';

export interface TarLimits {
  /** Entries per layer. */
  maxEntries: number;
  /** Unpacked bytes per layer. */
  maxBytes: number;
}

/** Default caps: plenty for real models, a stop for decompression bombs and inode floods. */
export function defaultTarLimits(compressedSize: number, format: LayerFormat): TarLimits {
  const compressed = format === 'tar+gzip' || format === 'tar+zstd';
  return { maxEntries: 200_000, maxBytes: compressed ? Math.max(1 << 30, compressedSize * 100) : compressedSize };
}

export interface ExtractOptions {
  /** Verified blob holding the layer. */
  blobPath: string;
  format: LayerFormat;
  /** The model's temp dir: the only place anything is written. */
  root: string;
  filter: PathFilter;
  /** "layer sha256:… of REF", for messages. */
  where: string;
  limits: TarLimits;
  /** Docker/OCI rootfs layer: whiteout entries are refused (see below). */
  imageLayer: boolean;
  share?: FileSharer;
}

export interface ExtractResult {
  files: number;
  bytes: number;
}

/**
 * Unpack one tar layer under `root`, writing only selected entries, never following a
 * symlink the archive made:
 * - names are normalized and refused when absolute or containing `..` (UNSAFE_PATH);
 * - each parent is created or must be a real directory, never a symlink (UNSAFE_PATH);
 * - files are opened O_CREAT|O_EXCL|O_NOFOLLOW: an existing name, from this layer or another
 *   one, is a duplicate path (UNSAFE_ENTRY) — two layers writing one file would make the
 *   model depend on layer order. Repeated directories are fine;
 * - symlinks must be relative and stay inside (lexically here, physically after assembly);
 * - hardlinks may only point at a regular file written earlier by the same layer;
 * - devices, fifos, setuid/setgid files, image whiteouts (`.wh.*`, which delete files of
 *   lower layers; such images must be squashed) are UNSAFE_ENTRY.
 * Each file is hashed while written and offered for sharing across models.
 */
export async function extractTarLayer(options: ExtractOptions): Promise<ExtractResult> {
  const { root, where, limits, filter } = options;
  const extract = tar.extract();
  const stages: Array<NodeJS.ReadableStream | NodeJS.WritableStream> = [createReadStream(options.blobPath, { highWaterMark: 1 << 20 })];
  const decompressor = decompressorFor(options.format);
  if (decompressor) stages.push(decompressor);
  stages.push(extract);
  const feeding = (pipeline as (...streams: unknown[]) => Promise<void>)(...stages).then(
    () => undefined,
    (err: unknown) => err,
  );

  const result: ExtractResult = { files: 0, bytes: 0 };
  const filesOfLayer = new Set<string>();
  let entries = 0;
  try {
    for await (const entry of extract) {
      const header = entry.header;
      if (++entries > limits.maxEntries) throw unsafeEntry(header.name, where, `is past the cap of ${limits.maxEntries} entries per layer`);
      const path = checkEntryPath(header.name, where);
      const base = path.slice(path.lastIndexOf('/') + 1);
      if (options.imageLayer && base.startsWith('.wh.')) throw unsafeEntry(path, where, 'is an image whiteout (deletes files of a lower layer); squash the image into one layer');
      if ((header.mode ?? 0) & 0o6000) throw unsafeEntry(path, where, 'has the setuid or setgid bit');

      switch (header.type) {
        case 'directory':
          if (filter(path)) {
            await makeParents(root, `${path}/.`, where);
          }
          break;
        case 'file':
        case 'contiguous-file': {
          if (!filter(path)) break;
          if (result.bytes + (header.size ?? 0) > limits.maxBytes) throw unsafeEntry(path, where, `makes the layer larger than the cap of ${limits.maxBytes} unpacked bytes`);
          await makeParents(root, path, where);
          result.bytes += await writeEntry(entry as unknown as Readable, join(root, path), path, where, cachedFileMode(header.mode ?? 0o644), header.mtime, options.share);
          filesOfLayer.add(path);
          result.files++;
          break;
        }
        case 'symlink': {
          if (!filter(path)) break;
          checkSymlinkTarget(path, header.linkname ?? '', where);
          await makeParents(root, path, where);
          await symlink(header.linkname!, join(root, path)).catch((err: NodeJS.ErrnoException) => {
            throw err.code === 'EEXIST' ? unsafeEntry(path, where, 'is a duplicate path') : err;
          });
          result.files++;
          break;
        }
        case 'link': {
          if (!filter(path)) break;
          const target = checkEntryPath(header.linkname ?? '', where);
          if (!filesOfLayer.has(target)) throw unsafePath(path, where, `is a hardlink to "${header.linkname}", which is not a file written earlier by this layer`);
          await makeParents(root, path, where);
          await link(join(root, target), join(root, path)).catch((err: NodeJS.ErrnoException) => {
            throw err.code === 'EEXIST' ? unsafeEntry(path, where, 'is a duplicate path') : err;
          });
          filesOfLayer.add(path);
          result.files++;
          break;
        }
        default:
          throw unsafeEntry(path, where, `is a ${header.type ?? 'special'} entry (devices, fifos and the like are never written)`);
      }
      entry.resume();
    }
  } catch (err) {
    extract.destroy();
    await feeding;
    throw isDriverError(err) ? err : layerUnreadable(where, err);
  }
  const failure = await feeding;
  if (failure) throw layerUnreadable(where, failure);
  return result;
}

async function writeEntry(entry: Readable, target: string, path: string, where: string, mode: number, mtime: Date | undefined, share?: FileSharer): Promise<number> {
  let handle;
  try {
    handle = await open(target, fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL | fsConstants.O_NOFOLLOW, 0o600);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST' || (err as NodeJS.ErrnoException).code === 'ELOOP') {
      const existing = await lstat(target).catch(() => undefined);
      if (existing?.isDirectory()) throw new DriverError('UNSAFE_ENTRY', `entry "${path}" in ${where} is a file where the archive has a directory; the artifact is refused`);
      throw unsafeEntry(path, where, 'is a duplicate path');
    }
    throw err;
  }
  const hash = createHash('sha256');
  let position = 0;
  try {
    for await (const chunk of entry) {
      const buffer = chunk as Buffer;
      let offset = 0;
      while (offset < buffer.length) {
        const { bytesWritten } = await handle.write(buffer, offset, buffer.length - offset, position + offset);
        offset += bytesWritten;
      }
      hash.update(buffer);
      position += buffer.length;
    }
    await handle.chmod(mode);
    if (mtime) await handle.utimes(mtime, mtime);
    await handle.sync();
  } finally {
    await handle.close();
  }
  if (share) await share(target, hash.digest('hex'), mode);
  return position;
}

/**
 * A failure while unpacking: the archive's fault (UNSUPPORTED_MEDIA_TYPE) unless it is the
 * node's filesystem failing under a read of the blob or a write of an entry (full, read-only,
 * refused, EIO): then it says so (fs-error.ts), since pushing the artifact again cannot help.
 */
function layerUnreadable(where: string, err: unknown): DriverError {
  const local = cacheFsError(err, `unpacking ${where}`);
  if (local) return local;
  return new DriverError('UNSUPPORTED_MEDIA_TYPE', `${where} is not a readable tar archive of its media type: ${(err as Error).message}`, { cause: err });
}
