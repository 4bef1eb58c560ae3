import { statSync, readFileSync } from 'node:fs';
import type { Logger } from 'pino';
import { DriverError } from '../../errors/driver-error.js';
import { lookupCredentials, parseDockerConfig, type Credential, type DockerConfigEntry } from './docker-config.js';

/** Per-call credentials: the `.dockerconfigjson` payload of the volume's pull secret. */
export interface RequestAuth {
  dockerConfigJson?: string;
}

/**
 * Where credentials come from, in order: the per-call payload (a pod's pull secret), then
 * the node-wide docker config (`config.dockerConfig`), read at construction and again
 * whenever its mtime changes (a mounted Secret is updated in place by kubelet).
 */
export class CredentialStore {
  private nodeEntries: DockerConfigEntry[] = [];
  private nodeMtimeMs = -1;
  /** Parsed per-call payloads; a pod's secret is the same string on every publish. */
  private readonly payloadCache = new Map<string, DockerConfigEntry[]>();

  constructor(
    private readonly nodeConfigPath: string | undefined,
    private readonly logger: Logger,
  ) {
    this.refreshNodeConfig();
  }

  private refreshNodeConfig(): void {
    if (this.nodeConfigPath === undefined) return;
    let mtimeMs: number;
    try {
      mtimeMs = statSync(this.nodeConfigPath).mtimeMs;
    } catch (err) {
      if (this.nodeMtimeMs !== -2) {
        this.logger.warn({ path: this.nodeConfigPath, code: (err as NodeJS.ErrnoException).code }, 'node docker config not readable; pulling without node-wide credentials');
      }
      this.nodeMtimeMs = -2;
      this.nodeEntries = [];
      return;
    }
    if (mtimeMs === this.nodeMtimeMs) return;
    try {
      this.nodeEntries = parseDockerConfig(readFileSync(this.nodeConfigPath, 'utf8'), `docker config ${this.nodeConfigPath}`, 'CONFIG_INVALID');
      this.logger.info({ path: this.nodeConfigPath, entries: this.nodeEntries.map((e) => e.key) }, 'loaded node docker config');
    } catch (err) {
      // Keep running with no node credentials; the message says what is wrong with the file.
      this.logger.error({ path: this.nodeConfigPath, err: (err as Error).message }, 'node docker config ignored');
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
  lookup(host: string, repository: string, auth?: RequestAuth): Credential | undefined {
    if (auth?.dockerConfigJson !== undefined && auth.dockerConfigJson !== '') {
      if (typeof auth.dockerConfigJson !== 'string') throw new DriverError('INVALID_SECRET', 'the pull secret payload is not a string');
      const fromCall = lookupCredentials(this.payloadEntries(auth.dockerConfigJson), host, repository);
      if (fromCall.length > 0) return fromCall[0];
    }
    this.refreshNodeConfig();
    return lookupCredentials(this.nodeEntries, host, repository)[0];
  }
}
