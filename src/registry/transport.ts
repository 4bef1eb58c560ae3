import { readFileSync } from 'node:fs';
import { rootCertificates } from 'node:tls';
import { Agent, type Dispatcher } from 'undici';
import type { ConfigFile, RegistryConfig } from '../config/schema.js';
import { DriverError } from '../errors/driver-error.js';
import { DOCKER_HUB, DOCKER_HUB_API_HOST } from './reference.js';

/**
 * Connections: one undici Agent per TLS profile (verified default, insecure, or verified
 * with an extra CA). An Agent keeps a keep-alive pool per origin, so parallel blob streams
 * to one registry reuse sockets.
 *
 * Scheme choice, as docker does for insecure registries: HTTPS first, and plain HTTP when the
 * peer does not speak TLS at all, for registries marked `insecure` and for loopback hosts
 * (`localhost`, 127.0.0.0/8, [::1]) even when not listed. A certificate that fails
 * verification is never a reason to fall back: it is TLS_FAILURE. The scheme that worked is
 * remembered per host.
 */
export interface TransportOptions {
  /** Sockets per origin; enough for maxConcurrentDownloads blob streams plus manifests. */
  connections: number;
}

export const HEADERS_TIMEOUT_MS = 60_000;
export const BODY_IDLE_TIMEOUT_MS = 120_000;

function isLoopbackHost(host: string): boolean {
  const name = host.replace(/:\d+$/, '').replace(/^\[(.*)\]$/, '$1').toLowerCase();
  return name === 'localhost' || name === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(name);
}

export class Transport {
  private readonly agents = new Map<string, Agent>();
  private readonly schemes = new Map<string, 'https' | 'http'>();
  /** Per configured CA file, the system roots plus its PEM: read and built once here (at start-up), never on the request path. */
  private readonly caBundles: ReadonlyMap<string, string[]>;

  constructor(
    private readonly config: Readonly<ConfigFile>,
    private readonly options: TransportOptions,
  ) {
    this.caBundles = loadCaFiles(config);
  }

  /** The config entry for a host, also under Docker Hub's other names. */
  registryConfig(host: string): RegistryConfig | undefined {
    const regs = this.config.registries;
    if (regs[host] !== undefined) return regs[host];
    if (host === DOCKER_HUB || host === DOCKER_HUB_API_HOST || host === 'index.docker.io') {
      return regs[DOCKER_HUB] ?? regs[DOCKER_HUB_API_HOST] ?? regs['index.docker.io'];
    }
    return undefined;
  }

  /** Schemes to try for a registry host, in order. */
  schemesFor(host: string): Array<'https' | 'http'> {
    const known = this.schemes.get(host);
    if (known !== undefined) return [known];
    const insecure = this.registryConfig(host)?.insecure === true;
    return insecure || isLoopbackHost(host) ? ['https', 'http'] : ['https'];
  }

  rememberScheme(host: string, scheme: 'https' | 'http'): void {
    this.schemes.set(host, scheme);
  }

  /** TLS settings for a host: verified by default, its extra CA, or unverified when `insecure`. */
  tlsOptionsFor(host: string): { rejectUnauthorized?: boolean; ca?: string[] } {
    const cfg = this.registryConfig(host);
    if (cfg?.insecure) return { rejectUnauthorized: false };
    if (cfg?.ca === undefined) return {};
    return { ca: this.caBundles.get(cfg.ca)! };
  }

  /** The dispatcher for a URL's host, with that host's TLS settings. */
  dispatcherFor(host: string): Dispatcher {
    const cfg = this.registryConfig(host);
    const profile = cfg?.insecure ? 'insecure' : cfg?.ca !== undefined ? `ca:${cfg.ca}` : 'default';
    let agent = this.agents.get(profile);
    if (agent === undefined) {
      agent = new Agent({
        connections: this.options.connections,
        keepAliveTimeout: 30_000,
        headersTimeout: HEADERS_TIMEOUT_MS,
        // Idle time between body chunks, not the whole transfer.
        bodyTimeout: BODY_IDLE_TIMEOUT_MS,
        connect: this.tlsOptionsFor(host),
      });
      this.agents.set(profile, agent);
    }
    return agent;
  }

  async close(): Promise<void> {
    const agents = [...this.agents.values()];
    this.agents.clear();
    await Promise.all(agents.map((a) => a.close()));
  }
}

/**
 * Read every `registries.<host>.ca` file once. A file that cannot be read or holds no PEM
 * certificate stops start-up with CONFIG_INVALID naming the key, instead of failing every pull
 * later as TLS_FAILURE.
 */
function loadCaFiles(config: Readonly<ConfigFile>): Map<string, string[]> {
  const bundles = new Map<string, string[]>();
  for (const [host, cfg] of Object.entries(config.registries)) {
    if (cfg.insecure || cfg.ca === undefined || bundles.has(cfg.ca)) continue;
    let pem: string;
    try {
      pem = readFileSync(cfg.ca, 'utf8');
    } catch (err) {
      throw new DriverError(
        'CONFIG_INVALID',
        `cannot read the CA file ${cfg.ca} of registries."${host}".ca (${(err as NodeJS.ErrnoException).code ?? 'error'}): fix the path in the driver config`,
      );
    }
    if (!pem.includes('-----BEGIN CERTIFICATE-----')) {
      throw new DriverError('CONFIG_INVALID', `the CA file ${cfg.ca} of registries."${host}".ca holds no PEM certificate`);
    }
    // Added to the system roots, not instead of them (a registry may redirect blobs to
    // public object storage).
    bundles.set(cfg.ca, [...rootCertificates, pem]);
  }
  return bundles;
}
