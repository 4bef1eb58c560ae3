/**
 * How many connections one ranged download uses (ranged-download.ts): start small, and add one
 * while each connection's throughput holds, as measured over a window at a steady count.
 *
 * The rule: with n connections for a window, the download moved R(n) bytes per second; with
 * one fewer it moved R(n-1). The n-th connection paid for itself when it added at least
 * GAIN of an average connection's share, R(n) ≥ R(n-1) · (1 + GAIN / (n-1)); then another is
 * tried. Otherwise the count settles at n-1. An
 * origin that limits each connection (object storage behind a registry: ~50-100 MB/s each)
 * keeps paying until the caps; a link or disk that one connection already fills stops at once.
 */
export interface TunerSettings {
  start: number;
  max: number;
  /** How long a count is measured before it is judged. */
  windowMs: number;
}

/** A new connection must add this fraction of an average connection's throughput to stay. */
const GAIN = 0.6;

export class ConnectionTuner {
  private wanted: number;
  private settled = false;
  /** Rate at the previous count (bytes per ms), or undefined before the first judgement. */
  private previousRate: number | undefined;
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

  /**
   * `bytes` arrived while `active` connections were running. Returns the count wanted now:
   * judged at the end of each window measured at one steady count.
   */
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
    if (elapsed < this.settings.windowMs || active < this.wanted) return this.wanted;
    const rate = this.windowBytes / elapsed;
    const previous = this.previousRate;
    if (previous === undefined || active === 1 || rate >= previous * (1 + GAIN / (active - 1))) {
      this.previousRate = rate;
      if (this.wanted < this.settings.max) this.wanted++;
      else this.settled = true;
    } else {
      // The last connection did not pay for itself: drop it and stay.
      this.wanted = Math.max(1, active - 1);
      this.settled = true;
    }
    this.windowStart = at;
    this.windowBytes = 0;
    return this.wanted;
  }

  /** No connection slot was free for one more (the node or registry cap): hold the count here. */
  capped(active: number): void {
    this.wanted = Math.max(1, active);
  }
}
