/**
 * Progress on stderr: a bar redrawn in place on a TTY, a plain line every few seconds otherwise,
 * nothing with --quiet.
 */
export class Progress {
  private readonly start = performance.now();
  private lastDraw = 0;
  private done = 0;
  private failed = 0;

  constructor(
    private readonly label: string,
    private readonly total: number | undefined,
    private readonly quiet = false,
    private readonly stream: NodeJS.WriteStream = process.stderr,
    private readonly intervalMs = stream.isTTY ? 200 : 5000,
  ) {}

  get rowsPerSecond(): number {
    const s = (performance.now() - this.start) / 1000;
    return s > 0 ? this.done / s : 0;
  }

  update(done: number, failed = this.failed): void {
    this.done = done;
    this.failed = failed;
    const now = performance.now();
    if (now - this.lastDraw >= this.intervalMs) {
      this.lastDraw = now;
      this.draw(false);
    }
  }

  finish(): void {
    this.draw(true);
  }

  private line(): string {
    const rate = this.rowsPerSecond;
    const parts = [`${this.label}: ${this.done}${this.total !== undefined ? `/${this.total}` : ""} rows`, `${rate.toFixed(1)} rows/s`];
    if (this.failed) parts.push(`${this.failed} failed`);
    if (this.total !== undefined && rate > 0 && this.done < this.total) parts.push(`ETA ${formatDuration((this.total - this.done) / rate)}`);
    return parts.join(", ");
  }

  private draw(final: boolean): void {
    if (this.quiet) return;
    if (this.stream.isTTY) {
      const width = 24;
      const frac = this.total ? Math.min(1, this.done / this.total) : 0;
      const bar = this.total ? `[${"#".repeat(Math.round(frac * width)).padEnd(width, ".")}] ` : "";
      this.stream.write(`\r\x1b[K${bar}${this.line()}${final ? "\n" : ""}`);
    } else {
      this.stream.write(`${this.line()}\n`);
    }
  }
}

export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds)) return "?";
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  return h > 0 ? `${h}h${String(m).padStart(2, "0")}m` : m > 0 ? `${m}m${String(s % 60).padStart(2, "0")}s` : `${s}s`;
}
