import { createHash } from 'node:crypto';
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { SingleFlight } from '../concurrency/single-flight.js';
import { isDriverError } from '../errors/driver-error.js';
import { classifyFsError } from '../errors/fs-error.js';
import { writeFileAtomic } from '../fs/atomic-write.js';
import type { Logger } from '../log/logger.js';

/**
 * Who may mount what is already on this node. The cache is shared by every pod on the node,
 * so without this a pod with no pull secret (or a wrong one) could mount a private model that
 * another pod's secret pulled, by naming its tag or digest — kubelet's image cache has the same
 * hole (the KubeletEnsureSecretPulledImages work in Kubernetes addresses it).
 *
 * A grant says: the registry accepted these credentials (hashed, never stored) for this
 * repository. It is recorded whenever a registry request with them succeeds, and checked
 * before a cached model is mounted or an in-flight pull is joined; without one, a manifest
 * request with the caller's own credentials decides. Grants are re-checked after GRANT_TTL_MS
 * so revoked credentials stop working, but a stale grant still serves while the registry is
 * unreachable: a node that rebooted with its registry down keeps mounting what it mounted.
 * Grants are files, so they survive a restart.
 */
const GRANT_TTL_MS = 60 * 60 * 1000;

export function credentialHash(dockerConfigJson: string | undefined): string {
  // Anonymous and node-wide credentials share one identity: any pod on the node has those.
  return createHash('sha256').update(dockerConfigJson ?? '').digest('hex');
}

export class AccessGrants {
  private readonly dir: string;
  private readonly known = new Map<string, number>();
  private readonly checks = new SingleFlight<void>();

  constructor(
    root: string,
    private readonly logger: Logger,
  ) {
    this.dir = join(root, 'state', 'access');
  }

  /** The registry just accepted these credentials for `repository` (`host/repo`). */
  async grant(repository: string, credentials: string): Promise<void> {
    const id = grantId(repository, credentials);
    this.known.set(id, Date.now());
    try {
      await mkdir(this.dir, { recursive: true });
      await writeFileAtomic(join(this.dir, `${id}.json`), JSON.stringify({ repository, grantedAt: new Date().toISOString() }), 0o600);
    } catch (err) {
      throw classifyFsError(err, `recording the access grant for ${repository}`);
    }
  }

  /**
   * Resolve if these credentials may read `repository`; else throw what `verify` threw
   * (REGISTRY_UNAUTHORIZED for a refused secret). Concurrent checks of one grant share one
   * registry request.
   */
  async check(repository: string, credentials: string, verify: () => Promise<unknown>): Promise<void> {
    const id = grantId(repository, credentials);
    const grantedAt = await this.grantedAt(id);
    if (grantedAt !== undefined && Date.now() - grantedAt < GRANT_TTL_MS) return;
    return this.checks.run(id, () =>
      verify()
        .then(() => this.grant(repository, credentials))
        .catch((err: unknown) => {
          if (grantedAt !== undefined && isDriverError(err) && (err.code === 'REGISTRY_UNAVAILABLE' || err.code === 'TLS_FAILURE')) {
            this.logger.warn({ repository, code: err.code }, 'registry unreachable: serving the cached model on an earlier grant');
            return;
          }
          throw err;
        }),
    );
  }

  private async grantedAt(id: string): Promise<number | undefined> {
    const cached = this.known.get(id);
    if (cached !== undefined) return cached;
    try {
      const record = JSON.parse(await readFile(join(this.dir, `${id}.json`), 'utf8')) as { grantedAt: string };
      const at = Date.parse(record.grantedAt);
      if (Number.isNaN(at)) return undefined;
      this.known.set(id, at);
      return at;
    } catch {
      return undefined;
    }
  }
}

function grantId(repository: string, credentials: string): string {
  return createHash('sha256').update(`${repository}\0${credentials}`).digest('hex').slice(0, 40);
}
