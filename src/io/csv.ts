/**
 * Streaming RFC 4180 CSV reading and writing.
 *
 * ## Reading
 *
 * {@link readCsv} / {@link CsvReader} parse a byte stream (file path, Node
 * `Readable`, any async iterable of chunks) into {@link CsvRecord}s with
 * memory bounded by `maxRecordBytes` (16 MiB by default), whatever the file
 * size. {@link parseCsv} does the same synchronously for a string or buffer.
 *
 * - Records end at LF or CRLF; a lone CR is ordinary data. Line breaks inside
 *   a quoted field are kept as they are in the file (CRLF stays CRLF).
 * - Fields may be quoted with `"`; a quote inside a quoted field is written
 *   `""`. The delimiter is `,` by default (`;`, `\t`, `|` or any other single
 *   ASCII character except `"`, CR and LF may be chosen).
 * - A UTF-8 byte order mark at the start of the input is skipped.
 * - Blank lines (empty, or just CR) between records are skipped; they still
 *   count in line numbers. A record that really is one empty field must be
 *   written `""` (as {@link formatCsvRow} does).
 * - The first record is the header by default (`header: true`); pass
 *   `header: false` for none or `header: [...names]` to supply the names.
 *   The header is not yielded; data records are numbered from `index` 0.
 * - Encoding: see `encoding.ts`. Each record is decoded as UTF-8 when all its
 *   bytes are valid UTF-8, otherwise as Windows-1252 and flagged
 *   `latin1: true`; files mixing both come out right record by record.
 *
 * ### Malformed input never aborts the stream
 *
 * A bad record is yielded with an `error` string naming the physical line and
 * the problem, and reading continues with the next record:
 *
 * - `line 9: expected 5 fields, found 4` (or more): field count differs from
 *   the header (or `expectedFields`, or, with `header: false`, from the first
 *   record). The fields are yielded as found.
 * - `line 3: quote in unquoted field`: a `"` inside a field that did not start
 *   with one; it is kept literally.
 * - `line 3: unexpected character after closing quote`: e.g. `"ab"c`; the
 *   rest is appended literally (`abc`).
 * - `line 17: record exceeds 16777216 bytes`: a line longer than the limit;
 *   its bytes are skipped up to the next line break, not buffered, and the
 *   record is yielded with no fields.
 * - `line 17: unterminated quoted field`: see resynchronisation below.
 *
 * ### Resynchronisation after an unterminated quote
 *
 * A stray `"` at the start of a field makes everything up to the next quote
 * one field, possibly swallowing many lines. The reader therefore treats a
 * quoted field that spans lines as suspect when its record turns out to be
 * bad, i.e. when
 * (a) the input ends inside it,
 * (b) the record grows past `maxRecordBytes` inside it,
 * (c) after it (in the same record) there is a quote error
 *     (`unexpected character after closing quote` other than a space or tab,
 *     `quote in unquoted field`), or
 * (d) the record has the wrong number of fields.
 * Then the field is declared unterminated: the record is cut at the end of
 * the physical line where that field's opening quote is (the field keeps the
 * rest of that line, line break excluded), it is yielded with
 * `line N: unterminated quoted field`, and parsing resumes on the following
 * physical line as if the stray quote had not been there. So at end of file
 * an unclosed quote costs one error record, never the rest of the file
 * silently; and in the middle of a file the lines after the stray quote are
 * recovered. A multi-line quoted field in a record that is otherwise valid is
 * never cut.
 *
 * ## Writing
 *
 * {@link formatCsvRow} formats one row (with its line break) quoting only
 * where needed; {@link CsvWriter} writes rows to a stream with backpressure.
 *
 * @module
 */
import type { Writable } from "node:stream";
import { decodeRecord } from "./encoding.js";
import { type ByteSource, LineRecordParser, parseAll, type PhysicalLine, StreamReader } from "./lines.js";
import { TextWriter, type TextWriterOptions } from "./writer.js";

export type { ByteSource } from "./lines.js";

/** One CSV record. */
export interface CsvRecord {
  /** 1-based physical line where the record starts. */
  line: number;
  /** 0-based index among data records (the header is not counted). */
  index: number;
  /** Field values, decoded. */
  fields: string[];
  /** Absolute byte offset of the record's first byte. */
  byteStart: number;
  /** Absolute byte offset just past the record's line break (exclusive). */
  byteEnd: number;
  /** The record was not valid UTF-8 and was decoded as Windows-1252. */
  latin1?: true;
  /** What is wrong with the record (`line N: problem`, several joined by `; `). */
  error?: string;
  /** The same problems, one by one, for callers that name the field in their own messages. */
  problems?: CsvProblem[];
}

/** One thing wrong with a record (see {@link CsvRecord.error}). */
export interface CsvProblem {
  /** 1-based physical line the problem is on. */
  line: number;
  /** 1-based field the problem is in; absent for whole-record problems (field count, record size). */
  column?: number;
  /** What is wrong, e.g. `unterminated quoted field`. */
  problem: string;
}

/** A problem as written in {@link CsvRecord.error}: `line N: problem`. */
function problemText(p: CsvProblem): string {
  return `line ${p.line}: ${p.problem}`;
}

export interface CsvReadOptions {
  /** Field delimiter: one ASCII character other than `"`, CR, LF. Default `,`. */
  delimiter?: string;
  /** `true` (default): the first record is the header. `false`: no header. An array: these names, no header record in the input. */
  header?: boolean | readonly string[];
  /** Expected number of fields per record (default: the header's length, or with `header: false` the first record's). */
  expectedFields?: number;
  /** Largest record accepted, in bytes. Default 16 MiB. */
  maxRecordBytes?: number;
  /** Read size for file paths. Default 64 KiB. */
  chunkBytes?: number;
}

const QUOTE = 0x22;
const FIELD_START = 0;
const UNQUOTED = 1;
const QUOTED = 2;
const AFTER_QUOTE = 3;

interface RecState {
  lines: PhysicalLine[];
  bytes: number;
  /** Finished fields, each as byte pieces. */
  fields: Buffer[][];
  /** Pieces of the field being read. */
  cur: Buffer[];
  mode: number;
  /** Index (in `lines`) of the line where the last quoted field opened. */
  quoteLine: number;
  /** Index of the opening line of the last quoted field that spanned a line break, or -1. */
  lastMultiQ: number;
  errors: CsvProblem[];
  /** An error was seen after a multi-line quoted field opened. */
  suspect: boolean;
}

function newRec(line: PhysicalLine): RecState {
  return { lines: [line], bytes: line.buf.length, fields: [], cur: [], mode: FIELD_START, quoteLine: -1, lastMultiQ: -1, errors: [], suspect: false };
}

/** Closes the field being read. */
function endField(rec: RecState): void {
  rec.fields.push(rec.cur);
  rec.cur = [];
}

/** Closes the record's last field: the record ends with this line (returns true, as {@link CsvParser.scan} does then). */
function endRecord(rec: RecState): true {
  endField(rec);
  rec.mode = FIELD_START;
  return true;
}

/** Checks and converts a delimiter option to its byte. */
export function delimiterByte(delimiter: string | undefined): number {
  const d = delimiter ?? ",";
  if (d.length !== 1 || d.charCodeAt(0) > 0x7f || d === '"' || d === "\r" || d === "\n") {
    throw new Error(`CSV delimiter must be one ASCII character other than '"', CR, LF; got ${JSON.stringify(d)}`);
  }
  return d.charCodeAt(0);
}

/**
 * The synchronous CSV state machine behind {@link CsvReader} and
 * {@link parseCsv}: feed bytes with {@link push}, then {@link end}; take
 * records with {@link shift}.
 */
export class CsvParser extends LineRecordParser<CsvRecord> {
  /** Column names, once known (after the header record, or from options). */
  header: string[] | null = null;
  /** The header record as read (for its `line`, `error`, `latin1`); null when there is none or it is not read yet. */
  headerRecord: CsvRecord | null = null;
  /** True once {@link header} is final (read, given, absent, or end of input). */
  headerKnown: boolean;

  private readonly delim: number;
  private readonly wantHeader: boolean;
  private expected: number | null;
  private queue: PhysicalLine[] = [];
  private qHead = 0;
  private rec: RecState | null = null;
  private nextIndex = 0;

  constructor(options: CsvReadOptions = {}) {
    const delim = delimiterByte(options.delimiter);
    super(options.maxRecordBytes, "CsvParser");
    this.delim = delim;
    const h = options.header ?? true;
    this.wantHeader = h === true;
    if (Array.isArray(h)) this.header = [...(h as readonly string[])];
    this.headerKnown = !this.wantHeader;
    this.expected = options.expectedFields ?? (this.header ? this.header.length : null);
  }

  protected onLine(line: PhysicalLine): void {
    this.queue.push(line);
  }

  protected override afterLines(final: boolean): void {
    this.drain();
    if (!final) return;
    while (this.rec) {
      // Input ended inside a quoted field.
      this.resync(this.rec, this.rec.quoteLine, "");
      this.drain();
    }
    this.headerKnown = true;
  }

  private drain(): void {
    while (this.qHead < this.queue.length) {
      const line = this.queue[this.qHead++];
      this.consume(line);
    }
    this.queue = [];
    this.qHead = 0;
  }

  private consume(line: PhysicalLine): void {
    let rec = this.rec;
    if (!rec) {
      if (line.oversized) {
        const problem: CsvProblem = { line: line.lineNo, problem: `record exceeds ${this.max} bytes` };
        this.emit({ line: line.lineNo, index: 0, fields: [], byteStart: line.byteStart, byteEnd: line.byteEnd, error: problemText(problem), problems: [problem] }, false);
        return;
      }
      if (line.contentLen === 0) return; // blank line
      rec = this.rec = newRec(line);
    } else {
      if (line.oversized || rec.bytes + line.buf.length > this.max) {
        // The record is too large inside a quoted field: put the line back and cut the record.
        this.qHead--;
        this.resync(rec, rec.quoteLine, ` (record exceeds ${this.max} bytes)`);
        return;
      }
      rec.lines.push(line);
      rec.bytes += line.buf.length;
    }
    if (this.scan(rec, line, rec.lines.length - 1, null)) this.finish(rec, false);
  }

  private addError(rec: RecState, lineNo: number, column: number, problem: string, suspicious = true): void {
    if (!rec.errors.some((e) => e.line === lineNo && e.problem === problem)) rec.errors.push({ line: lineNo, column, problem });
    if (suspicious && rec.lastMultiQ >= 0) rec.suspect = true;
  }

  /**
   * Runs the state machine over one line's content. Returns true when the
   * record ends with this line. With `forceNote` non-null, a quoted field
   * still open at the end of the line is closed there and reported as
   * unterminated.
   */
  private scan(rec: RecState, line: PhysicalLine, idx: number, forceNote: string | null): boolean {
    const buf = line.buf;
    const n = line.contentLen;
    const d = this.delim;
    let mode = rec.mode;
    let i = 0;
    let seg = 0;
    let nextQ = -1;
    for (;;) {
      if (mode === FIELD_START) {
        if (i >= n) return endRecord(rec);
        const b = buf[i];
        if (b === QUOTE) {
          mode = QUOTED;
          rec.quoteLine = idx;
          seg = ++i;
        } else if (b === d) {
          endField(rec);
          i++;
        } else {
          mode = UNQUOTED;
          seg = i;
        }
      } else if (mode === UNQUOTED) {
        let e = buf.indexOf(d, i);
        if (e < 0 || e > n) e = n;
        if (nextQ < i) {
          nextQ = buf.indexOf(QUOTE, i);
          if (nextQ < 0 || nextQ > n) nextQ = n;
        }
        if (nextQ < e) this.addError(rec, line.lineNo, rec.fields.length + 1, "quote in unquoted field");
        if (e > seg) rec.cur.push(buf.subarray(seg, e));
        if (e >= n) return endRecord(rec);
        endField(rec);
        i = e + 1;
        mode = FIELD_START;
      } else if (mode === QUOTED) {
        const q = buf.indexOf(QUOTE, i);
        if (q < 0 || q >= n) {
          if (forceNote !== null) {
            if (n > seg) rec.cur.push(buf.subarray(seg, n));
            endRecord(rec);
            this.addError(rec, rec.lines[rec.quoteLine].lineNo, rec.fields.length, `unterminated quoted field${forceNote}`);
            return true;
          }
          if (buf.length > seg) rec.cur.push(buf.subarray(seg));
          rec.mode = QUOTED;
          rec.lastMultiQ = rec.quoteLine;
          return false;
        }
        if (q > seg) rec.cur.push(buf.subarray(seg, q));
        i = q + 1;
        nextQ = -1;
        mode = AFTER_QUOTE;
      } else {
        // AFTER_QUOTE
        if (i >= n) return endRecord(rec);
        const b = buf[i];
        if (b === QUOTE) {
          seg = i; // escaped quote: the next piece starts with this '"'
          i++;
          mode = QUOTED;
        } else if (b === d) {
          endField(rec);
          i++;
          mode = FIELD_START;
        } else {
          // Spaces after a closing quote are sloppy but not a sign of a stray quote.
          this.addError(rec, line.lineNo, rec.fields.length + 1, "unexpected character after closing quote", b !== 0x20 && b !== 0x09);
          mode = UNQUOTED;
          seg = i;
        }
      }
    }
  }

  /**
   * Cuts `rec` at the end of its line `cut` (closing the quoted field open
   * there), emits it, and re-queues the following lines for normal parsing.
   */
  private resync(rec: RecState, cut: number, note: string): void {
    const lines = rec.lines;
    this.rec = null;
    const r = newRec(lines[0]);
    for (let k = 0; k <= cut; k++) {
      if (k > 0) {
        r.lines.push(lines[k]);
        r.bytes += lines[k].buf.length;
      }
      this.scan(r, lines[k], k, k === cut ? note : null);
    }
    this.finish(r, true);
    if (cut + 1 < lines.length) {
      this.queue = lines.slice(cut + 1).concat(this.queue.slice(this.qHead));
      this.qHead = 0;
    }
  }

  private finish(rec: RecState, forced: boolean): void {
    this.rec = null;
    const first = rec.lines[0];
    const isHeader = this.wantHeader && !this.headerKnown;
    let countErr = false;
    const nFields = rec.fields.length;
    if (!isHeader && this.expected !== null && nFields !== this.expected) countErr = true;
    if (!forced && rec.lastMultiQ >= 0 && (rec.suspect || countErr)) {
      this.resync(rec, rec.lastMultiQ, "");
      return;
    }
    if (countErr) rec.errors.push({ line: first.lineNo, problem: `expected ${this.expected} fields, found ${nFields}` });
    const bufs = rec.fields.map((pieces) => (pieces.length === 1 ? pieces[0] : Buffer.concat(pieces)));
    const { values, latin1 } = decodeRecord(bufs);
    const out: CsvRecord = {
      line: first.lineNo,
      index: 0,
      fields: values,
      byteStart: first.byteStart,
      byteEnd: rec.lines[rec.lines.length - 1].byteEnd,
    };
    if (latin1) out.latin1 = true;
    if (rec.errors.length > 0) {
      out.error = rec.errors.map(problemText).join("; ");
      out.problems = rec.errors;
    }
    this.emit(out, isHeader);
  }

  private emit(rec: CsvRecord, isHeader: boolean): void {
    if (!isHeader && this.wantHeader && !this.headerKnown) isHeader = true; // an oversized first record is the (broken) header
    if (isHeader) {
      rec.index = -1;
      this.header = rec.fields;
      this.headerRecord = rec;
      this.headerKnown = true;
      if (this.expected === null) this.expected = rec.fields.length;
      return;
    }
    if (this.expected === null) this.expected = rec.fields.length;
    rec.index = this.nextIndex++;
    this.out.push(rec);
  }
}

/**
 * Streaming CSV reader: `for await (const rec of readCsv(path)) ...`.
 * Single use. Breaking out of the loop closes a file opened from a path (and
 * destroys a `Readable` source, as `for await` over it does).
 */
export class CsvReader extends StreamReader<CsvRecord, CsvParser> {
  private nameIndex: Map<string, number> | null = null;

  constructor(source: ByteSource, options: CsvReadOptions = {}) {
    super(new CsvParser(options), source, options.chunkBytes, "CsvReader");
  }

  /** Column names once known (see {@link readHeader}); null before, or when there is no header. */
  get header(): string[] | null {
    return this.parser.header;
  }

  /** The header record as read (line, error, latin1), or null. */
  get headerRecord(): CsvRecord | null {
    return this.parser.headerRecord;
  }

  /** Reads as far as needed to know the header and returns it (null for `header: false`, or an empty input). */
  async readHeader(): Promise<string[] | null> {
    while (!this.parser.headerKnown && !this.done) await this.pull();
    return this.parser.header;
  }

  /** The value of column `name` in a record (first column of that name), or undefined when the record lacks it. */
  get(record: CsvRecord, name: string): string | undefined {
    const i = this.columnIndex(name);
    return i < 0 ? undefined : record.fields[i];
  }

  /** 0-based position of column `name` in the header, or -1. */
  columnIndex(name: string): number {
    const header = this.parser.header;
    if (!header) return -1;
    if (!this.nameIndex || this.nameIndex.size === 0) {
      this.nameIndex = new Map();
      header.forEach((h, i) => {
        if (!this.nameIndex!.has(h)) this.nameIndex!.set(h, i);
      });
    }
    return this.nameIndex.get(name) ?? -1;
  }

  /** The record as an object keyed by header names (see {@link csvRecordToObject}). */
  toObject(record: CsvRecord): Record<string, string> {
    return csvRecordToObject(this.parser.header ?? [], record);
  }
}

/** Opens a streaming CSV reader (see the module documentation). */
export function readCsv(source: ByteSource, options: CsvReadOptions = {}): CsvReader {
  return new CsvReader(source, options);
}

/** Parses a whole CSV text or buffer synchronously (for small inputs and tests). */
export function parseCsv(input: string | Uint8Array, options: CsvReadOptions = {}): { header: string[] | null; headerRecord: CsvRecord | null; records: CsvRecord[] } {
  const p = new CsvParser(options);
  const records = parseAll(p, input);
  return { header: p.header, headerRecord: p.headerRecord, records };
}

/**
 * A record as an object keyed by column name. Missing fields are absent
 * from the object; extra fields (beyond the header) are left out; with
 * duplicate column names the first column wins.
 */
export function csvRecordToObject(header: readonly string[], record: CsvRecord): Record<string, string> {
  const obj: Record<string, string> = {};
  const n = Math.min(header.length, record.fields.length);
  for (let i = 0; i < n; i++) {
    if (!Object.prototype.hasOwnProperty.call(obj, header[i])) obj[header[i]] = record.fields[i];
  }
  return obj;
}

// ---------------------------------------------------------------- writing

/** A value in a written row. `null`/`undefined` are written as empty fields. */
export type CsvValue = string | number | bigint | boolean | null | undefined;

export interface CsvFormatOptions {
  /** Field delimiter. Default `,`. */
  delimiter?: string;
  /** Line break appended to each row. Default `"\n"`. */
  eol?: string;
}

const needsQuoteCache = new Map<number, RegExp>();
function needsQuoteRe(d: number): RegExp {
  let re = needsQuoteCache.get(d);
  if (!re) {
    const esc = String.fromCharCode(d).replace(/[\\^$.*+?()[\]{}|/-]/g, "\\$&");
    re = new RegExp(`["\\r\\n]|${esc}|^[ \\t]|[ \\t]$`);
    needsQuoteCache.set(d, re);
  }
  return re;
}

/**
 * Formats a number so that `Number(text)` gives it back exactly: the
 * shortest round-trip representation (`Number.prototype.toString`), with
 * `-0` kept as `-0`, and `NaN`, `Infinity`, `-Infinity` spelled that way.
 */
export function formatNumber(n: number): string {
  if (n === 0 && Object.is(n, -0)) return "-0";
  return String(n);
}

/** Formats one field, quoting only when needed. */
export function formatCsvField(value: CsvValue, delimiter: string = ","): string {
  if (value === null || value === undefined) return "";
  if (typeof value === "number") return formatNumber(value);
  if (typeof value !== "string") return String(value);
  if (value.length === 0) return "";
  if (!needsQuoteRe(delimiterByte(delimiter)).test(value)) return value;
  return `"${value.replace(/"/g, '""')}"`;
}

/**
 * Formats one CSV row including its line break (`"\n"` unless `eol` says
 * otherwise). A field is quoted only when it contains the delimiter, `"`,
 * CR or LF, or starts or ends with a space or tab. A row made of one empty
 * field is written `""` so that it is not read back as a blank line.
 */
export function formatCsvRow(fields: readonly CsvValue[], options: CsvFormatOptions = {}): string {
  const delimiter = options.delimiter ?? ",";
  const eol = options.eol ?? "\n";
  if (fields.length === 1) {
    const f = formatCsvField(fields[0], delimiter);
    return (f === "" ? '""' : f) + eol;
  }
  let s = "";
  for (let i = 0; i < fields.length; i++) {
    if (i > 0) s += delimiter;
    s += formatCsvField(fields[i], delimiter);
  }
  return s + eol;
}

/** Streaming CSV writer with backpressure: `await w.writeRow([...])`, then `await w.close()`. */
export class CsvWriter {
  private readonly out: TextWriter;
  private readonly format: CsvFormatOptions;

  constructor(dest: Writable | string, options: CsvFormatOptions & TextWriterOptions = {}) {
    delimiterByte(options.delimiter);
    this.out = new TextWriter(dest, options);
    this.format = { delimiter: options.delimiter, eol: options.eol };
  }

  /** Writes one row; resolves when the stream can take more. */
  writeRow(fields: readonly CsvValue[]): Promise<void> {
    return this.out.write(formatCsvRow(fields, this.format));
  }

  /** Writes already formatted text (e.g. several rows). */
  writeText(text: string): Promise<void> {
    return this.out.write(text);
  }

  /** Finishes writing (see {@link TextWriterOptions.end}). */
  close(): Promise<void> {
    return this.out.close();
  }
}
