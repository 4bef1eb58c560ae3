import { hostname } from 'node:os';
import { formatBytes } from '../config/quantity.js';
import { parseCommandLine } from '../config/settings.js';
import { createLogger } from '../log/logger.js';
import { inspectArtifact } from '../puller/model-puller.js';
import { parseReference } from '../registry/reference.js';
import { RegistryClient } from '../registry/registry-client.js';
import { runCommand, usageError } from '../puller/command-result.js';
import { formatTable } from './table.js';

const USAGE = 'usage: model-csi inspect REFERENCE [--json] [--config FILE]';

/** `model-csi inspect REFERENCE`: what an artifact holds, without pulling it. */
export async function inspectCommand(argv: string[]): Promise<number> {
  return runCommand('inspect', async () => {
    const { settings, positionals, extra } = parseCommandLine(argv, process.env, hostname(), { json: { type: 'boolean' } });
    if (positionals.length !== 1) throw usageError(USAGE);
    const reference = parseReference(positionals[0]!);
    const logger = createLogger(settings.config.logLevel === 'info' ? 'warn' : settings.config.logLevel);
    const client = new RegistryClient({ config: settings.config, logger });
    try {
      // Registry only: inspect neither opens nor creates the cache root.
      const inspection = await inspectArtifact(client, reference);
      if (extra['json'] === true || process.stdout.isTTY !== true) {
        process.stdout.write(`${JSON.stringify(inspection, null, extra['json'] === true ? 2 : 0)}\n`);
        return 0;
      }
      const lines = [
        `reference   ${inspection.reference}`,
        `digest      ${inspection.digest}${inspection.manifestDigest !== inspection.digest ? ` (manifest ${inspection.manifestDigest})` : ''}`,
        `kind        ${inspection.kind}`,
        `media type  ${inspection.mediaType}${inspection.artifactType ? ` (artifact ${inspection.artifactType})` : ''}`,
        `config      ${inspection.configMediaType ?? '-'}`,
        `size        ${formatBytes(inspection.totalBytes)} in ${inspection.layers.length} layers`,
        '',
      ];
      const rows = inspection.layers.map((layer) => [layer.path ?? '(archive)', layer.format, formatBytes(layer.size), layer.mediaType, layer.digest.slice(0, 19)]);
      const header = ['PATH', 'FORMAT', 'SIZE', 'MEDIA TYPE', 'DIGEST'];
      lines.push(...formatTable(header, rows));
      process.stdout.write(`${lines.join('\n')}\n`);
      return 0;
    } finally {
      await client.close();
    }
  });
}
