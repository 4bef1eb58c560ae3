import { Semaphore } from './semaphore.js';

/** The caps a blob connection counts against (config: maxConnectionsPerNode, maxConnectionsPerRegistry). */
export interface ConnectionCaps {
  perNode: number;
  perRegistry: number;
}

/** A held connection slot; `release` is idempotent. */
export type ConnectionSlot = () => void;

/**
 * What the ranged downloads from one registry learn together about adding connections
 * (ranged-download.ts). Downloads that run at once share the link: each one trying larger
 * counts at the same time would measure the others' loss as its gain, and pay for the trial
 * many times over. So one tries at a time, and when it found that no added connection paid
 * (the link is full), the others do not try; what was learned is forgotten once none runs.
 */
export class GrowthTurns {
  private holder: object | undefined;
  private running = 0;
  private linkFull = false;

  /** A ranged download started; `end` when it is done. */
  join(): () => void {
    this.running++;
    let ended = false;
    return () => {
      if (ended) return;
      ended = true;
      if (--this.running === 0) {
        this.holder = undefined;
        this.linkFull = false;
      }
    };
  }

  /** May `download` try larger counts now? It keeps the turn until `done`. */
  take(download: object): boolean {
    if (this.holder === undefined && !this.linkFull) this.holder = download;
    return this.holder === download;
  }

  /** `download` settled; `full`: no added connection paid. */
  done(download: object, full: boolean): void {
    if (this.holder !== download) return;
    this.holder = undefined;
    if (full) this.linkFull = true;
  }
}

/** One registry's view of the budget: what a blob download asks for its connections. */
export interface RegistryConnections {
  /** Wait for a slot (every download gets its first connection this way). */
  acquire(signal?: AbortSignal): Promise<ConnectionSlot>;
  /** A slot now or none: for connections beyond a download's first, which are optional. */
  tryAcquire(): ConnectionSlot | undefined;
  /** Which ranged download from this registry may try more connections now. */
  readonly growth: GrowthTurns;
}

/**
 * The connections blob downloads hold open, capped per node and per registry host. A slot is
 * taken before a request is sent and given back when its body is done, so the caps count
 * sockets, not downloads. Slots are taken registry first, then node, always in that order.
 */
export class ConnectionBudget {
  private readonly node: Semaphore;
  private readonly registries = new Map<string, { slots: Semaphore; growth: GrowthTurns }>();

  constructor(readonly caps: ConnectionCaps) {
    this.node = new Semaphore(caps.perNode);
  }

  /** Connections held now, on the node and per registry (for metrics and tests). */
  inUse(): { node: number; registries: Record<string, number> } {
    return { node: this.node.held, registries: Object.fromEntries([...this.registries].map(([host, r]) => [host, r.slots.held])) };
  }

  forRegistry(host: string): RegistryConnections {
    let registry = this.registries.get(host);
    if (registry === undefined) {
      registry = { slots: new Semaphore(Math.min(this.caps.perRegistry, this.caps.perNode)), growth: new GrowthTurns() };
      this.registries.set(host, registry);
    }
    const own = registry.slots;
    return {
      growth: registry.growth,
      acquire: async (signal) => {
        const releaseRegistry = await own.acquire(signal);
        try {
          const releaseNode = await this.node.acquire(signal);
          return both(releaseNode, releaseRegistry);
        } catch (err) {
          releaseRegistry();
          throw err;
        }
      },
      tryAcquire: () => {
        const releaseRegistry = own.tryAcquire();
        if (releaseRegistry === undefined) return undefined;
        const releaseNode = this.node.tryAcquire();
        if (releaseNode === undefined) {
          releaseRegistry();
          return undefined;
        }
        return both(releaseNode, releaseRegistry);
      },
    };
  }
}

function both(first: () => void, second: () => void): ConnectionSlot {
  return () => {
    first();
    second();
  };
}
