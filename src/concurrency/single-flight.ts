/**
 * Single flight per key: concurrent callers of one key share one running operation; different
 * keys run in parallel (no global mutex, as containerd's per-ref ingest locks). The one
 * primitive for every "share the work in progress" map of the driver: blob downloads, model
 * assemblies, background pulls, tag resolutions, access checks, token fetches.
 *
 * Lifecycle of a flight, and the rules every user gets the same way:
 * - The first `run` for a key starts the operation; later ones join it as *waiters*. Each
 *   waiter gets a promise of its own.
 * - A waiter leaves when its own `signal` aborts (its promise rejects with that signal's
 *   reason) or when the operation dismisses it alone with its own error (`Waiter.leave`: its
 *   credentials were refused, say). Leaving never fails the others.
 * - The operation's `signal` aborts only once every waiter has left: one caller's deadline or
 *   failure cannot cancel work another caller still waits for. A waiter without a signal
 *   never leaves, so its flight is never aborted (background pulls).
 * - When the operation settles, the waiters still there get its outcome, and the key is free.
 *   A caller that arrives while an abandoned operation is still winding down does not join
 *   it: a fresh operation starts once the old one has settled, so two never run on one key
 *   (a download's ingest file has one writer).
 */
export interface Waiter<C> {
  /** What this caller brought (a blob opener with its credentials, a progress listener). */
  readonly context: C;
  /** Detach this waiter alone, its promise rejecting with `err`; the last to go aborts the flight. */
  leave(err: unknown): void;
}

export interface Flight<S, C> {
  readonly key: string;
  /** Aborted once every waiter has left. */
  readonly signal: AbortSignal;
  /** The record the starting caller gave (`RunOptions.state`), shared by all. */
  readonly state: S;
  /** The waiters still waiting, first joined first. */
  waiters(): ReadonlyArray<Waiter<C>>;
}

export interface RunOptions<S, C> {
  /** This caller's own: when it aborts, this caller leaves (and the flight, if it was the last). */
  signal?: AbortSignal | undefined;
  context?: C;
  /** The flight's shared record; used only when this call starts the flight. */
  state?: S;
}

interface Entry<T, S, C> {
  flight: Flight<S, C>;
  controller: AbortController;
  members: Array<Member<T, C>>;
  /** Settles (never rejects) once the operation has. */
  settled: Promise<void>;
}

interface Member<T, C> extends Waiter<C> {
  resolve(value: T): void;
  reject(err: unknown): void;
}

export class SingleFlight<T, S = undefined, C = undefined> {
  private readonly entries = new Map<string, Entry<T, S, C>>();

  run(key: string, operation: (flight: Flight<S, C>) => Promise<T>, options: RunOptions<S, C> = {}): Promise<T> {
    const { signal } = options;
    if (signal?.aborted) return Promise.reject(signal.reason);
    let entry = this.entries.get(key);
    if (!entry || entry.controller.signal.aborted) entry = this.start(key, operation, options.state as S, entry?.settled);
    return this.join(entry, options.context as C, signal);
  }

  /** Is an operation running for `key` (gc must not take what it writes)? */
  has(key: string): boolean {
    return this.entries.has(key);
  }

  keys(): string[] {
    return [...this.entries.keys()];
  }

  /** The shared record of the flight running for `key`. */
  state(key: string): S | undefined {
    return this.entries.get(key)?.flight.state;
  }

  states(): S[] {
    return [...this.entries.values()].map((entry) => entry.flight.state);
  }

  get size(): number {
    return this.entries.size;
  }

  private start(key: string, operation: (flight: Flight<S, C>) => Promise<T>, state: S, previous: Promise<void> | undefined): Entry<T, S, C> {
    const controller = new AbortController();
    const members: Array<Member<T, C>> = [];
    const flight: Flight<S, C> = { key, signal: controller.signal, state, waiters: () => members };
    // Started on a later tick (or after the abandoned operation it replaces): the starter is
    // a waiter before the operation can look at the waiters.
    const outcome = (previous ?? Promise.resolve()).then(() => operation(flight));
    const entry: Entry<T, S, C> = {
      flight,
      controller,
      members,
      settled: outcome.then(
        () => undefined,
        () => undefined,
      ),
    };
    outcome.then(
      (value) => this.finish(entry, (member) => member.resolve(value)),
      (err: unknown) => this.finish(entry, (member) => member.reject(err)),
    );
    this.entries.set(key, entry);
    return entry;
  }

  private finish(entry: Entry<T, S, C>, settle: (member: Member<T, C>) => void): void {
    if (this.entries.get(entry.flight.key) === entry) this.entries.delete(entry.flight.key);
    for (const member of entry.members.splice(0)) settle(member);
  }

  private join(entry: Entry<T, S, C>, context: C, signal: AbortSignal | undefined): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const onAbort = (): void => member.leave(signal!.reason);
      const detach = (): boolean => {
        signal?.removeEventListener('abort', onAbort);
        const at = entry.members.indexOf(member);
        if (at < 0) return false;
        entry.members.splice(at, 1);
        return true;
      };
      const member: Member<T, C> = {
        context,
        resolve: (value) => {
          detach();
          resolve(value);
        },
        reject: (err) => {
          detach();
          reject(err);
        },
        leave: (err) => {
          if (!detach()) return;
          reject(err);
          if (entry.members.length === 0) entry.controller.abort(err);
        },
      };
      entry.members.push(member);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }
}
