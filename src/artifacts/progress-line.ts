import { formatBytes } from '../config/quantity.js';

/**
 * Pull progress for a terminal: one line on stderr, redrawn at most every 100 ms, with a bar,
 * percent, bytes and the rate over the last few seconds. Off a terminal `model-csi pull`
 * writes JSON lines instead (see pull.ts).
 */
export class ProgressLine {
  private lastDraw = 0;
  private readonly samples: Array<{ at: number; bytes: number }> = [];

  constructor(private readonly out: NodeJS.WriteStream, private readonly label: string) {}

  update(doneBytes: number, totalBytes: number, force = false): void {
    const now = Date.now();
    this.samples.push({ at: now, bytes: doneBytes });
    while (this.samples.length > 2 && now - this.samples[0]!.at > 3000) this.samples.shift();
    if (!force && now - this.lastDraw < 100) return;
    this.lastDraw = now;
    const fraction = totalBytes > 0 ? Math.min(1, doneBytes / totalBytes) : 1;
    const width = Math.max(10, Math.min(40, (this.out.columns ?? 80) - 60));
    const filled = Math.round(fraction * width);
    const first = this.samples[0]!;
    const seconds = (now - first.at) / 1000;
    const rate = seconds > 0 ? (doneBytes - first.bytes) / seconds : 0;
    const line = `${this.label} [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${(fraction * 100).toFixed(0).padStart(3)}% ${formatBytes(doneBytes)}/${formatBytes(totalBytes)} ${formatBytes(rate)}/s`;
    this.out.write(`\r\x1b[2K${line}`);
  }

  finish(): void {
    this.out.write('\n');
  }
}
