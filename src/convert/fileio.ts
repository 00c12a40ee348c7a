/**
 * Bounded, synchronous reads from files, and atomic writes (temporary file renamed when complete).
 */
import { closeSync, fstatSync, openSync, readFileSync, readSync } from "node:fs";

import { ConvertError } from "./errors.js";

export { writeFileAtomic } from "../gguf/atomic.js";

/** A file opened for random-access reads; every read is checked against the file size. */
export class RandomAccessFile {
  private fd: number | null;
  /** Size in bytes when opened. */
  readonly size: number;

  constructor(readonly path: string) {
    try {
      this.fd = openSync(path, "r");
    } catch (e) {
      throw new ConvertError(path, `cannot open: ${(e as Error).message}`, (e as NodeJS.ErrnoException).code === "ENOENT" ? "not_found" : "invalid_file", { cause: e });
    }
    this.size = fstatSync(this.fd).size;
  }

  /**
   * Reads `length` bytes at `offset` into a fresh buffer.
   *
   * @throws {ConvertError} naming `what` when the range goes past the end of the file.
   */
  read(offset: number, length: number, what: string): Uint8Array {
    if (this.fd === null) throw new ConvertError(this.path, "file already closed");
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0) {
      throw new ConvertError(this.path, `invalid range for ${what}: ${length} bytes at offset ${offset}`);
    }
    if (offset + length > this.size) {
      throw new ConvertError(this.path, `truncated: ${what} needs bytes ${offset}..${offset + length} but the file has ${this.size} bytes`);
    }
    const out = new Uint8Array(length);
    let got = 0;
    while (got < length) {
      const n = readSync(this.fd, out, got, Math.min(length - got, 1 << 30), offset + got);
      if (n === 0) throw new ConvertError(this.path, `truncated: file ended at byte ${offset + got} while reading ${what}`);
      got += n;
    }
    return out;
  }

  close(): void {
    if (this.fd !== null) closeSync(this.fd);
    this.fd = null;
  }
}

/**
 * The parsed contents of the JSON file `path`.
 *
 * @throws {ConvertError} `invalid JSON: ...` when it cannot be read or parsed.
 */
export function readJsonFile(path: string): unknown {
  try {
    return JSON.parse(readFileSync(path, "utf8"));
  } catch (e) {
    throw new ConvertError(path, `invalid JSON: ${(e as Error).message}`, "invalid_file", { cause: e });
  }
}

/**
 * The JSON object in the file `path`.
 *
 * @throws {ConvertError} when it cannot be read or parsed, or holds something else than an object.
 */
export function readJsonObject(path: string): Record<string, unknown> {
  const v = readJsonFile(path);
  if (typeof v !== "object" || v === null || Array.isArray(v)) throw new ConvertError(path, "expected a JSON object");
  return v as Record<string, unknown>;
}

/** Opens `path`, runs `fn`, closes the file. */
export function withFile<T>(path: string, fn: (f: RandomAccessFile) => T): T {
  const f = new RandomAccessFile(path);
  try {
    return fn(f);
  } finally {
    f.close();
  }
}
