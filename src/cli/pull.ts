import { hostname } from 'node:os';
import { parseCommandLine } from '../config/settings.js';
import { createLogger } from '../log/logger.js';
import { Metrics } from '../metrics/metrics.js';
import { ModelPuller } from '../artifacts/model-puller.js';
import { formatReference, parseReference } from '../registry/reference.js';
import { RegistryClient } from '../registry/registry-client.js';
import { openCache } from '../store/open-cache.js';
import { runCommand, splitGlobs, usageError } from '../artifacts/command-result.js';
import { ProgressLine } from '../artifacts/progress-line.js';

const USAGE = 'usage: model-csi pull REFERENCE [--root DIR] [--config FILE] [--include GLOBS] [--exclude GLOBS]';

/**
 * `model-csi pull REFERENCE`: pull a model into the node cache, as the node plugin would.
 * A progress bar on a terminal (stderr); JSON lines on stdout otherwise. Prints the model's
 * path at the end (the last JSON line carries it when not on a terminal).
 */
export async function pullCommand(argv: string[]): Promise<number> {
  return runCommand('pull', async () => {
    const { settings, positionals, extra } = parseCommandLine(argv, process.env, hostname(), {
      include: { type: 'string' },
      exclude: { type: 'string' },
    });
    if (positionals.length !== 1) throw usageError(USAGE);
    const reference = parseReference(positionals[0]!);
    const logger = createLogger(settings.config.logLevel === 'info' ? 'warn' : settings.config.logLevel);
    const metrics = new Metrics({ defaultMetrics: false });
    const client = new RegistryClient({ config: settings.config, logger, metrics });
    try {
      const { content, models } = await openCache(settings.root, { logger, directWrites: settings.config.directWrites, rangedMinBlobBytes: settings.config.rangedMinBlobSize });
      const puller = new ModelPuller({ client, store: content, models, config: settings.config, logger });
      const tty = process.stderr.isTTY === true;
      const bar = tty ? new ProgressLine(process.stderr, formatReference(reference)) : undefined;
      let lastJson = 0;
      const started = Date.now();
      const pulled = await puller.pull({
        reference,
        include: splitGlobs(extra['include']),
        exclude: splitGlobs(extra['exclude']),
        onProgress: ({ doneBytes, totalBytes }) => {
          if (bar) return bar.update(doneBytes, totalBytes);
          const now = Date.now();
          if (now - lastJson < 1000 && doneBytes < totalBytes) return;
          lastJson = now;
          process.stdout.write(`${JSON.stringify({ event: 'progress', reference: formatReference(reference), doneBytes, totalBytes })}\n`);
        },
      });
      const seconds = (Date.now() - started) / 1000;
      if (bar) {
        bar.update(pulled.sizeBytes, pulled.sizeBytes, true);
        bar.finish();
        process.stdout.write(`${pulled.path}\n`);
      } else {
        process.stdout.write(`${JSON.stringify({ event: 'done', ...pulled, seconds, bytesReceived: await receivedBytes(metrics) })}\n`);
      }
      return 0;
    } finally {
      await client.close();
      await new Promise<void>((resolve) => logger.flush(() => resolve()));
    }
  });
}

async function receivedBytes(metrics: Metrics): Promise<number> {
  const metric = await metrics.bytesPulled.get();
  return metric.values.reduce((sum, value) => sum + value.value, 0);
}
