/**
 * Durable progress for resumable batch output (`tallrec batch --resume`).
 *
 * ## Contract
 *
 * The batch command writes exactly one output row per input record, in
 * input order, starting at input index 0: {@link ResumableOutput.write}
 * takes the row text (ending in `"\n"`) and the input record's index, which
 * must be the next one ({@link ResumableOutput.nextIndex}). On resume,
 * {@link openResumableOutput} returns {@link ResumableOutput.startIndex}: the
 * caller skips input records with a smaller index and writes the rest. The
 * final output is then byte-identical to an uninterrupted run, provided the
 * rows are a deterministic function of the input.
 *
 * ## Files
 *
 * - `OUT`: the output exactly as an uninterrupted run writes it (header,
 *   then rows). Nothing else is put in it.
 * - `OUT.progress` (the sidecar): a small append-only log. Each line is
 *   `<json>\t<crc32 of json, 8 hex>\n`. The first line describes the run:
 *   `{"kind":"tallrec-progress","v":1,"headerBytes","headerCrc","fingerprint","rowFormat"}`.
 *   Every other line is a checkpoint `{"next","bytes","from","crc"}`: the
 *   first `bytes` bytes of OUT hold the header and the rows of input records
 *   `0 .. next-1`, and `crc` is the CRC-32 of OUT's bytes `[from, bytes)`
 *   (the last chunk written). The sidecar is compacted (rewritten as the
 *   description line plus the last checkpoint, atomically with
 *   rename) when it grows past 1 MiB and on every resume.
 *
 * ## Writing (one flush)
 *
 * Rows are buffered in memory; a flush happens when the buffer reaches
 * `flushBytes` (1 MiB by default), on {@link ResumableOutput.flush} (the
 * caller may flush every few seconds, and on SIGINT) and on close:
 * 1. the buffered rows are written to OUT at the committed size (one
 *    positioned write), then `fdatasync(OUT)`;
 * 2. a checkpoint line is appended to the sidecar, then `fdatasync(sidecar)`.
 * So a checkpoint is only ever written after the bytes it covers are on
 * disk, and OUT may run ahead of the last checkpoint (by at most one
 * flush), never behind it. (`durable: false` skips the fsyncs: still safe
 * against a killed or crashed process, which cannot lose data already
 * handed to the kernel, but not against power loss.)
 *
 * ## Resuming
 *
 * 1. OUT missing → fresh start.
 * 2. Sidecar readable: the description must match this run (same header
 *    bytes, same `fingerprint`), else {@link openResumableOutput} throws
 *    rather than append to a different run's output. Lines are read up to
 *    the first one that is torn or fails its CRC (a crash while appending).
 *    The last checkpoint whose `bytes` is within OUT's size and whose chunk
 *    CRC matches OUT's contents wins (earlier ones are tried if not, which
 *    covers a file system that lost or zeroed the tail of OUT). OUT is
 *    truncated to its `bytes` (this drops a torn partial last row and any
 *    rows written after the last checkpoint), `startIndex = next`.
 * 3. Sidecar missing, torn before its first checkpoint, or no checkpoint
 *    matches: OUT itself is scanned. It must start with the header. Complete
 *    rows are counted (`rowFormat: "csv"`: a row ends at a LF outside double
 *    quotes, as written by `formatCsvRow`; `"lines"`: every LF ends a row,
 *    for JSONL), anything after the last complete row is truncated, and
 *    `startIndex` is the number of rows (relying on the one-row-per-record
 *    contract). A fresh sidecar is written.
 *
 * Rows written since the last flush that reached OUT completely are kept by
 * the scan fallback only; with a valid sidecar they are rewritten (at most
 * one flush worth of rows is scored again).
 *
 * Two processes must not write the same OUT at once; there is no lock.
 *
 * @module
 */
import { constants } from "node:fs";
import { open, readFile, rename, stat, type FileHandle } from "node:fs/promises";
import { dirname } from "node:path";
import { crc32 } from "node:zlib";

export interface ResumableOutputOptions {
  /** Continue an existing output (true) or start over, truncating it (false). */
  resume: boolean;
  /** Text written once at the top of a fresh output (`""` for none; otherwise ends with `"\n"`). */
  header: string;
  /** How rows are delimited, for the scan fallback: `"csv"` (default) or `"lines"` (JSONL). */
  rowFormat?: "csv" | "lines";
  /** Identifies the run (e.g. model, prompt and input file); resuming with a different one throws. */
  fingerprint?: string;
  /** fdatasync OUT and the sidecar at every flush. Default true. */
  durable?: boolean;
  /** Buffered row bytes that trigger a flush. Default 1 MiB. */
  flushBytes?: number;
  /** Sidecar path. Default `${path}.progress`. */
  progressPath?: string;
  /** Sidecar size past which it is compacted. Default 1 MiB. */
  compactBytes?: number;
}

/** How the starting point was found. */
export interface ResumeInfo {
  /** `fresh`: new output; `progress`: from a sidecar checkpoint; `scan`: counted in OUT. */
  source: "fresh" | "progress" | "scan";
  /** First input index to write. */
  startIndex: number;
  /** Bytes of OUT kept. */
  keptBytes: number;
  /** Bytes cut off the end of OUT (a torn row, rows after the last checkpoint). */
  discardedBytes: number;
  /** Why the sidecar was not used (for `scan`), or why the start is fresh. */
  detail?: string;
}

export interface ResumableOutput {
  readonly path: string;
  readonly progressPath: string;
  /** First input index this session writes (0 for a fresh output). */
  readonly startIndex: number;
  /** The input index the next {@link write} must have. */
  readonly nextIndex: number;
  readonly resumeInfo: ResumeInfo;
  /**
   * Buffers one row (`rowText` ends with `"\n"`) for input record
   * `inputIndex` (must equal {@link nextIndex}). Resolves at once, or after
   * the flush it triggered.
   */
  write(rowText: string, inputIndex: number): Promise<void>;
  /** Makes every row written so far durable and checkpointed. */
  flush(): Promise<void>;
  /** Flushes and closes both files. The sidecar is kept (a later resume is then a no-op). */
  close(): Promise<void>;
  /** Closes both files without writing buffered rows (as a crash would). */
  abort(): Promise<void>;
}

const META_KIND = "tallrec-progress";
const COMPACT_BYTES = 1024 * 1024;

interface Meta {
  kind: string;
  v: number;
  headerBytes: number;
  headerCrc: string;
  fingerprint: string | null;
  rowFormat: "csv" | "lines";
}

interface Checkpoint {
  next: number;
  bytes: number;
  from: number;
  crc: string;
}

function progressLine(obj: Meta | Checkpoint): string {
  const json = JSON.stringify(obj);
  return `${json}\t${crc32Hex(Buffer.from(json, "utf8"))}\n`;
}

const isInt = (x: unknown): x is number => typeof x === "number" && Number.isSafeInteger(x) && x >= 0;
const isCrc = (x: unknown): x is string => typeof x === "string" && /^[0-9a-f]{8}$/.test(x);

/** Parses the sidecar's valid prefix. */
function parseProgress(buf: Buffer): { meta: Meta | null; checkpoints: Checkpoint[]; detail: string | null } {
  const checkpoints: Checkpoint[] = [];
  let meta: Meta | null = null;
  let pos = 0;
  let lineNo = 0;
  while (pos < buf.length) {
    lineNo++;
    const lf = buf.indexOf(0x0a, pos);
    if (lf < 0) return { meta, checkpoints, detail: `progress file torn at line ${lineNo}` };
    const line = buf.toString("utf8", pos, lf);
    pos = lf + 1;
    const tab = line.lastIndexOf("\t");
    const json = tab < 0 ? "" : line.slice(0, tab);
    if (tab < 0 || crc32Hex(Buffer.from(json, "utf8")) !== line.slice(tab + 1)) {
      return { meta, checkpoints, detail: `progress file corrupt at line ${lineNo}` };
    }
    let obj: Record<string, unknown>;
    try {
      obj = JSON.parse(json) as Record<string, unknown>;
    } catch {
      return { meta, checkpoints, detail: `progress file corrupt at line ${lineNo}` };
    }
    if (lineNo === 1) {
      if (obj.kind !== META_KIND || obj.v !== 1 || !isInt(obj.headerBytes) || !isCrc(obj.headerCrc)) {
        return { meta, checkpoints, detail: "progress file has no valid description line" };
      }
      meta = obj as unknown as Meta;
    } else {
      if (!isInt(obj.next) || !isInt(obj.bytes) || !isInt(obj.from) || (obj.from as number) > (obj.bytes as number) || !isCrc(obj.crc)) {
        return { meta, checkpoints, detail: `progress file corrupt at line ${lineNo}` };
      }
      checkpoints.push(obj as unknown as Checkpoint);
    }
  }
  if (!meta) return { meta, checkpoints, detail: "progress file is empty" };
  return { meta, checkpoints, detail: checkpoints.length ? null : "progress file has no checkpoint" };
}

async function readRange(fh: FileHandle, from: number, to: number): Promise<Buffer> {
  const buf = Buffer.alloc(to - from);
  let done = 0;
  while (done < buf.length) {
    const { bytesRead } = await fh.read(buf, done, buf.length - done, from + done);
    if (bytesRead === 0) break;
    done += bytesRead;
  }
  return done === buf.length ? buf : buf.subarray(0, done);
}

async function writeAll(fh: FileHandle, data: Buffer, position: number): Promise<void> {
  let done = 0;
  while (done < data.length) {
    const { bytesWritten } = await fh.write(data, done, data.length - done, position + done);
    done += bytesWritten;
  }
}

async function syncDir(path: string): Promise<void> {
  // Makes a created or renamed directory entry durable. Not possible on every platform: best effort.
  try {
    const d = await open(dirname(path), constants.O_RDONLY);
    try {
      await d.sync();
    } finally {
      await d.close();
    }
  } catch {
    /* ignore */
  }
}

/**
 * Counts complete rows in `fh` from byte `from` (see the module
 * documentation). Returns the offset just past the last complete row, the
 * offset where that row starts, and the count.
 */
async function scanRows(fh: FileHandle, from: number, size: number, rowFormat: "csv" | "lines"): Promise<{ end: number; lastStart: number; rows: number }> {
  const chunk = Buffer.alloc(1024 * 1024);
  let pos = from;
  let rows = 0;
  let end = from;
  let lastStart = from;
  let inQuote = false;
  while (pos < size) {
    const { bytesRead } = await fh.read(chunk, 0, Math.min(chunk.length, size - pos), pos);
    if (bytesRead === 0) break;
    for (let i = 0; i < bytesRead; i++) {
      const b = chunk[i];
      if (b === 0x22 && rowFormat === "csv") inQuote = !inQuote;
      else if (b === 0x0a && !inQuote) {
        rows++;
        lastStart = end;
        end = pos + i + 1;
      }
    }
    pos += bytesRead;
  }
  return { end, lastStart, rows };
}

class ResumableOutputImpl implements ResumableOutput {
  nextIndex: number;
  private rows: string[] = [];
  private rowBytes = 0;
  private chain: Promise<void> = Promise.resolve();
  private failure: unknown = null;
  private closed = false;

  constructor(
    readonly path: string,
    readonly progressPath: string,
    readonly startIndex: number,
    readonly resumeInfo: ResumeInfo,
    private out: FileHandle,
    private progress: FileHandle,
    private outSize: number,
    private progressSize: number,
    private readonly meta: Meta,
    private readonly durable: boolean,
    private readonly flushBytes: number,
    private readonly compactBytes: number,
  ) {
    this.nextIndex = startIndex;
  }

  write(rowText: string, inputIndex: number): Promise<void> {
    if (this.closed) return Promise.reject(new Error("ResumableOutput: write after close"));
    if (this.failure) return Promise.reject(this.failure);
    if (inputIndex !== this.nextIndex) {
      return Promise.reject(new Error(`ResumableOutput: expected the row for input index ${this.nextIndex}, got ${inputIndex}`));
    }
    if (!rowText.endsWith("\n")) return Promise.reject(new Error("ResumableOutput: a row must end with \\n"));
    this.rows.push(rowText);
    this.rowBytes += rowText.length; // a lower bound of the UTF-8 size, enough for the threshold
    this.nextIndex++;
    if (this.rowBytes >= this.flushBytes) return this.flush();
    return Promise.resolve();
  }

  flush(): Promise<void> {
    if (this.closed) return Promise.reject(new Error("ResumableOutput: flush after close"));
    const run = this.chain.then(() => this.doFlush());
    this.chain = run.catch((err) => {
      this.failure ??= err;
    });
    return run;
  }

  private async doFlush(): Promise<void> {
    if (this.failure) throw this.failure;
    if (this.rows.length === 0) return;
    const data = Buffer.from(this.rows.join(""), "utf8");
    const next = this.nextIndex;
    this.rows = [];
    this.rowBytes = 0;
    await writeAll(this.out, data, this.outSize);
    if (this.durable) await this.out.datasync();
    const cp: Checkpoint = { next, bytes: this.outSize + data.length, from: this.outSize, crc: crc32Hex(data) };
    this.outSize = cp.bytes;
    if (this.progressSize >= this.compactBytes) {
      await this.progress.close();
      this.progress = await writeProgressFile(this.progressPath, this.meta, cp, this.durable);
      this.progressSize = Buffer.byteLength(progressLine(this.meta) + progressLine(cp));
    } else {
      const line = Buffer.from(progressLine(cp), "utf8");
      await writeAll(this.progress, line, this.progressSize);
      this.progressSize += line.length;
      if (this.durable) await this.progress.datasync();
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    try {
      await this.flush();
    } finally {
      this.closed = true;
      await this.out.close();
      await this.progress.close();
    }
  }

  async abort(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.rows = [];
    await this.chain;
    await this.out.close();
    await this.progress.close();
  }
}

/** Atomically replaces the sidecar with the description and one checkpoint; returns it opened for appending. */
async function writeProgressFile(path: string, meta: Meta, cp: Checkpoint, durable: boolean): Promise<FileHandle> {
  const tmp = `${path}.tmp`;
  const fh = await open(tmp, "w");
  try {
    await writeAll(fh, Buffer.from(progressLine(meta) + progressLine(cp), "utf8"), 0);
    if (durable) await fh.sync();
  } finally {
    await fh.close();
  }
  await rename(tmp, path);
  if (durable) await syncDir(path);
  return open(path, "r+");
}

/** Thrown when an existing output cannot be resumed by this run (different header or fingerprint). */
export class ResumeMismatchError extends Error {
  override name = "ResumeMismatchError";
}

/**
 * Opens `path` for resumable, in-order output (see the module documentation).
 * With `resume: false`, or when `path` does not exist, it starts fresh: OUT
 * is created or truncated and gets the header. With `resume: true` it
 * finds where the previous run stopped and truncates what follows.
 */
export async function openResumableOutput(path: string, options: ResumableOutputOptions): Promise<ResumableOutput> {
  const progressPath = options.progressPath ?? `${path}.progress`;
  const durable = options.durable ?? true;
  const flushBytes = options.flushBytes ?? 1024 * 1024;
  const rowFormat = options.rowFormat ?? "csv";
  const compactBytes = options.compactBytes ?? COMPACT_BYTES;
  if (options.header !== "" && !options.header.endsWith("\n")) throw new Error("ResumableOutput: the header must end with \\n");
  const header = Buffer.from(options.header, "utf8");
  const meta: Meta = {
    kind: META_KIND,
    v: 1,
    headerBytes: header.length,
    headerCrc: crc32Hex(header),
    fingerprint: options.fingerprint ?? null,
    rowFormat,
  };
  const headerCp: Checkpoint = { next: 0, bytes: header.length, from: 0, crc: meta.headerCrc };
  const make = (info: ResumeInfo, out: FileHandle, progress: FileHandle, outSize: number, progressSize: number) =>
    new ResumableOutputImpl(path, progressPath, info.startIndex, info, out, progress, outSize, progressSize, meta, durable, flushBytes, compactBytes);
  const metaCpSize = (cp: Checkpoint) => Buffer.byteLength(progressLine(meta) + progressLine(cp));

  const fresh = async (detail?: string): Promise<ResumableOutput> => {
    // Truncate OUT before replacing the sidecar: if we die in between, the old
    // sidecar's checkpoints no longer match and nothing of the old run is kept.
    const out = await open(path, "w+");
    await writeAll(out, header, 0);
    if (durable) await out.datasync();
    const progress = await writeProgressFile(progressPath, meta, headerCp, durable);
    if (durable) await syncDir(path);
    const info: ResumeInfo = { source: "fresh", startIndex: 0, keptBytes: header.length, discardedBytes: 0 };
    if (detail) info.detail = detail;
    return make(info, out, progress, header.length, metaCpSize(headerCp));
  };

  if (!options.resume) return fresh();
  let outSize: number;
  try {
    outSize = (await stat(path)).size;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return fresh("output did not exist");
    throw err;
  }

  let parsed: ReturnType<typeof parseProgress>;
  try {
    parsed = parseProgress(await readFile(progressPath));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
    parsed = { meta: null, checkpoints: [], detail: "progress file missing" };
  }
  if (parsed.meta) {
    if (parsed.meta.fingerprint !== meta.fingerprint) {
      throw new ResumeMismatchError(
        `cannot resume ${path}: it was written by a different run (fingerprint ${JSON.stringify(parsed.meta.fingerprint)}, now ${JSON.stringify(meta.fingerprint)}); start over without --resume`,
      );
    }
    if (parsed.meta.headerBytes !== meta.headerBytes || parsed.meta.headerCrc !== meta.headerCrc) {
      throw new ResumeMismatchError(`cannot resume ${path}: its header differs from this run's; start over without --resume`);
    }
  }

  const out = await open(path, "r+");
  try {
    let chosen: Checkpoint | null = null;
    let detail = parsed.detail ?? undefined;
    if (parsed.meta) {
      for (let k = parsed.checkpoints.length - 1; k >= 0 && !chosen; k--) {
        const cp = parsed.checkpoints[k];
        if (cp.bytes > outSize) continue;
        if (crc32Hex(await readRange(out, cp.from, cp.bytes)) === cp.crc) chosen = cp;
      }
      if (!chosen && parsed.checkpoints.length > 0) detail = "no checkpoint matches the output's contents";
    }
    if (chosen) {
      await out.truncate(chosen.bytes);
      if (durable) await out.datasync();
      const progress = await writeProgressFile(progressPath, meta, chosen, durable);
      const info: ResumeInfo = { source: "progress", startIndex: chosen.next, keptBytes: chosen.bytes, discardedBytes: outSize - chosen.bytes };
      return make(info, out, progress, chosen.bytes, metaCpSize(chosen));
    }

    // Scan fallback: the output must start with the header.
    const head = await readRange(out, 0, Math.min(outSize, header.length));
    if (!head.equals(header.subarray(0, head.length))) {
      throw new ResumeMismatchError(`cannot resume ${path}: it does not start with this run's header; start over without --resume`);
    }
    let cp: Checkpoint;
    let rows = 0;
    if (head.length < header.length) {
      // Torn header: rewrite it.
      await out.truncate(0);
      await writeAll(out, header, 0);
      cp = headerCp;
    } else {
      const scan = await scanRows(out, header.length, outSize, rowFormat);
      rows = scan.rows;
      await out.truncate(scan.end);
      const last = await readRange(out, scan.lastStart, scan.end);
      cp = { next: rows, bytes: scan.end, from: scan.lastStart, crc: crc32Hex(last) };
    }
    if (durable) await out.datasync();
    const progress = await writeProgressFile(progressPath, meta, cp, durable);
    const info: ResumeInfo = {
      source: "scan",
      startIndex: rows,
      keptBytes: cp.bytes,
      discardedBytes: Math.max(0, outSize - cp.bytes),
    };
    if (detail) info.detail = detail;
    return make(info, out, progress, cp.bytes, metaCpSize(cp));
  } catch (err) {
    await out.close();
    throw err;
  }
}

/** CRC-32 (IEEE 802.3, node:zlib's) as 8 lowercase hex digits, continuing from `crc` (0 to start). */
export function crc32Hex(bytes: Uint8Array, crc = 0): string {
  return crc32(bytes, crc).toString(16).padStart(8, "0");
}

/** CRC-32 helper (node:zlib's) re-exported for callers that fingerprint inputs. */
export { crc32 };
