import { hostname } from 'node:os';
import { parseCommandLine } from '../config/settings.js';
import { ControllerService } from '../controller/controller-service.js';
import { PinnedOnlyResolver } from '../controller/model-resolver.js';
import type { CsiHandlers } from '../csi/call-wrapper.js';
import { startCsiServer } from '../csi/server.js';
import { createLogger, type Logger } from '../log/logger.js';
import { startMetricsServer } from '../metrics/http-server.js';
import { Metrics } from '../metrics/metrics.js';
import { LinuxMounter } from '../mount/linux-mounter.js';
import { cacheRootUsable, prepareCacheRoot } from '../node/cache-root.js';
import { identityHandlers } from '../node/identity-service.js';
import { LocalModelSource } from '../node/local-model-source.js';
import { NodeService } from '../node/node-service.js';
import type { Settings } from '../config/settings.js';
import type { CsiServiceName } from '../csi/proto.js';

/** In-flight calls get this long to finish after SIGTERM before they are cut. */
const SHUTDOWN_GRACE_MS = 10_000;

/**
 * `model-csi node` / `model-csi controller`: parse flags once, check the cache root (node),
 * serve CSI (and metrics), and on SIGTERM/SIGINT stop accepting calls, let the running ones
 * finish (bounded) and resolve 0.
 */
export function serveCommand(mode: 'node' | 'controller'): (argv: string[]) => Promise<number> {
  return async (argv) => {
    const { settings } = parseCommandLine(argv, process.env, hostname());
    const logger = createLogger(settings.config.logLevel).child({ mode, node: settings.nodeId });
    const metrics = new Metrics();
    if (mode === 'node') await prepareCacheRoot(settings.root);

    const services = mode === 'node' ? await nodeServices(settings, metrics, logger) : controllerServices();
    const ready = mode === 'node' ? () => cacheRootUsable(settings.root) : async () => true;
    const metricsServer = settings.metricsAddr === undefined ? undefined : await startMetricsServer(settings.metricsAddr, metrics, ready);
    if (metricsServer) logger.info({ port: metricsServer.port }, 'serving /metrics and /healthz');

    const csi = await startCsiServer({
      endpoint: settings.endpoint,
      services: { Identity: identityHandlers({ controllerService: mode === 'controller', ready }), ...services },
      logger,
      metrics,
    });

    const signal = await new Promise<NodeJS.Signals>((resolve) => {
      process.once('SIGTERM', resolve);
      process.once('SIGINT', resolve);
    });
    logger.info({ signal }, 'shutting down: no new calls, waiting for running ones');
    await csi.shutdown(SHUTDOWN_GRACE_MS);
    if (metricsServer) await new Promise((resolve) => metricsServer.server.close(resolve));
    logger.info('stopped');
    await new Promise<void>((resolve) => logger.flush(() => resolve()));
    return 0;
  };
}

async function nodeServices(settings: Settings, metrics: Metrics, logger: Logger): Promise<Partial<Record<CsiServiceName, CsiHandlers>>> {
  const node = await NodeService.create({
    nodeId: settings.nodeId,
    root: settings.root,
    mounter: new LinuxMounter(),
    modelSource: new LocalModelSource(settings.root),
    metrics,
    logger,
    publishWaitMs: settings.config.publishWaitSeconds * 1000,
  });
  return { Node: node.handlers() };
}

function controllerServices(): Partial<Record<CsiServiceName, CsiHandlers>> {
  return { Controller: new ControllerService(new PinnedOnlyResolver()).handlers() };
}
