import { readFile, stat } from 'node:fs/promises';
import type { Logger } from 'pino';
import { DriverError } from '../../errors/driver-error.js';
import { lookupCredentials, parseDockerConfig, type Credential, type DockerConfigEntry } from './docker-config.js';

/** Per-call credentials: the `.dockerconfigjson` payload of the volume's pull secret. */
export interface RequestAuth {
  dockerConfigJson?: string;
}

/**
 * Where credentials come from, in order: the per-call payload (a pod's pull secret), then
 * the node-wide docker config (`config.dockerConfig`), read at the first look-up and again
 * whenever its mtime changes (a mounted Secret is updated in place by kubelet). The file is
 * stat'ed asynchronously on each look-up (a look-up is on the request path: no sync I/O
 * there), and concurrent look-ups share one stat and one read.
 */
export class CredentialStore {
  private nodeEntries: DockerConfigEntry[] = [];
  private nodeMtimeMs = -1;
  private refreshing: Promise<void> | undefined;
  /** Parsed per-call payloads; a pod's secret is the same string on every publish. */
  private readonly payloadCache = new Map<string, DockerConfigEntry[]>();

  constructor(
    private readonly nodeConfigPath: string | undefined,
    private readonly logger: Logger,
  ) {}

  private refreshNodeConfig(): Promise<void> {
    if (this.nodeConfigPath === undefined) return Promise.resolve();
    this.refreshing ??= this.reloadIfChanged(this.nodeConfigPath).finally(() => (this.refreshing = undefined));
    return this.refreshing;
  }

  private async reloadIfChanged(path: string): Promise<void> {
    let mtimeMs: number;
    try {
      mtimeMs = (await stat(path)).mtimeMs;
    } catch (err) {
      if (this.nodeMtimeMs !== -2) {
        this.logger.warn({ path, code: (err as NodeJS.ErrnoException).code }, 'node docker config not readable; pulling without node-wide credentials');
      }
      this.nodeMtimeMs = -2;
      this.nodeEntries = [];
      return;
    }
    if (mtimeMs === this.nodeMtimeMs) return;
    try {
      this.nodeEntries = parseDockerConfig(await readFile(path, 'utf8'), `docker config ${path}`, 'CONFIG_INVALID');
      this.logger.info({ path, entries: this.nodeEntries.map((e) => e.key) }, 'loaded node docker config');
    } catch (err) {
      // Keep running with no node credentials; the message says what is wrong with the file.
      this.logger.error({ path, err: (err as Error).message }, 'node docker config ignored');
      this.nodeEntries = [];
    }
    this.nodeMtimeMs = mtimeMs;
  }

  private payloadEntries(payload: string): DockerConfigEntry[] {
    let entries = this.payloadCache.get(payload);
    if (entries === undefined) {
      entries = parseDockerConfig(payload, 'the pull secret (.dockerconfigjson)', 'INVALID_SECRET');
      if (this.payloadCache.size > 256) this.payloadCache.clear();
      this.payloadCache.set(payload, entries);
    }
    return entries;
  }

  /**
   * The credential for `host/repository` (host as named in the reference, or a mirror's
   * host), or undefined for anonymous access. The per-call payload wins over the node file.
   */
  async lookup(host: string, repository: string, auth?: RequestAuth): Promise<Credential | undefined> {
    if (auth?.dockerConfigJson !== undefined && auth.dockerConfigJson !== '') {
      if (typeof auth.dockerConfigJson !== 'string') throw new DriverError('INVALID_SECRET', 'the pull secret payload is not a string');
      const fromCall = lookupCredentials(this.payloadEntries(auth.dockerConfigJson), host, repository);
      if (fromCall.length > 0) return fromCall[0];
    }
    await this.refreshNodeConfig();
    return lookupCredentials(this.nodeEntries, host, repository)[0];
  }
}
