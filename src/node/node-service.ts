import type { CsiHandlers } from '../csi/call-wrapper.js';
import type { Logger } from '../log/logger.js';
import type { Metrics } from '../metrics/metrics.js';
import type { Mounter } from '../mount/mounter.js';
import type { ModelSource } from './model-source.js';
import type { NodeDeps } from './node-deps.js';
import { publishVolume } from './publish-volume.js';
import { unpublishVolume } from './unpublish-volume.js';
import { KeyedLocks } from './volume-locks.js';
import { VolumeRecords } from './volume-records.js';
import { volumeStats } from './volume-stats.js';
import { VolumeUsageCache } from './volume-usage-cache.js';

export interface NodeServiceOptions {
  nodeId: string;
  /** Cache root: volume records live under `<root>/state/volumes`. */
  root: string;
  mounter: Mounter;
  modelSource: ModelSource;
  metrics: Metrics;
  logger: Logger;
  publishWaitMs: number;
}

/**
 * CSI Node service. Built with `await NodeService.create({...})`, which recovers published
 * volumes from their records and the mount table before any call is served.
 */
export class NodeService {
  private constructor(private readonly deps: NodeDeps) {}

  static async create(options: NodeServiceOptions): Promise<NodeService> {
    const records = await VolumeRecords.load(options.root, await options.mounter.listMounts(), options.logger);
    options.metrics.mountedVolumes.set(records.list().length);
    if (records.list().length > 0) options.logger.info({ volumes: records.list().length }, 'recovered published volumes');
    return new NodeService({
      nodeId: options.nodeId,
      mounter: options.mounter,
      modelSource: options.modelSource,
      records,
      locks: new KeyedLocks(),
      usage: new VolumeUsageCache(),
      metrics: options.metrics,
      publishWaitMs: options.publishWaitMs,
    });
  }

  /** Model keys with a live publish on this node (eviction must keep them). */
  inUseModelKeys(): Set<string> {
    return this.deps.records.inUseModelKeys();
  }

  handlers(): CsiHandlers {
    const deps = this.deps;
    return {
      NodePublishVolume: (request, context) => publishVolume(deps, request, context),
      NodeUnpublishVolume: (request, context) => unpublishVolume(deps, request, context),
      NodeGetVolumeStats: (request, context) => volumeStats(deps, request, context),
      async NodeGetInfo() {
        // No volume limit: a model mount is a bind mount, not an attached device.
        return { node_id: deps.nodeId, max_volumes_per_node: 0 };
      },
      async NodeGetCapabilities() {
        // No STAGE_UNSTAGE_VOLUME: there is nothing to stage per node, the cache is node-wide.
        return {
          capabilities: [{ rpc: { type: 'GET_VOLUME_STATS' } }, { rpc: { type: 'VOLUME_CONDITION' } }],
        };
      },
    };
  }
}
