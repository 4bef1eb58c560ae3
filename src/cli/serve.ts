import { hostname } from 'node:os';
import { join } from 'node:path';
import { parseCommandLine } from '../config/settings.js';
import { ControllerService } from '../controller/controller-service.js';
import type { CsiHandlers } from '../csi/call-wrapper.js';
import { startCsiServer } from '../csi/server.js';
import { createLogger, type Logger } from '../log/logger.js';
import { NoEventSink, type EventSink } from '../kube/event-sink.js';
import { apiServerConfig } from '../kube/api-server.js';
import { KubeEventSink } from '../kube/kube-event-sink.js';
import { ModelCacheApi } from '../kube/model-cache-api.js';
import { startModelCacheWarming } from '../kube/model-cache-node.js';
import { startModelCacheSummaries } from '../kube/model-cache-summaries.js';
import { ModelCacheWarmer } from '../kube/model-cache-warmer.js';
import { PullEvents } from '../kube/pull-events.js';
import { startPluginRegistration, type RunningRegistration } from '../kubelet/plugin-registration.js';
import { startMetricsServer } from '../metrics/http-server.js';
import { Metrics } from '../metrics/metrics.js';
import { LinuxMounter } from '../mount/linux-mounter.js';
import { cacheRootUsable, prepareCacheRoot } from '../node/cache-root.js';
import { identityHandlers } from '../node/identity-service.js';
import { NodeService } from '../node/node-service.js';
import type { Settings } from '../config/settings.js';
import type { CsiServiceName } from '../csi/proto.js';
import { ModelPuller } from '../artifacts/model-puller.js';
import { AccessGrants } from '../model-source/access-grants.js';
import { CacheBudget } from '../model-source/cache-budget.js';
import { PullingModelSource } from '../model-source/pulling-model-source.js';
import { RegistryModelResolver } from '../model-source/registry-model-resolver.js';
import { TagCache } from '../model-source/tag-cache.js';
import { formatReference, parseReference } from '../registry/reference.js';
import { RegistryClient } from '../registry/registry-client.js';
import { DRIVER_NAME } from '../node/driver-identity.js';
import { openCache } from '../store/open-cache.js';
import { SignaturePolicy } from '../verify/signature-policy.js';
import { SignatureVerifier } from '../verify/signature-verifier.js';

/** In-flight calls get this long to finish after SIGTERM before they are cut. */
const SHUTDOWN_GRACE_MS = 10_000;

/**
 * `model-csi node` / `model-csi controller`: parse flags once, check the cache root (node),
 * serve CSI (and metrics), and on SIGTERM/SIGINT stop accepting calls, let the running ones
 * finish (bounded) and resolve 0.
 */
export function serveCommand(mode: 'node' | 'controller'): (argv: string[]) => Promise<number> {
  return async (argv) => {
    // --serve-controller: the node process serves the Controller service too (single-node
    // clusters, and csi-sanity, whose full lifecycle tests run only when the node socket
    // claims CONTROLLER_SERVICE).
    const { settings, extra } = parseCommandLine(argv, process.env, hostname(), { 'serve-controller': { type: 'boolean' } });
    const withController = mode === 'controller' || extra['serve-controller'] === true;
    const logger = createLogger(settings.config.logLevel).child({ mode, node: settings.nodeId });
    const metrics = new Metrics();
    if (mode === 'node') await prepareCacheRoot(settings.root);

    const kube = apiServerConfig(settings);
    // Background loops that talk to the API server start once CSI is served: start-up errors
    // (a socket in use, say) stay one stderr line, and kubelet is answered first.
    const background: Background = { starts: [], stops: [] };
    const services = {
      ...(mode === 'node' ? await nodeServices(settings, kube, background, metrics, logger) : {}),
      ...(withController ? controllerServices(settings, kube, background, metrics, logger) : {}),
    };
    const ready = mode === 'node' ? () => cacheRootUsable(settings.root) : async () => true;
    let registration: RunningRegistration | undefined;
    const problem = async (): Promise<string | undefined> => {
      if (!(await ready())) return `the cache root ${settings.root} is not a writable directory`;
      const registered = await registration?.health();
      return registered === undefined || registered.ok ? undefined : registered.message;
    };
    const metricsServer = settings.metricsAddr === undefined ? undefined : await startMetricsServer(settings.metricsAddr, metrics, problem);
    if (metricsServer) logger.info({ port: metricsServer.port }, 'serving /metrics and /healthz');

    const csi = await startCsiServer({
      endpoint: settings.endpoint,
      services: { Identity: identityHandlers({ controllerService: withController, ready }), ...services },
      logger,
      metrics,
    });
    // Registered only once the CSI socket answers: kubelet calls NodeGetInfo right away.
    if (mode === 'node' && settings.registration !== undefined) {
      registration = await startPluginRegistration({ ...settings.registration, logger });
    }
    for (const start of background.starts) start();

    const signal = await new Promise<NodeJS.Signals>((resolve) => {
      process.once('SIGTERM', resolve);
      process.once('SIGINT', resolve);
    });
    logger.info({ signal }, 'shutting down: no new calls, waiting for running ones');
    for (const stop of background.stops) stop();
    await registration?.stop();
    await csi.shutdown(SHUTDOWN_GRACE_MS);
    if (metricsServer) await new Promise((resolve) => metricsServer.server.close(resolve));
    logger.info('stopped');
    await new Promise<void>((resolve) => logger.flush(() => resolve()));
    return 0;
  };
}

type ApiServer = ReturnType<typeof apiServerConfig>;
/** What runs beside the CSI services: started after the socket serves, stopped at shutdown. */
interface Background {
  starts: Array<() => void>;
  stops: Array<() => void>;
}

async function nodeServices(settings: Settings, kube: ApiServer, background: Background, metrics: Metrics, logger: Logger): Promise<Partial<Record<CsiServiceName, CsiHandlers>>> {
  const { config, root } = settings;
  // Key files are read here, once: a bad one stops start-up (CONFIG_INVALID) before the socket opens.
  const policy = SignaturePolicy.load(config.verify);
  const { content, models } = await openCache(root, { logger, directWrites: config.directWrites, rangedMinBlobBytes: config.rangedMinBlobSize });
  const client = new RegistryClient({ config, logger, metrics });
  const events = new PullEvents(podEventSink(settings, kube, logger));
  const puller = new ModelPuller({ client, store: content, models, config, logger });
  // Never evict what a volume mounts, a pull is writing or a ModelCache pins. `node` and
  // `warmer` are assigned below; the budget only asks once a pull starts, after start-up.
  let node: NodeService | undefined;
  let warmer: ModelCacheWarmer | undefined;
  // The budget's running account starts from one walk of the cache, here, at start-up.
  await models.reconcileUsage();
  const budget: CacheBudget = new CacheBudget({
    budget: config.cacheBudget,
    store: models,
    pinned: (): Set<string> => new Set([...(node?.inUseModelKeys() ?? []), ...source.pullingKeys(), ...(warmer?.pinnedKeys() ?? [])]),
    onEvicted: (key) => warmer?.evicted(key),
    metrics,
    logger,
  });
  const source: PullingModelSource = new PullingModelSource({
    client,
    puller,
    models,
    tags: new TagCache(root),
    grants: new AccessGrants(root, logger),
    events,
    signatures: policy.empty ? undefined : new SignatureVerifier({ policy, client, events, root }),
    budget,
    metrics,
    logger,
  });
  node = await NodeService.create({
    nodeId: settings.nodeId,
    root,
    mounter: await LinuxMounter.open(join(root, 'staging')),
    modelSource: source,
    metrics,
    logger,
    publishWaitMs: config.publishWaitSeconds * 1000,
  });
  metrics.cacheBytes.set(await models.usedBytes());
  if (settings.config.modelCache.enabled && !('unavailable' in kube)) {
    const api = new ModelCacheApi(kube, logger);
    const nodeName = settings.nodeId;
    warmer = new ModelCacheWarmer({
      nodeName,
      source,
      // The tracker names a job by the reference it pulls: the same string for a warm and a pod.
      progressOf: (reference) => source.pulls.list().find((job) => job.description === formatReference(parseReference(reference)))?.progress,
      api: { pullSecret: (ref) => api.pullSecret(ref), applyNodeStatus: (cache, entry) => api.applyNodeStatus(cache, nodeName, entry) },
      logger,
    });
    const started = warmer;
    background.starts.push(() => background.stops.push(startModelCacheWarming({ api, warmer: started, nodeName, logger }).stop));
  } else {
    background.starts.push(() => logger.info({ reason: 'unavailable' in kube ? kube.unavailable : 'modelCache.enabled is false' }, 'ModelCache warming is off'));
  }
  return { Node: node.handlers() };
}

/** Events go to the API server when the plugin can reach it; otherwise they are off (logged once, at the first). */
function podEventSink(settings: Settings, kube: ApiServer, logger: Logger): EventSink {
  return 'unavailable' in kube ? new NoEventSink(logger, kube.unavailable) : new KubeEventSink(kube, settings.nodeId, logger);
}

function controllerServices(settings: Settings, kube: ApiServer, background: Background, metrics: Metrics, logger: Logger): Partial<Record<CsiServiceName, CsiHandlers>> {
  const client = new RegistryClient({ config: settings.config, logger, metrics });
  if (settings.config.modelCache.enabled && !('unavailable' in kube)) {
    const api = new ModelCacheApi(kube, logger);
    background.starts.push(() => background.stops.push(startModelCacheSummaries({ api, driverName: DRIVER_NAME, logger }).stop));
  }
  return { Controller: new ControllerService(new RegistryModelResolver(client)).handlers() };
}
