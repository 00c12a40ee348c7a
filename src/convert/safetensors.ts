/**
 * Safetensors: an 8-byte little-endian header length, a JSON header
 * `{"name": {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {...}}`, then the raw
 * little-endian tensor data (offsets relative to the end of the header). The reader checks every
 * offset and size against the file before any data is read; the writer (used for test fixtures
 * and by the Hugging Face layout writers) pads the header with spaces to 8 bytes, as the
 * reference implementation does.
 */
import { ConvertError } from "./errors.js";
import { RandomAccessFile, withFile, writeFileAtomic } from "./fileio.js";
import { DTYPE_BYTES, numel, shapeText, type SourceTensor } from "./tensor.js";

/** An opened safetensors file: its tensors (data still on disk) and string metadata. */
export interface SafetensorsFile {
  path: string;
  tensors: SourceTensor[];
  /** The `__metadata__` object (string values), empty when absent. */
  metadata: Record<string, string>;
}

/** Headers larger than this are refused (the reference implementation's limit is 100 MB). */
const MAX_HEADER = 100 * 1024 * 1024;

/**
 * Opens a safetensors file and validates its header: dtypes, shapes, offsets inside the data
 * section, sizes matching shape × dtype.
 *
 * @throws {ConvertError} for a truncated file or an invalid header (the message says which).
 */
export function openSafetensors(path: string): SafetensorsFile {
  return withFile(path, (f) => {
    if (f.size < 8) throw new ConvertError(path, `truncated: ${f.size} bytes is too short for a safetensors file`);
    const lenBytes = f.read(0, 8, "header length");
    const n = new DataView(lenBytes.buffer).getBigUint64(0, true);
    if (n > BigInt(f.size - 8)) {
      throw new ConvertError(path, `truncated or not a safetensors file: the header claims ${n} bytes but only ${f.size - 8} follow`);
    }
    if (n > BigInt(MAX_HEADER)) throw new ConvertError(path, `safetensors header of ${n} bytes is larger than ${MAX_HEADER}`);
    const headerLen = Number(n);
    let header: unknown;
    try {
      header = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(f.read(8, headerLen, "header")));
    } catch (e) {
      throw new ConvertError(path, `not a safetensors file: the header is not JSON (${(e as Error).message})`, "invalid_file", { cause: e });
    }
    if (typeof header !== "object" || header === null || Array.isArray(header)) {
      throw new ConvertError(path, "not a safetensors file: the header is not a JSON object");
    }
    const dataStart = 8 + headerLen;
    const dataSize = f.size - dataStart;
    const tensors: SourceTensor[] = [];
    let metadata: Record<string, string> = {};
    for (const [name, info] of Object.entries(header as Record<string, unknown>)) {
      if (name === "__metadata__") {
        if (typeof info !== "object" || info === null) throw new ConvertError(path, "__metadata__ is not an object");
        metadata = info as Record<string, string>;
        continue;
      }
      const t = info as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
      if (typeof t !== "object" || t === null) throw new ConvertError(path, `tensor ${name}: header entry is not an object`);
      if (typeof t.dtype !== "string" || !(t.dtype in DTYPE_BYTES)) {
        throw new ConvertError(path, `tensor ${name}: unknown dtype ${JSON.stringify(t.dtype)}`);
      }
      const shape = t.shape;
      if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
        throw new ConvertError(path, `tensor ${name}: invalid shape ${JSON.stringify(shape)}`);
      }
      const off = t.data_offsets;
      if (!Array.isArray(off) || off.length !== 2 || !off.every((d) => Number.isSafeInteger(d) && d >= 0) || off[0] > off[1]) {
        throw new ConvertError(path, `tensor ${name}: invalid data_offsets ${JSON.stringify(off)}`);
      }
      const [begin, end] = off as [number, number];
      const bytes = numel(shape as number[]) * DTYPE_BYTES[t.dtype];
      if (end - begin !== bytes) {
        throw new ConvertError(path, `tensor ${name}: ${t.dtype} ${shapeText(shape as number[])} needs ${bytes} bytes but data_offsets span ${end - begin}`);
      }
      if (end > dataSize) {
        throw new ConvertError(path, `truncated: tensor ${name} ends at byte ${dataStart + end} but the file has ${f.size} bytes`);
      }
      const dtype = t.dtype;
      tensors.push({
        name,
        dtype,
        shape: shape as number[],
        file: path,
        readBytes: () => withFile(path, (g: RandomAccessFile) => g.read(dataStart + begin, bytes, `tensor ${name}`)),
      });
    }
    return { path, tensors, metadata };
  });
}

/** A tensor to write: little-endian bytes of `dtype` in row-major order. */
export interface SafetensorsEntry {
  name: string;
  dtype: string;
  shape: readonly number[];
  data: Uint8Array;
}

/**
 * Serializes tensors to safetensors bytes (header, then the data in the given order).
 *
 * @throws {ConvertError} when a tensor's byte length does not match its dtype and shape.
 */
export function encodeSafetensors(entries: readonly SafetensorsEntry[], metadata?: Record<string, string>): Uint8Array[] {
  const header: Record<string, unknown> = {};
  if (metadata) header.__metadata__ = metadata;
  let offset = 0;
  for (const e of entries) {
    const size = DTYPE_BYTES[e.dtype];
    if (size === undefined) throw new ConvertError(e.name, `unknown safetensors dtype ${e.dtype}`);
    const bytes = numel(e.shape) * size;
    if (e.data.length !== bytes) throw new ConvertError(e.name, `${e.dtype} ${shapeText(e.shape)} needs ${bytes} bytes, got ${e.data.length}`);
    header[e.name] = { dtype: e.dtype, shape: [...e.shape], data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let json = JSON.stringify(header);
  const enc = new TextEncoder();
  let jb = enc.encode(json);
  const pad = (8 - (jb.length % 8)) % 8;
  if (pad) {
    json += " ".repeat(pad);
    jb = enc.encode(json);
  }
  const len = new Uint8Array(8);
  new DataView(len.buffer).setBigUint64(0, BigInt(jb.length), true);
  return [len, jb, ...entries.map((e) => e.data)];
}

/** Writes a safetensors file atomically (see {@link encodeSafetensors}). */
export async function writeSafetensors(path: string, entries: readonly SafetensorsEntry[], metadata?: Record<string, string>): Promise<void> {
  await writeFileAtomic(path, encodeSafetensors(entries, metadata));
}
