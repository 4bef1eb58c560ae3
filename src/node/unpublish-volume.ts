import { lstat, rmdir, unlink } from 'node:fs/promises';
import { resolve } from 'node:path';
import type { CallContext } from '../csi/call-wrapper.js';
import type { NodeUnpublishVolumeRequest } from '../csi/types.js';
import { requireField } from '../csi/volume-capability.js';
import { DriverError } from '../errors/driver-error.js';
import type { NodeDeps } from './node-deps.js';

/** Stacked mounts left by some other tool are peeled off one by one, up to this many. */
const MAX_UNMOUNTS = 8;

/**
 * NodeUnpublishVolume (spec "NodeUnpublishVolume"): unmount and remove the target. A target
 * that is not mounted or does not exist is success (the call is idempotent), and the target
 * directory is removed either way.
 */
export async function unpublishVolume(deps: NodeDeps, request: NodeUnpublishVolumeRequest, context: CallContext): Promise<object> {
  requireField(request.volume_id, 'volume_id');
  requireField(request.target_path, 'target_path');
  const target = resolve(request.target_path);

  return deps.locks.run(target, async () => {
    const record = deps.records.get(target);
    if (record !== undefined && record.volumeId !== request.volume_id) {
      // Never unmount another volume's target on a mismatched request.
      throw new DriverError(
        'VOLUME_NOT_FOUND',
        `volume ${request.volume_id} is not published at ${target} (volume ${record.volumeId} is); nothing was unmounted`,
      );
    }
    for (let i = 0; i < MAX_UNMOUNTS && (await deps.mounter.isMountPoint(target)); i++) {
      await deps.mounter.unmount(target);
    }
    if (await deps.mounter.isMountPoint(target)) {
      throw new DriverError('MOUNT_FAILED', `${target} is still a mount point after ${MAX_UNMOUNTS} unmounts`);
    }
    await removeTarget(target);
    if (record !== undefined) await deps.records.remove(record);
    deps.metrics.mountedVolumes.set(deps.records.list().length);
    context.log.info({ target }, 'volume unpublished');
    return {};
  });
}

/** Remove the (now unmounted) target: an empty directory or the file a file subPath was mounted on. */
async function removeTarget(target: string): Promise<void> {
  const info = await lstat(target).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return undefined;
    throw err;
  });
  if (info === undefined) return;
  try {
    if (info.isDirectory()) await rmdir(target);
    else await unlink(target);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return;
    throw new DriverError('INTERNAL', `cannot remove target ${target} after unmounting it: ${code ?? (err as Error).message}`, { cause: err });
  }
}
