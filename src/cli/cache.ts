import { hostname } from 'node:os';
import { formatBytes } from '../config/quantity.js';
import { parseCommandLine } from '../config/settings.js';
import { openCache } from '../store/open-cache.js';
import { runCommand, usageError } from '../puller/command-result.js';

const USAGE = 'usage: model-csi cache ls|gc [--root DIR] [--json]';

/**
 * `model-csi cache ls`: cached models (key, size, last use). `model-csi cache gc`: remove
 * blobs and shared files no model uses, and stale partial downloads / temp dirs. Removing
 * whole models is eviction's job (the cache budget), not this command's.
 */
export async function cacheCommand(argv: string[]): Promise<number> {
  return runCommand('cache', async () => {
    const { settings, positionals, extra } = parseCommandLine(argv, process.env, hostname(), { json: { type: 'boolean' } });
    const [action, ...rest] = positionals;
    if (rest.length > 0 || (action !== 'ls' && action !== 'gc')) throw usageError(USAGE);
    const { models } = await openCache(settings.root);
    const json = extra['json'] === true || process.stdout.isTTY !== true;
    if (action === 'gc') {
      const before = await models.usedBytes();
      const removed = await models.gcBlobs();
      const freedBytes = Math.max(0, before - (await models.usedBytes()));
      process.stdout.write(json ? `${JSON.stringify({ removed, freedBytes })}\n` : `removed ${removed.blobs} blobs, ${removed.files} shared files, ${removed.ingest} partial downloads, ${removed.tmp} temp dirs; freed ${formatBytes(freedBytes)}\n`);
      return 0;
    }
    const list = (await models.list()).sort((a, b) => String(b.lastUsed).localeCompare(String(a.lastUsed)));
    if (json) {
      for (const model of list) process.stdout.write(`${JSON.stringify(model)}\n`);
      return 0;
    }
    const rows = list.map((model) => [model.key, formatBytes(model.sizeBytes), model.lastUsed, model.reference || '-']);
    const header = ['KEY', 'SIZE', 'LAST USED', 'REFERENCE'];
    const widths = header.map((title, column) => Math.max(title.length, ...rows.map((row) => row[column]!.length)));
    for (const row of [header, ...rows]) process.stdout.write(`${row.map((cell, column) => cell.padEnd(widths[column]!)).join('  ').trimEnd()}\n`);
    return 0;
  });
}
