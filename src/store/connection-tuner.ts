/**
 * How many connections one ranged download uses (ranged-download.ts): start small, grow while
 * each connection's throughput holds, as measured over a window at a steady count.
 *
 * The rule: at `base` connections the download moved R(base) bytes per second. A larger count
 * n paid for itself when each added connection brought at least GAIN of an average
 * connection's share: R(n) ≥ R(base) · (1 + GAIN · (n - base) / base). The count doubles while
 * that holds (an origin that limits each connection, as object storage behind a registry does
 * at ~50-100 MB/s each, keeps paying up to the cap); once a count does not pay, the counts
 * between the last one that paid and it are bisected, and the download settles at the largest
 * that paid; when the larger count brought less than one added connection's share, nothing in
 * between can pay, and it settles at once. A link or disk that two connections already fill
 * settles at two after one window.
 *
 * A window lasts at least `windowMs` and until every connection could deliver
 * `windowBytesPerConnection` (bytes arrive in 4 MiB pieces: fewer per window would measure the
 * pieces' timing, not the rate).
 */
export interface TunerSettings {
  start: number;
  max: number;
  windowMs: number;
  windowBytesPerConnection: number;
}

/** An added connection must bring this fraction of an average connection's throughput. */
const GAIN = 0.6;

export class ConnectionTuner {
  private wanted: number;
  private settled = false;
  /** The largest count that paid, and its rate (bytes per ms); undefined before the first window. */
  private base: { count: number; rate: number } | undefined;
  /** The smallest count known not to pay (the bisection's upper end). */
  private tooMany: number | undefined;
  private windowStart: number;
  private windowBytes = 0;
  private windowCount = 0;

  constructor(
    private readonly settings: TunerSettings,
    private readonly now: () => number = () => performance.now(),
  ) {
    this.wanted = Math.max(1, Math.min(settings.start, settings.max));
    this.windowStart = now();
  }

  /** The count the download should run at now. */
  get target(): number {
    return this.wanted;
  }

  /** True once it settled (it no longer changes the count). */
  get isSettled(): boolean {
    return this.settled;
  }

  /** `bytes` arrived while `active` connections were running. Returns the count wanted now. */
  observe(bytes: number, active: number): number {
    if (this.settled) return this.wanted;
    const at = this.now();
    if (active !== this.windowCount) {
      // The count changed (a connection started or left): measure afresh at the new one.
      this.windowCount = active;
      this.windowStart = at;
      this.windowBytes = 0;
      return this.wanted;
    }
    this.windowBytes += bytes;
    const elapsed = at - this.windowStart;
    if (active < this.wanted || elapsed < this.settings.windowMs || this.windowBytes < active * this.settings.windowBytesPerConnection) return this.wanted;
    this.judge(active, this.windowBytes / elapsed);
    this.windowStart = at;
    this.windowBytes = 0;
    return this.wanted;
  }

  /** No connection slot was free for one more (the node or registry cap): hold the count here. */
  capped(active: number): void {
    this.wanted = Math.max(1, active);
  }

  private judge(count: number, rate: number): void {
    const base = this.base;
    const paid = base === undefined || count <= base.count || rate >= base.rate * (1 + (GAIN * (count - base.count)) / base.count);
    if (paid) {
      if (base === undefined || count > base.count) this.base = { count, rate };
    } else if (rate < base.rate * (1 + GAIN / base.count)) {
      // Not even one added connection's worth: no count in between can pay either (a count
      // between them moves at most what the larger one did), so settle without bisecting.
      this.wanted = base.count;
      this.settled = true;
      return;
    } else this.tooMany = count;
    const lo = this.base!.count;
    const hi = this.tooMany ?? Math.min(this.settings.max, 2 * lo) + 1;
    const next = this.tooMany === undefined ? Math.min(this.settings.max, 2 * lo) : Math.floor((lo + hi) / 2);
    if (next <= lo || next >= hi) {
      this.wanted = lo;
      this.settled = true;
    } else this.wanted = next;
  }
}
