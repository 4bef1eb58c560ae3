import type { Logger } from '../log/logger.js';
import type { ModelCacheApi } from './model-cache-api.js';
import { summarize, summaryCurrent, type ModelCache } from './model-cache.js';

/** Nodes come and go without touching any ModelCache: the summary is checked this often too. */
const RESYNC_MS = 30_000;
/** Changes arriving together (every node reporting at once) make one pass. */
const DEBOUNCE_MS = 500;

/**
 * The controller's part of ModelCache: keep `status.ready` (`2/3`), `readyNodes`,
 * `selectedNodes` and `digest` true. Selected nodes are those whose CSINode lists the driver
 * (kubelet registered the node plugin there) and whose labels match the cache's selector.
 * One writer, its own field manager: the nodes' entries are never touched.
 */
export function startModelCacheSummaries(options: { api: ModelCacheApi; driverName: string; logger: Logger }): { stop(): void } {
  const { api, driverName, logger } = options;
  let caches: ModelCache[] = [];
  let timer: NodeJS.Timeout | undefined;
  let running = false;
  let again = false;
  let lastError = '';
  const pass = async () => {
    if (running) {
      again = true;
      return;
    }
    running = true;
    try {
      const nodes = await api.pluginNodes(driverName);
      for (const cache of caches) {
        const summary = summarize(cache, nodes);
        if (!summaryCurrent(cache, summary)) await api.applySummary(cache.metadata, summary);
      }
      lastError = '';
    } catch (err) {
      const message = (err as Error).message.split('\n')[0] ?? '';
      if (message !== lastError) logger.warn({ err: message }, 'cannot update ModelCache summaries');
      lastError = message;
    } finally {
      running = false;
      if (again) {
        again = false;
        schedule();
      }
    }
  };
  const schedule = () => {
    clearTimeout(timer);
    timer = setTimeout(() => void pass(), DEBOUNCE_MS);
  };
  const resync = setInterval(schedule, RESYNC_MS);
  resync.unref();
  const watch = api.watch((latest) => {
    caches = latest;
    schedule();
  });
  logger.info('keeping ModelCache summaries');
  return {
    stop: () => {
      clearTimeout(timer);
      clearInterval(resync);
      watch.stop();
    },
  };
}
