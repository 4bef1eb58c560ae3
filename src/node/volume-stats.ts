import { resolve } from 'node:path';
import type { CallContext } from '../csi/call-wrapper.js';
import type { NodeGetVolumeStatsRequest, NodeGetVolumeStatsResponse } from '../csi/types.js';
import { requireField } from '../csi/volume-capability.js';
import { DriverError } from '../errors/driver-error.js';
import type { NodeDeps } from './node-deps.js';

/**
 * NodeGetVolumeStats (spec "NodeGetVolumeStats"): a read-only model is full by definition,
 * so total = used and available = 0. The condition turns abnormal when the target is no
 * longer a mount point (someone unmounted it under the pod).
 */
export async function volumeStats(deps: NodeDeps, request: NodeGetVolumeStatsRequest, _context: CallContext): Promise<NodeGetVolumeStatsResponse> {
  requireField(request.volume_id, 'volume_id');
  requireField(request.volume_path, 'volume_path');
  const target = resolve(request.volume_path);
  const record = deps.records.get(target);
  if (record === undefined || record.volumeId !== request.volume_id) {
    throw new DriverError('VOLUME_NOT_FOUND', `volume ${request.volume_id} is not published at ${request.volume_path} on this node`);
  }
  const { bytes, inodes } = await deps.usage.usage(record.sourcePath);
  const mounted = await deps.mounter.isMountPoint(target);
  return {
    usage: [
      { unit: 'BYTES', used: bytes, total: bytes, available: 0 },
      { unit: 'INODES', used: inodes, total: inodes, available: 0 },
    ],
    volume_condition: mounted
      ? { abnormal: false, message: 'read-only model mount in place' }
      : { abnormal: true, message: `${target} is no longer a mount point; restart the pod to publish the volume again` },
  };
}
