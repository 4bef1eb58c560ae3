import { Semaphore } from './semaphore.js';

/** The caps a blob connection counts against (config: maxConnectionsPerNode, maxConnectionsPerRegistry). */
export interface ConnectionCaps {
  perNode: number;
  perRegistry: number;
}

/** A held connection slot; `release` is idempotent. */
export type ConnectionSlot = () => void;

/** One registry's view of the budget: what a blob download asks for its connections. */
export interface RegistryConnections {
  /** Wait for a slot (every download gets its first connection this way). */
  acquire(signal?: AbortSignal): Promise<ConnectionSlot>;
  /** A slot now or none: for connections beyond a download's first, which are optional. */
  tryAcquire(): ConnectionSlot | undefined;
}

/**
 * The connections blob downloads hold open, capped per node and per registry host. A slot is
 * taken before a request is sent and given back when its body is done, so the caps count
 * sockets, not downloads. Slots are taken registry first, then node, always in that order.
 */
export class ConnectionBudget {
  private readonly node: Semaphore;
  private readonly registries = new Map<string, Semaphore>();

  constructor(readonly caps: ConnectionCaps) {
    this.node = new Semaphore(caps.perNode);
  }

  /** Connections held now, on the node and per registry (for metrics and tests). */
  inUse(): { node: number; registries: Record<string, number> } {
    return { node: this.node.held, registries: Object.fromEntries([...this.registries].map(([host, s]) => [host, s.held])) };
  }

  forRegistry(host: string): RegistryConnections {
    let registry = this.registries.get(host);
    if (registry === undefined) {
      registry = new Semaphore(Math.min(this.caps.perRegistry, this.caps.perNode));
      this.registries.set(host, registry);
    }
    const own = registry;
    return {
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
