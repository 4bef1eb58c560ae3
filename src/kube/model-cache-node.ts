import type { Logger } from '../log/logger.js';
import type { ModelCacheApi } from './model-cache-api.js';
import type { ModelCache, NodeLabels } from './model-cache.js';
import type { ModelCacheWarmer } from './model-cache-warmer.js';

/** Node labels are read again this often, so a relabelled node gains or drops its caches. */
const RELABEL_MS = 60_000;

/**
 * The node plugin's ModelCache loop: watch every ModelCache, read this node's labels, and let
 * the warmer match its warms to what selects the node. Nothing is synced before the first
 * label read: an empty label set would drop (and un-report) every labelled cache at start-up.
 */
export function startModelCacheWarming(options: { api: ModelCacheApi; warmer: ModelCacheWarmer; nodeName: string; logger: Logger }): { stop(): void } {
  const { api, warmer, nodeName, logger } = options;
  let caches: ModelCache[] | undefined;
  let node: NodeLabels | undefined;
  let labelFailureLogged = false;
  const sync = () => {
    if (caches && node) warmer.sync(caches, node);
  };
  const readLabels = async () => {
    try {
      node = await api.nodeLabels(nodeName);
      labelFailureLogged = false;
    } catch (err) {
      // No Node object of that name (a plugin started by hand), or no access: selectors with
      // labels cannot match it; an empty selector still does.
      node ??= { name: nodeName, labels: {} };
      if (!labelFailureLogged) logger.warn({ node: nodeName, err: (err as Error).message.split('\n')[0] }, 'cannot read this node\'s labels; only ModelCaches without a nodeSelector apply');
      labelFailureLogged = true;
    }
    sync();
  };
  void readLabels();
  const relabel = setInterval(() => void readLabels(), RELABEL_MS);
  relabel.unref();
  const watch = api.watch((latest) => {
    caches = latest;
    sync();
  });
  logger.info({ node: nodeName }, 'watching ModelCaches');
  return {
    stop: () => {
      clearInterval(relabel);
      watch.stop();
      warmer.stop();
    },
  };
}
