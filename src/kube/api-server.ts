import { existsSync } from 'node:fs';
import { KubeConfig } from '@kubernetes/client-node';
import type { Settings } from '../config/settings.js';
import { DriverError } from '../errors/driver-error.js';

const SERVICE_ACCOUNT_TOKEN = '/var/run/secrets/kubernetes.io/serviceaccount/token';

/**
 * How this process reaches the API server, or why it cannot: in a pod, its service account
 * (the chart mounts the token); elsewhere, `--kubeconfig` / KUBECONFIG. Neither (the CLI, the
 * demo, csi-sanity): everything that needs the API server (pod events, ModelCache) is off,
 * and the caller says so once in its log. A `--kubeconfig` that cannot be loaded is CONFIG_INVALID.
 */
export function apiServerConfig(settings: Pick<Settings, 'inCluster' | 'kubeconfig'>): KubeConfig | { unavailable: string } {
  const config = new KubeConfig();
  if (settings.inCluster) {
    if (!existsSync(SERVICE_ACCOUNT_TOKEN)) return { unavailable: `no service account token at ${SERVICE_ACCOUNT_TOKEN}` };
    try {
      config.loadFromCluster();
    } catch (err) {
      return { unavailable: `no in-cluster API server config: ${(err as Error).message}` };
    }
    return config;
  }
  if (settings.kubeconfig !== undefined) {
    try {
      config.loadFromFile(settings.kubeconfig);
    } catch (err) {
      // Asked for by name: a start-up error, not a feature quietly off.
      throw new DriverError('CONFIG_INVALID', `cannot load --kubeconfig ${settings.kubeconfig}: ${(err as Error).message.split('\n')[0]}`);
    }
    return config;
  }
  return { unavailable: 'not running in a pod (no KUBERNETES_SERVICE_HOST) and no --kubeconfig' };
}
