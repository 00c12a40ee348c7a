/**
 * A small text sink over a Node `Writable` that respects backpressure.
 *
 * @module
 */
import { createWriteStream } from "node:fs";
import { once } from "node:events";
import type { Writable } from "node:stream";

export interface TextWriterOptions {
  /**
   * Whether {@link TextWriter.close} ends the underlying stream. Default:
   * true for a stream opened from a path and for caller-supplied streams,
   * except `process.stdout` / `process.stderr`, which are never ended.
   */
  end?: boolean;
}

/**
 * Writes strings (UTF-8) to a stream or file. `write` resolves at once while
 * the stream accepts data and waits for `'drain'` when it signals
 * backpressure, so a producer that awaits each write holds at most one
 * high-water mark of text in memory.
 */
export class TextWriter {
  readonly stream: Writable;
  private readonly shouldEnd: boolean;
  private failure: Error | null = null;
  private closed = false;

  /** @param dest a file path (created/truncated) or a writable stream */
  constructor(dest: Writable | string, options: TextWriterOptions = {}) {
    this.stream = typeof dest === "string" ? createWriteStream(dest) : dest;
    const std = this.stream === (process.stdout as unknown) || this.stream === (process.stderr as unknown);
    this.shouldEnd = std ? false : (options.end ?? true);
    this.stream.on("error", (err: Error) => {
      this.failure ??= err;
    });
  }

  /** Writes text; resolves when the stream can take more (backpressure). Rejects if the stream failed. */
  async write(text: string): Promise<void> {
    if (this.failure) throw this.failure;
    if (this.closed) throw new Error("TextWriter: write after close");
    if (this.stream.destroyed) throw new Error("TextWriter: stream destroyed");
    if (!this.stream.write(text)) {
      // `once` rejects if 'error' is emitted first.
      await once(this.stream, "drain");
    }
    if (this.failure) throw this.failure;
  }

  /** Ends the stream (see {@link TextWriterOptions.end}) and waits until its data is handed to the OS. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.failure) throw this.failure;
    if (!this.shouldEnd) {
      if (this.stream.writableNeedDrain) await once(this.stream, "drain");
      return;
    }
    await new Promise<void>((resolve, reject) => {
      this.stream.end((err?: Error | null) => (err ? reject(err) : resolve()));
    });
    if (this.failure) throw this.failure;
  }
}
