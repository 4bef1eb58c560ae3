import type { Metrics } from '../metrics/metrics.js';
import type { Mounter } from '../mount/mounter.js';
import type { ModelSource } from './model-source.js';
import type { KeyedLocks } from './volume-locks.js';
import type { VolumeRecords } from './volume-records.js';
import type { VolumeUsageCache } from './volume-usage-cache.js';

/** What the Node service handlers share. Built once by NodeService. */
export interface NodeDeps {
  nodeId: string;
  mounter: Mounter;
  modelSource: ModelSource;
  records: VolumeRecords;
  locks: KeyedLocks;
  usage: VolumeUsageCache;
  metrics: Metrics;
  /** Upper bound for waiting on a pull inside one NodePublishVolume (config publishWaitSeconds). */
  publishWaitMs: number;
}
