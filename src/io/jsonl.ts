/**
 * Streaming JSON Lines reading and writing.
 *
 * {@link readJsonl} yields one {@link JsonlRecord} per non-blank line with
 * memory bounded by `maxRecordBytes` (16 MiB by default). Lines end at LF or
 * CRLF; a UTF-8 byte order mark at the start is skipped; lines holding only
 * whitespace are skipped but counted in line numbers. A line that is not
 * valid UTF-8 is decoded as Windows-1252 and flagged `latin1` (see
 * `encoding.ts`).
 *
 * Bad lines never abort the stream; they are yielded with an `error` naming
 * the line, and `raw` holding the line's text:
 * - `line 4: invalid JSON: <parser message>`
 * - `line 5: expected a JSON object, found array` (also `string`, `number`, `boolean`, `null`)
 * - `line 6: record exceeds 16777216 bytes` (the line is skipped, not buffered; no `raw`)
 *
 * @module
 */
import type { Writable } from "node:stream";
import { decodeText } from "./encoding.js";
import { type ByteSource, LineRecordParser, parseAll, type PhysicalLine, StreamReader } from "./lines.js";
import { TextWriter, type TextWriterOptions } from "./writer.js";

/** One JSONL record: `value` when the line holds a JSON object, otherwise `error`. */
export interface JsonlRecord {
  /** 1-based physical line number. */
  line: number;
  /** 0-based index among non-blank lines. */
  index: number;
  /** The parsed object (absent when `error` is set). */
  value?: Record<string, unknown>;
  /** What is wrong with the line (`line N: problem`). */
  error?: string;
  /** The line's text, only for lines with an error (not for oversized ones). */
  raw?: string;
  /** The line was not valid UTF-8 and was decoded as Windows-1252. */
  latin1?: true;
  /** Absolute byte offset of the line's first byte. */
  byteStart: number;
  /** Absolute byte offset just past the line break (exclusive). */
  byteEnd: number;
}

export interface JsonlReadOptions {
  /** Largest line accepted, in bytes. Default 16 MiB. */
  maxRecordBytes?: number;
  /** Read size for file paths. Default 64 KiB. */
  chunkBytes?: number;
}

/**
 * Deepest nesting of objects and arrays a row may have. Deeper values are rows in error: writing
 * them back (JSON.stringify is recursive) would overflow the stack, and no prompt field nests.
 */
export const MAX_JSON_DEPTH = 64;

/** True when `value` nests objects/arrays more than `max` levels deep (measured without recursion). */
export function jsonDepthExceeds(value: unknown, max: number): boolean {
  const stack: Array<[unknown, number]> = [[value, 1]];
  while (stack.length > 0) {
    const [v, depth] = stack.pop()!;
    if (v === null || typeof v !== "object") continue;
    if (depth > max) return true;
    for (const child of Array.isArray(v) ? v : Object.values(v as Record<string, unknown>)) {
      if (child !== null && typeof child === "object") stack.push([child, depth + 1]);
    }
  }
  return false;
}

/** Describes a JSON value's kind for error messages. */
export function jsonKind(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "array";
  return typeof v;
}

const WS_ONLY = /^[ \t\r\n]*$/;

/** The synchronous JSONL machine: {@link push} bytes, {@link end}, {@link shift} records. */
export class JsonlParser extends LineRecordParser<JsonlRecord> {
  private nextIndex = 0;

  constructor(options: JsonlReadOptions = {}) {
    super(options.maxRecordBytes, "JsonlParser");
  }

  protected onLine(line: PhysicalLine): void {
    const base = { line: line.lineNo, index: 0, byteStart: line.byteStart, byteEnd: line.byteEnd };
    if (line.oversized) {
      this.out.push({ ...base, index: this.nextIndex++, error: `line ${line.lineNo}: record exceeds ${this.max} bytes` });
      return;
    }
    const { text, latin1 } = decodeText(line.buf.subarray(0, line.contentLen));
    if (WS_ONLY.test(text)) return;
    const rec: JsonlRecord = { ...base, index: this.nextIndex++ };
    if (latin1) rec.latin1 = true;
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch (err) {
      rec.error = `line ${line.lineNo}: invalid JSON: ${(err as Error).message}`;
      rec.raw = text;
      this.out.push(rec);
      return;
    }
    if (value === null || typeof value !== "object" || Array.isArray(value)) {
      rec.error = `line ${line.lineNo}: expected a JSON object, found ${jsonKind(value)}`;
      rec.raw = text;
    } else if (jsonDepthExceeds(value, MAX_JSON_DEPTH)) {
      rec.error = `line ${line.lineNo}: JSON nested deeper than ${MAX_JSON_DEPTH} levels`;
    } else {
      rec.value = value as Record<string, unknown>;
    }
    this.out.push(rec);
  }
}

/** Streaming JSONL reader (single use; breaking out of the loop closes a file opened from a path). */
export class JsonlReader extends StreamReader<JsonlRecord, JsonlParser> {
  constructor(source: ByteSource, options: JsonlReadOptions = {}) {
    super(new JsonlParser(options), source, options.chunkBytes, "JsonlReader");
  }
}

/** Opens a streaming JSONL reader. */
export function readJsonl(source: ByteSource, options: JsonlReadOptions = {}): JsonlReader {
  return new JsonlReader(source, options);
}

/** Parses a whole JSONL text or buffer synchronously. */
export function parseJsonl(input: string | Uint8Array, options: JsonlReadOptions = {}): JsonlRecord[] {
  return parseAll(new JsonlParser(options), input);
}

/**
 * One JSONL line (`JSON.stringify` plus `"\n"`). Numbers keep their
 * shortest round-trip form; as JSON has no NaN/Infinity, those become
 * `null`. Throws for values JSON cannot represent at top level (`undefined`, functions).
 */
export function formatJsonlRow(value: unknown): string {
  const s = JSON.stringify(value);
  if (s === undefined) throw new Error(`cannot write ${typeof value} as a JSON line`);
  return s + "\n";
}

/** Streaming JSONL writer with backpressure. */
export class JsonlWriter {
  private readonly out: TextWriter;

  constructor(dest: Writable | string, options: TextWriterOptions = {}) {
    this.out = new TextWriter(dest, options);
  }

  /** Writes one value as a line; resolves when the stream can take more. */
  writeRow(value: unknown): Promise<void> {
    return this.out.write(formatJsonlRow(value));
  }

  close(): Promise<void> {
    return this.out.close();
  }
}
