/**
 * Byte-level plumbing shared by the CSV and JSONL readers: turning a source
 * (file path, Node Readable, any async iterable of chunks) into Buffers, and
 * splitting a byte stream into physical lines with bounded memory.
 *
 * @module
 */
import { createReadStream } from "node:fs";

/** Where bytes come from: a file path, or any async iterable of chunks (a Node `Readable` is one). */
export type ByteSource = string | AsyncIterable<Uint8Array | string>;

/** Default read size for file sources. */
export const DEFAULT_CHUNK_BYTES = 64 * 1024;

/** Default limit on one record (CSV record, JSONL line): 16 MiB. */
export const DEFAULT_MAX_RECORD_BYTES = 16 * 1024 * 1024;

/**
 * Iterates a {@link ByteSource} as Buffers. A path is opened with
 * `fs.createReadStream` and closed when iteration ends or is abandoned.
 * String chunks (a stream with `setEncoding`) are re-encoded as UTF-8.
 */
export async function* byteChunks(source: ByteSource, chunkBytes: number = DEFAULT_CHUNK_BYTES): AsyncGenerator<Buffer, void, undefined> {
  if (typeof source === "string") {
    const stream = createReadStream(source, { highWaterMark: chunkBytes });
    try {
      for await (const chunk of stream) yield chunk as Buffer;
    } finally {
      stream.destroy();
    }
    return;
  }
  for await (const chunk of source) {
    if (typeof chunk === "string") yield Buffer.from(chunk, "utf8");
    else if (Buffer.isBuffer(chunk)) yield chunk;
    else yield Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
  }
}

/** One physical line of input. */
export interface PhysicalLine {
  /** The line's bytes including its terminator (LF or CRLF; the last line of a file may have none). Empty when {@link oversized}. */
  buf: Buffer;
  /** Number of content bytes (terminator excluded). */
  contentLen: number;
  /** 1-based physical line number. */
  lineNo: number;
  /** Absolute byte offset of the first byte of the line (a leading BOM is before it). */
  byteStart: number;
  /** Absolute byte offset just past the line terminator (exclusive). */
  byteEnd: number;
  /** The line's content was longer than the limit and was discarded, not buffered. */
  oversized?: true;
}

const LF = 0x0a;
const CR = 0x0d;

/**
 * Splits a byte stream into {@link PhysicalLine}s. Lines end at LF; a CR
 * immediately before the LF belongs to the terminator (CRLF); a lone CR is
 * data. A final line without terminator is emitted by {@link end} (a
 * trailing lone CR there counts as its terminator). A UTF-8 byte order mark
 * at the very start is skipped (offsets still count it).
 *
 * Memory is bounded: a line whose content exceeds `maxLineBytes` is not
 * buffered; its bytes are dropped up to the next LF and it is emitted once
 * as an `oversized` line with an empty `buf`.
 */
export class LineSplitter {
  private pending: Buffer[] = [];
  private pendingLen = 0;
  private discarding = false;
  private offset = 0; // absolute offset of the next byte to arrive
  private lineStart = 0; // absolute offset where the current (partial) line starts
  private lineNo = 0;
  private bomChecked = false;
  private bomHead: Buffer | null = null;
  private ended = false;

  constructor(
    private readonly maxLineBytes: number,
    private readonly onLine: (line: PhysicalLine) => void,
  ) {}

  /** Feeds the next chunk of bytes. */
  push(chunk: Buffer): void {
    if (this.ended) throw new Error("LineSplitter: push after end");
    if (chunk.length === 0) return;
    if (!this.bomChecked) {
      const head = this.bomHead ? Buffer.concat([this.bomHead, chunk]) : chunk;
      if (head.length < 3 && head[0] === 0xef && (head.length < 2 || head[1] === 0xbb)) {
        this.bomHead = head; // could still be a BOM: wait for more bytes
        return;
      }
      this.bomHead = null;
      this.bomChecked = true;
      chunk = head;
      if (head.length >= 3 && head[0] === 0xef && head[1] === 0xbb && head[2] === 0xbf) {
        this.offset = 3;
        this.lineStart = 3;
        chunk = head.subarray(3);
      }
    }
    const base = this.offset;
    this.offset += chunk.length;
    let pos = 0;
    while (pos < chunk.length) {
      const lf = chunk.indexOf(LF, pos);
      if (lf < 0) {
        this.appendPartial(chunk.subarray(pos));
        return;
      }
      const piece = chunk.subarray(pos, lf + 1);
      pos = lf + 1;
      const end = base + pos;
      if (this.discarding) {
        this.discarding = false;
        this.emitOversized(end);
      } else if (this.pendingLen > 0) {
        this.pending.push(piece);
        const buf = Buffer.concat(this.pending, this.pendingLen + piece.length);
        this.pending = [];
        this.pendingLen = 0;
        this.emit(buf, end);
      } else {
        this.emit(piece, end);
      }
    }
  }

  /** Signals end of input: emits the last line if it has no terminator. */
  end(): void {
    if (this.ended) return;
    this.ended = true;
    if (this.bomHead) {
      const head = this.bomHead;
      this.bomHead = null;
      this.bomChecked = true;
      this.ended = false;
      this.push(head);
      this.ended = true;
    }
    if (this.discarding) {
      this.discarding = false;
      this.emitOversized(this.offset);
    } else if (this.pendingLen > 0) {
      const buf = Buffer.concat(this.pending, this.pendingLen);
      this.pending = [];
      this.pendingLen = 0;
      this.emit(buf, this.offset);
    }
  }

  private appendPartial(part: Buffer): void {
    if (this.discarding) return;
    // Content so far is at least pendingLen + part.length - 1 (a trailing CR may be a terminator).
    if (this.pendingLen + part.length - 1 > this.maxLineBytes) {
      this.pending = [];
      this.pendingLen = 0;
      this.discarding = true;
      return;
    }
    // Copy: the chunk may be a view on a pooled or reused buffer.
    this.pending.push(Buffer.from(part));
    this.pendingLen += part.length;
  }

  private emit(buf: Buffer, end: number): void {
    let contentLen = buf.length;
    if (contentLen > 0 && buf[contentLen - 1] === LF) {
      contentLen--;
      if (contentLen > 0 && buf[contentLen - 1] === CR) contentLen--;
    } else if (contentLen > 0 && buf[contentLen - 1] === CR && this.ended) {
      contentLen--;
    }
    const start = this.lineStart;
    this.lineStart = end;
    this.lineNo++;
    if (contentLen > this.maxLineBytes) {
      this.onLine({ buf: EMPTY, contentLen: 0, lineNo: this.lineNo, byteStart: start, byteEnd: end, oversized: true });
      return;
    }
    this.onLine({ buf, contentLen, lineNo: this.lineNo, byteStart: start, byteEnd: end });
  }

  private emitOversized(end: number): void {
    const start = this.lineStart;
    this.lineStart = end;
    this.lineNo++;
    this.onLine({ buf: EMPTY, contentLen: 0, lineNo: this.lineNo, byteStart: start, byteEnd: end, oversized: true });
  }
}

const EMPTY = Buffer.alloc(0);

/** Checks a `maxRecordBytes` option and returns the limit (default {@link DEFAULT_MAX_RECORD_BYTES}). */
function recordLimit(maxRecordBytes: number | undefined): number {
  const max = maxRecordBytes ?? DEFAULT_MAX_RECORD_BYTES;
  if (!(max > 0)) throw new Error("maxRecordBytes must be positive");
  return max;
}

/** A chunk as a Buffer over the same memory (no copy). */
function asBuffer(chunk: Uint8Array): Buffer {
  return Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
}

/** The synchronous machine behind a streaming reader: feed bytes with `push`, then `end`; take records with `shift`. */
export interface ChunkParser<R> {
  push(chunk: Uint8Array): void;
  end(): void;
  /** Next parsed record, or undefined when none is ready. */
  shift(): R | undefined;
}

/** Parsed records waiting to be shifted, first in first out; the storage is dropped whenever it empties. */
class RecordQueue<R> {
  private items: R[] = [];
  private head = 0;

  push(record: R): void {
    this.items.push(record);
  }

  shift(): R | undefined {
    if (this.head >= this.items.length) return undefined;
    const r = this.items[this.head++];
    if (this.head === this.items.length) {
      this.items = [];
      this.head = 0;
    }
    return r;
  }
}

/**
 * What the CSV and JSONL parsers share: the record size limit, a
 * {@link LineSplitter} fed by {@link push} and {@link end} that hands each
 * physical line to {@link onLine}, and the queue of parsed records that
 * {@link shift} takes from.
 */
export abstract class LineRecordParser<R> implements ChunkParser<R> {
  /** Largest record accepted, in bytes. */
  protected readonly max: number;
  /** Parsed records, in order. */
  protected readonly out = new RecordQueue<R>();
  private readonly splitter: LineSplitter;
  private ended = false;

  /** `name` is the parser's, for the error on a push after the end. */
  protected constructor(
    maxRecordBytes: number | undefined,
    private readonly name: string,
  ) {
    this.max = recordLimit(maxRecordBytes);
    this.splitter = new LineSplitter(this.max, (line) => this.onLine(line));
  }

  /** Takes one physical line of input. */
  protected abstract onLine(line: PhysicalLine): void;

  /** Runs after the lines of each pushed chunk, and once more (`final`) after the last line. */
  protected afterLines(_final: boolean): void {}

  /** Feeds bytes. Chunks must not be modified afterwards (records may reference them). */
  push(chunk: Uint8Array): void {
    if (this.ended) throw new Error(`${this.name}: push after end`);
    this.splitter.push(asBuffer(chunk));
    this.afterLines(false);
  }

  /** Signals end of input; pending records become available. */
  end(): void {
    if (this.ended) return;
    this.ended = true;
    this.splitter.end();
    this.afterLines(true);
  }

  /** Next parsed record, or undefined when none is ready. */
  shift(): R | undefined {
    return this.out.shift();
  }
}

/** Runs `parser` over a whole text (as UTF-8) or buffer and returns every record. */
export function parseAll<R>(parser: ChunkParser<R>, input: string | Uint8Array): R[] {
  parser.push(typeof input === "string" ? Buffer.from(input, "utf8") : input);
  parser.end();
  const out: R[] = [];
  for (let r = parser.shift(); r; r = parser.shift()) out.push(r);
  return out;
}

/**
 * A streaming reader: `for await (const rec of reader) ...` reads chunks of
 * `source` into `parser` as records are wanted. Single use. Breaking out of
 * the loop closes a file opened from a path (and destroys a `Readable`
 * source, as `for await` over it does).
 */
export class StreamReader<R, P extends ChunkParser<R>> implements AsyncIterable<R> {
  private readonly chunks: AsyncGenerator<Buffer, void, undefined>;
  /** The source is exhausted (or abandoned) and the parser ended. */
  protected done = false;
  private iterated = false;

  /** `name` is the reader's, for the error on a second iteration. */
  protected constructor(
    protected readonly parser: P,
    source: ByteSource,
    chunkBytes: number | undefined,
    private readonly name: string,
  ) {
    this.chunks = byteChunks(source, chunkBytes ?? DEFAULT_CHUNK_BYTES);
  }

  /** Feeds the parser the next chunk, or ends it at the end of the source. */
  protected async pull(): Promise<void> {
    const r = await this.chunks.next();
    if (r.done) {
      this.done = true;
      this.parser.end();
    } else {
      this.parser.push(r.value);
    }
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<R, void, undefined> {
    if (this.iterated) throw new Error(`${this.name} can be iterated only once`);
    this.iterated = true;
    try {
      for (;;) {
        const rec = this.parser.shift();
        if (rec) {
          yield rec;
          continue;
        }
        if (this.done) return;
        await this.pull();
      }
    } finally {
      if (!this.done) {
        this.done = true;
        await this.chunks.return(undefined);
      }
    }
  }
}
