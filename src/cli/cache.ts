import { hostname } from 'node:os';
import { formatBytes } from '../config/quantity.js';
import { parseCommandLine } from '../config/settings.js';
import { DriverError } from '../errors/driver-error.js';
import { createLogger, type Logger } from '../log/logger.js';
import { Metrics } from '../metrics/metrics.js';
import { readMountInfo } from '../mount/mountinfo.js';
import { readInUseModelKeys } from '../node/volume-records.js';
import { CacheBudget } from '../model-source/cache-budget.js';
import { openCache } from '../store/open-cache.js';
import type { ModelStore } from '../store/model-store.js';
import { runCommand, usageError } from '../artifacts/command-result.js';
import { formatTable } from './table.js';

const USAGE = 'usage: model-csi cache ls|gc [--root DIR] [--config FILE] [--min-idle-seconds N] [--json]';

/**
 * A model used this recently may be in the middle of a publish in the node plugin (touched,
 * not yet mounted and recorded), which this process cannot see: gc leaves it alone.
 */
const DEFAULT_MIN_IDLE_SECONDS = 600;

/**
 * `model-csi cache ls`: cached models (key, size, last use). `model-csi cache gc`: when the
 * config sets a cacheBudget, evict least-recently-used models that no volume on this node
 * mounts (the node's volume records checked against the mount table) and that were idle for
 * `--min-idle-seconds`, until the cache fits; then remove blobs and shared files no model
 * uses, and stale partial downloads / temp dirs.
 */
export async function cacheCommand(argv: string[]): Promise<number> {
  return runCommand('cache', async () => {
    const { settings, positionals, extra } = parseCommandLine(argv, process.env, hostname(), {
      json: { type: 'boolean' },
      'min-idle-seconds': { type: 'string' },
    });
    const [action, ...rest] = positionals;
    if (rest.length > 0 || (action !== 'ls' && action !== 'gc')) throw usageError(USAGE);
    const logger = createLogger(settings.config.logLevel);
    const { models } = await openCache(settings.root);
    const json = extra['json'] === true || process.stdout.isTTY !== true;
    if (action === 'gc') {
      const minIdleSeconds = parseMinIdle(extra['min-idle-seconds']);
      // The walks that reconcile the cache's running account (before, and once changed); the
      // stamp makes the node plugin's account reconcile too, as this process removed files
      // under it.
      const before = await models.reconcileUsage();
      const budget = settings.config.cacheBudget;
      const evicted = budget === undefined ? [] : await evictToBudget(settings.root, models, budget, minIdleSeconds, logger);
      const removed = await models.collectGarbage();
      const usedBytes = await models.reconcileUsage();
      await models.stampUsageChanged();
      const freedBytes = Math.max(0, before - usedBytes);
      const overBudget = budget !== undefined && usedBytes > budget;
      const summary = { evicted, removed, freedBytes, usedBytes, ...(budget === undefined ? {} : { budgetBytes: budget }), overBudget };
      process.stdout.write(
        json
          ? `${JSON.stringify(summary)}\n`
          : `evicted ${evicted.length} models; removed ${removed.blobs} blobs, ${removed.files} shared files, ${removed.ingest} partial downloads, ${removed.tmp} temp dirs; freed ${formatBytes(freedBytes)}` +
              (overBudget ? `; still ${formatBytes(usedBytes)} over the budget of ${formatBytes(budget)}: the rest is in use or used in the last ${minIdleSeconds} s` : '') +
              '\n',
      );
      await new Promise<void>((resolve) => logger.flush(() => resolve()));
      return 0;
    }
    const list = (await models.list()).sort((a, b) => String(b.lastUsed).localeCompare(String(a.lastUsed)));
    if (json) {
      for (const model of list) process.stdout.write(`${JSON.stringify(model)}\n`);
      return 0;
    }
    const rows = list.map((model) => [model.key, formatBytes(model.sizeBytes), model.lastUsed, model.reference || '-']);
    const header = ['KEY', 'SIZE', 'LAST USED', 'REFERENCE'];
    for (const line of formatTable(header, rows)) process.stdout.write(`${line}\n`);
    return 0;
  });
}

function parseMinIdle(value: string | boolean | undefined): number {
  if (value === undefined) return DEFAULT_MIN_IDLE_SECONDS;
  const seconds = typeof value === 'string' && /^\d+$/.test(value) ? Number(value) : NaN;
  if (!Number.isSafeInteger(seconds)) throw usageError(`--min-idle-seconds must be a whole number of seconds, got "${String(value)}"`);
  return seconds;
}

/**
 * The node's eviction policy (CacheBudget, least recently used first), run from outside the
 * node plugin: models mounted by a volume, or used within `minIdleSeconds`, are kept. Each is
 * checked again right before removal, as the node plugin may have mounted it meanwhile.
 * Returns the evicted keys.
 */
async function evictToBudget(root: string, models: ModelStore, budget: number, minIdleSeconds: number, logger: Logger): Promise<string[]> {
  const keep = async (): Promise<Set<string>> => {
    const inUse = await readInUseModelKeys(root, await readMountInfo(), logger);
    const idleSince = Date.now() - minIdleSeconds * 1000;
    for (const model of await models.list()) if (new Date(model.lastUsed).getTime() > idleSince) inUse.add(model.key);
    return inUse;
  };
  let kept = await keep();
  const evicted: string[] = [];
  const store = {
    list: () => models.list(),
    usedBytes: () => models.usedBytes(),
    dropUnreferencedBlobs: () => models.dropUnreferencedBlobs(),
    remove: async (key: string) => {
      kept = await keep();
      if (kept.has(key)) return;
      await models.remove(key);
      evicted.push(key);
    },
  };
  const cacheBudget = new CacheBudget({ budget, store, pinned: () => kept, metrics: new Metrics(), logger });
  try {
    await cacheBudget.reserve('cache gc', 0);
  } catch (err) {
    // Over budget with nothing evictable left: reported by the caller, not an error.
    if (!(err instanceof DriverError) || err.code !== 'NO_SPACE') throw err;
  }
  return evicted;
}
