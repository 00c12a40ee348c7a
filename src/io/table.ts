/**
 * Format-agnostic row input for the batch and eval commands.
 *
 * {@link openRows} opens a CSV, JSONL or JSON-array file (or stdin, `"-"`)
 * and yields {@link Row}s in input order: `values` keyed by column name,
 * `index` (0-based record index, the key for resuming), `line` (1-based line
 * where the record starts) and `error` for a record that could not be read
 * properly. Bad records never stop the iteration.
 *
 * - CSV / TSV: streaming, see `csv.ts`. `values` holds the header's columns
 *   present in the record (strings); `fields` holds all fields as read. With
 *   `header: false` the keys are `"0"`, `"1"`, ....
 * - JSONL: streaming, see `jsonl.ts`. `values` is the line's object (`{}`
 *   when the line has an error).
 * - JSON (`.json`): one array of objects, TALLRec's data format
 *   (`[{"instruction": ..., "input": ..., "output": ...}, ...]`), read whole.
 *   Each element is parsed on its own, so a bad element yields a row with
 *   `error` (`element 3 (line 12): invalid JSON: ...` or
 *   `element 3 (line 12): expected a JSON object, found string`) and the
 *   other elements are still read; `index` is the element's position. A file
 *   that is not an array at all (no `[`, no closing `]`, data after it) is
 *   rejected by `openRows` before any row is produced.
 *
 * The format comes from `options.format`, else from the extension (`.csv`,
 * `.tsv`/`.tab` (tab-delimited), `.jsonl`/`.ndjson`/`.jsonlines`, `.json`),
 * else (stdin, other extensions) it is sniffed from the first significant
 * byte: `[` → json, `{` → jsonl, anything else → csv.
 *
 * @module
 */
import { stat } from "node:fs/promises";
import { extname } from "node:path";
import { CsvReader, csvRecordToObject, type CsvRecord } from "./csv.js";
import { decodeText } from "./encoding.js";
import { jsonDepthExceeds, JsonlReader, jsonKind, MAX_JSON_DEPTH } from "./jsonl.js";
import { byteChunks, DEFAULT_MAX_RECORD_BYTES } from "./lines.js";

export type RowFormat = "csv" | "jsonl" | "json";

/** One input record. */
export interface Row {
  /** 0-based record index (data records; for JSON the array position). */
  index: number;
  /** 1-based line where the record starts. */
  line: number;
  /** Column values: strings for CSV, any JSON value for JSON/JSONL. */
  values: Record<string, unknown>;
  /** What is wrong with the record; the row is still yielded. */
  error?: string;
  /** The record was not valid UTF-8 and was decoded as Windows-1252. */
  latin1?: true;
  /** CSV only: all fields as read (including any beyond the header). */
  fields?: string[];
}

export interface OpenRowsOptions {
  /** Input format; by default from the extension, or sniffed (stdin, unknown extension). */
  format?: RowFormat;
  /** CSV delimiter; default `,` (tab for `.tsv`/`.tab`). */
  delimiter?: string;
  /** CSV header handling (see `CsvReadOptions.header`). Default true. */
  header?: boolean | readonly string[];
  /** Largest record accepted (CSV, JSONL). Default 16 MiB. */
  maxRecordBytes?: number;
  /** What `"-"` reads. Default `process.stdin`. */
  stdin?: AsyncIterable<Uint8Array | string>;
}

/** An opened input: iterate it once for rows. */
export interface RowSource extends AsyncIterable<Row> {
  readonly path: string;
  readonly format: RowFormat;
  /** The CSV delimiter in use (`undefined` for JSON formats). */
  readonly delimiter: string | undefined;
  /**
   * Column names: the CSV header (`[]` with `header: false`); for JSON the keys of all elements in order
   * of first appearance; for JSONL the keys of the first object (reads ahead
   * at most 1000 records to find it; they are still yielded).
   */
  columns(): Promise<string[]>;
  /** Stops reading and closes the input. */
  close(): Promise<void>;
}

const EXT_FORMAT: Record<string, { format: RowFormat; delimiter?: string }> = {
  ".csv": { format: "csv" },
  ".tsv": { format: "csv", delimiter: "\t" },
  ".tab": { format: "csv", delimiter: "\t" },
  ".jsonl": { format: "jsonl" },
  ".ndjson": { format: "jsonl" },
  ".jsonlines": { format: "jsonl" },
  ".json": { format: "json" },
};

/** Format and default delimiter implied by a file name, or null when the extension says nothing. */
export function formatFromPath(path: string): { format: RowFormat; delimiter?: string } | null {
  if (path === "-") return null;
  return EXT_FORMAT[extname(path).toLowerCase()] ?? null;
}

/** Format implied by the first significant byte of the input (after a BOM and whitespace), or null if there is none yet. */
export function sniffFormat(head: Uint8Array): RowFormat | null {
  let i = head.length >= 3 && head[0] === 0xef && head[1] === 0xbb && head[2] === 0xbf ? 3 : 0;
  while (i < head.length && (head[i] === 0x20 || head[i] === 0x09 || head[i] === 0x0a || head[i] === 0x0d)) i++;
  if (i >= head.length) return null;
  return head[i] === 0x5b ? "json" : head[i] === 0x7b ? "jsonl" : "csv";
}

/**
 * Opens `pathOrDash` for reading rows (see the module documentation).
 * Rejects when the file cannot be opened or, for `.json`, is not an array.
 */
export async function openRows(pathOrDash: string, options: OpenRowsOptions = {}): Promise<RowSource> {
  const fromExt = formatFromPath(pathOrDash);
  let format = options.format ?? fromExt?.format;
  let source: AsyncIterable<Buffer>;
  const chunks = pathOrDash === "-" ? byteChunks(options.stdin ?? (process.stdin as AsyncIterable<Buffer>)) : byteChunks(pathOrDash);
  if (pathOrDash !== "-") {
    const st = await stat(pathOrDash); // fail early (ENOENT, EISDIR)
    if (st.isDirectory()) throw new Error(`${pathOrDash}: is a directory`);
  }
  if (format === undefined) {
    const head: Buffer[] = [];
    let total = 0;
    let sniffed: RowFormat | null = null;
    for (;;) {
      const r = await chunks.next();
      if (r.done) break;
      head.push(r.value);
      total += r.value.length;
      sniffed = sniffFormat(Buffer.concat(head, total));
      if (sniffed) break;
    }
    format = sniffed ?? "csv";
    source = (async function* () {
      yield* head;
      yield* chunks;
    })();
  } else {
    source = chunks;
  }
  const where = pathOrDash === "-" ? "<stdin>" : pathOrDash;
  if (format === "json") {
    const parts: Buffer[] = [];
    for await (const c of source) parts.push(c);
    const rows = parseJsonArrayRows(Buffer.concat(parts), where);
    return new JsonArraySource(pathOrDash, rows);
  }
  if (format === "csv") {
    const delimiter = options.delimiter ?? fromExt?.delimiter ?? ",";
    const reader = new CsvReader(source, {
      delimiter,
      header: options.header ?? true,
      maxRecordBytes: options.maxRecordBytes ?? DEFAULT_MAX_RECORD_BYTES,
    });
    return new StreamSource(pathOrDash, "csv", delimiter, csvRows(reader), async () => (await reader.readHeader()) ?? []);
  }
  const reader = new JsonlReader(source, { maxRecordBytes: options.maxRecordBytes ?? DEFAULT_MAX_RECORD_BYTES });
  return new StreamSource(pathOrDash, "jsonl", undefined, jsonlRows(reader), async (self) => {
    const first = await self.peekUntil((r) => r.error === undefined, 1000);
    return first ? Object.keys(first.values) : [];
  });
}

async function* csvRows(reader: CsvReader): AsyncGenerator<Row, void, undefined> {
  for await (const rec of reader) yield csvRow(rec, reader.header);
}

function csvRow(rec: CsvRecord, header: readonly string[] | null): Row {
  let values: Record<string, unknown>;
  if (header) values = csvRecordToObject(header, rec);
  else {
    values = {};
    rec.fields.forEach((f, i) => (values[String(i)] = f));
  }
  const row: Row = { index: rec.index, line: rec.line, values, fields: rec.fields };
  if (rec.error !== undefined) row.error = rec.error;
  if (rec.latin1) row.latin1 = true;
  return row;
}

async function* jsonlRows(reader: JsonlReader): AsyncGenerator<Row, void, undefined> {
  for await (const rec of reader) {
    const row: Row = { index: rec.index, line: rec.line, values: rec.value ?? {} };
    if (rec.error !== undefined) row.error = rec.error;
    if (rec.latin1) row.latin1 = true;
    yield row;
  }
}

class StreamSource implements RowSource {
  private peeked: Row[] = [];
  private iterated = false;
  private finished = false;

  constructor(
    readonly path: string,
    readonly format: RowFormat,
    readonly delimiter: string | undefined,
    private readonly gen: AsyncGenerator<Row, void, undefined>,
    private readonly columnsFn: (self: StreamSource) => Promise<string[]>,
  ) {}

  columns(): Promise<string[]> {
    return this.columnsFn(this);
  }

  /** Reads ahead (keeping the rows for iteration) until `pred` holds or `limit` rows are buffered. */
  async peekUntil(pred: (r: Row) => boolean, limit: number): Promise<Row | undefined> {
    const hit = this.peeked.find(pred);
    if (hit) return hit;
    while (!this.finished && this.peeked.length < limit) {
      const r = await this.gen.next();
      if (r.done) {
        this.finished = true;
        break;
      }
      this.peeked.push(r.value);
      if (pred(r.value)) return r.value;
    }
    return undefined;
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<Row, void, undefined> {
    if (this.iterated) throw new Error("a RowSource can be iterated only once");
    this.iterated = true;
    try {
      while (this.peeked.length > 0) yield this.peeked.shift()!;
      if (!this.finished) yield* this.gen;
      this.finished = true;
    } finally {
      if (!this.finished) await this.close();
    }
  }

  async close(): Promise<void> {
    this.finished = true;
    this.peeked = [];
    await this.gen.return(undefined);
  }
}

class JsonArraySource implements RowSource {
  readonly format = "json" as const;
  readonly delimiter = undefined;
  private iterated = false;

  constructor(
    readonly path: string,
    private rows: Row[],
  ) {}

  async columns(): Promise<string[]> {
    const seen = new Set<string>();
    for (const r of this.rows) for (const k of Object.keys(r.values)) seen.add(k);
    return [...seen];
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<Row, void, undefined> {
    if (this.iterated) throw new Error("a RowSource can be iterated only once");
    this.iterated = true;
    for (let i = 0; i < this.rows.length; i++) yield this.rows[i];
  }

  async close(): Promise<void> {
    this.rows = [];
  }
}

const LF = 0x0a;

/**
 * Splits a JSON array file into rows, parsing each element separately (see
 * the module documentation). Throws when the text is not a JSON array.
 */
export function parseJsonArrayRows(bytes: Buffer, where = "input"): Row[] {
  let i = bytes.length >= 3 && bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf ? 3 : 0;
  const n = bytes.length;
  let lineNo = 1;
  const skipWs = () => {
    while (i < n) {
      const b = bytes[i];
      if (b === LF) lineNo++;
      else if (b !== 0x20 && b !== 0x09 && b !== 0x0d) break;
      i++;
    }
  };
  skipWs();
  if (i >= n || bytes[i] !== 0x5b) {
    throw new Error(`${where}: line ${lineNo}: expected a JSON array ('[')`);
  }
  i++;
  const rows: Row[] = [];
  skipWs();
  if (i < n && bytes[i] === 0x5d) {
    i++;
  } else {
    for (;;) {
      const start = i;
      const startLine = lineNo;
      let depth = 0;
      while (i < n) {
        const b = bytes[i];
        if (b === 0x22) {
          i++;
          while (i < n && bytes[i] !== 0x22) {
            if (bytes[i] === 0x5c) i++;
            else if (bytes[i] === LF) lineNo++;
            i++;
          }
          i++;
          continue;
        }
        if (b === LF) lineNo++;
        else if (b === 0x5b || b === 0x7b) depth++;
        else if (b === 0x5d || b === 0x7d) {
          if (depth === 0 && b === 0x5d) break;
          if (depth > 0) depth--;
        } else if (b === 0x2c && depth === 0) break;
        i++;
      }
      if (i >= n) throw new Error(`${where}: unterminated JSON array (missing ']'; is the file truncated?)`);
      let end = i;
      while (end > start && (bytes[end - 1] === 0x20 || bytes[end - 1] === 0x09 || bytes[end - 1] === 0x0a || bytes[end - 1] === 0x0d)) end--;
      rows.push(jsonElementRow(bytes.subarray(start, end), rows.length, startLine));
      if (bytes[i] === 0x5d) {
        i++;
        break;
      }
      i++; // ','
      skipWs();
      if (i < n && bytes[i] === 0x5d) {
        i++; // tolerate a trailing comma
        break;
      }
    }
  }
  skipWs();
  if (i < n) throw new Error(`${where}: line ${lineNo}: unexpected data after the JSON array`);
  return rows;
}

function jsonElementRow(bytes: Buffer, index: number, line: number): Row {
  const { text, latin1 } = decodeText(bytes);
  const row: Row = { index, line, values: {} };
  if (latin1) row.latin1 = true;
  const at = `element ${index} (line ${line})`;
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    row.error = `${at}: invalid JSON: ${(err as Error).message}`;
    return row;
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    row.error = `${at}: expected a JSON object, found ${jsonKind(value)}`;
  } else if (jsonDepthExceeds(value, MAX_JSON_DEPTH)) {
    row.error = `${at}: JSON nested deeper than ${MAX_JSON_DEPTH} levels`;
  } else {
    row.values = value as Record<string, unknown>;
  }
  return row;
}
