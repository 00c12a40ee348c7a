/**
 * The on-disk format shared by all recommender models.
 *
 * Layout (all integers little-endian):
 *
 * | bytes          | content                                                    |
 * |----------------|------------------------------------------------------------|
 * | 0–7            | magic `TRRECSYS`                                           |
 * | 8–11           | format version (u32, currently {@link MODEL_FILE_VERSION}) |
 * | 12–15          | header length H in bytes (u32)                             |
 * | 16 … 16+H      | UTF-8 JSON header (see {@link ModelFileHeader})            |
 * | padding        | zeros up to the next multiple of 8                         |
 * | payload        | the arrays listed in the header, each 8-byte aligned       |
 *
 * The header records the payload length and its CRC-32, so truncated or
 * corrupted files are rejected with a {@link ModelFileError} rather than
 * loading garbage. Files are written to a temporary name and renamed, so a
 * crash never leaves a half-written model under the final name.
 *
 * @module
 */

import { randomBytes } from "node:crypto";
import { readFile, rename, rm, writeFile } from "node:fs/promises";
import { ModelFileError } from "./errors.js";
import { crc32 } from "node:zlib";

/** Magic bytes at the start of every model file. */
export const MODEL_FILE_MAGIC = "TRRECSYS";
/** Current container format version. */
export const MODEL_FILE_VERSION = 1;

/** A typed array stored in a model file. */
export type StoredArray = Float32Array | Int32Array;

/** JSON header of a model file. */
export interface ModelFileHeader {
  /** Model kind, e.g. `"popularity"`, `"item-knn"`, `"bpr"`. */
  kind: string;
  /** Model hyper-parameters and small scalar state (JSON). */
  params: Record<string, unknown>;
  /** User ids in index order. */
  users: string[];
  /** Item ids in index order. */
  items: string[];
  /** Where each array lies in the payload (offsets relative to its start). */
  arrays: { name: string; dtype: "f32" | "i32"; length: number; offset: number }[];
  /** Payload length in bytes. */
  payloadBytes: number;
  /** CRC-32 (IEEE) of the payload. */
  crc32: number;
}

/** Decoded contents of a model file. */
export interface ModelFileContents {
  kind: string;
  params: Record<string, unknown>;
  users: string[];
  items: string[];
  arrays: Record<string, StoredArray>;
}

/** CRC-32 (IEEE 802.3, node:zlib's) of `bytes`, as an unsigned integer. */
export { crc32 };

const align8 = (n: number): number => (n + 7) & ~7;

/** Serialises a model to bytes. */
export function encodeModel(contents: ModelFileContents): Buffer {
  const layout: ModelFileHeader["arrays"] = [];
  let offset = 0;
  for (const [name, arr] of Object.entries(contents.arrays)) {
    layout.push({ name, dtype: arr instanceof Float32Array ? "f32" : "i32", length: arr.length, offset });
    offset = align8(offset + arr.byteLength);
  }
  const payload = new Uint8Array(offset);
  for (const entry of layout) {
    const arr = contents.arrays[entry.name];
    payload.set(new Uint8Array(arr.buffer, arr.byteOffset, arr.byteLength), entry.offset);
  }
  const header: ModelFileHeader = {
    kind: contents.kind,
    params: contents.params,
    users: contents.users,
    items: contents.items,
    arrays: layout,
    payloadBytes: payload.length,
    crc32: crc32(payload),
  };
  const json = Buffer.from(JSON.stringify(header), "utf8");
  const start = align8(16 + json.length);
  const out = Buffer.alloc(start + payload.length);
  out.write(MODEL_FILE_MAGIC, 0, "latin1");
  out.writeUInt32LE(MODEL_FILE_VERSION, 8);
  out.writeUInt32LE(json.length, 12);
  json.copy(out, 16);
  out.set(payload, start);
  return out;
}

/**
 * Parses model bytes.
 * @param label file name for error messages.
 * @param expectedKind when given, the file must hold this model kind.
 * @throws ModelFileError on a wrong magic, version or kind, a truncated or
 *   corrupted file, or an inconsistent header.
 */
export function decodeModel(bytes: Uint8Array, label: string, expectedKind?: string): ModelFileContents {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (buf.length < 16 || buf.toString("latin1", 0, 8) !== MODEL_FILE_MAGIC) {
    throw new ModelFileError(label, buf.length < 8 ? `not a tallrec model file (only ${buf.length} bytes)` : "not a tallrec model file (bad magic bytes)");
  }
  const version = buf.readUInt32LE(8);
  if (version !== MODEL_FILE_VERSION) {
    throw new ModelFileError(label, `unsupported model file version ${version} (this build reads version ${MODEL_FILE_VERSION})`);
  }
  const headerLen = buf.readUInt32LE(12);
  if (16 + headerLen > buf.length) {
    throw new ModelFileError(label, `truncated: header needs ${16 + headerLen} bytes, file has ${buf.length}`);
  }
  let header: ModelFileHeader;
  try {
    header = JSON.parse(buf.toString("utf8", 16, 16 + headerLen)) as ModelFileHeader;
  } catch (e) {
    throw new ModelFileError(label, `corrupted header (${(e as Error).message})`);
  }
  if (
    typeof header !== "object" ||
    header === null ||
    typeof header.kind !== "string" ||
    !Array.isArray(header.users) ||
    !Array.isArray(header.items) ||
    !Array.isArray(header.arrays) ||
    typeof header.payloadBytes !== "number" ||
    typeof header.crc32 !== "number"
  ) {
    throw new ModelFileError(label, "corrupted header (missing fields)");
  }
  if (expectedKind !== undefined && header.kind !== expectedKind) {
    throw new ModelFileError(label, `holds a "${header.kind}" model, not "${expectedKind}"`);
  }
  const start = align8(16 + headerLen);
  const expected = start + header.payloadBytes;
  if (buf.length < expected) throw new ModelFileError(label, `truncated: expected ${expected} bytes, file has ${buf.length}`);
  if (buf.length > expected) throw new ModelFileError(label, `corrupted: ${buf.length - expected} unexpected trailing bytes`);
  const payload = buf.subarray(start, expected);
  if (crc32(payload) !== header.crc32) throw new ModelFileError(label, "corrupted: payload checksum mismatch");
  const arrays: Record<string, StoredArray> = {};
  for (const a of header.arrays) {
    const width = 4;
    if (a.offset < 0 || a.length < 0 || a.offset + a.length * width > payload.length || (a.dtype !== "f32" && a.dtype !== "i32")) {
      throw new ModelFileError(label, `corrupted header: array "${a.name}" is out of bounds`);
    }
    // Copy into a fresh, aligned buffer.
    const copy = new Uint8Array(a.length * width);
    copy.set(payload.subarray(a.offset, a.offset + a.length * width));
    arrays[a.name] = a.dtype === "f32" ? new Float32Array(copy.buffer) : new Int32Array(copy.buffer);
  }
  return { kind: header.kind, params: header.params ?? {}, users: header.users, items: header.items, arrays };
}

/** Writes a model file atomically (temporary file + rename). */
export async function writeModelFile(path: string, contents: ModelFileContents): Promise<void> {
  const tmp = `${path}.${randomBytes(6).toString("hex")}.tmp`;
  try {
    await writeFile(tmp, encodeModel(contents));
    await rename(tmp, path);
  } catch (e) {
    await rm(tmp, { force: true });
    throw e;
  }
}

/** Reads a model file. See {@link decodeModel}. @throws ModelFileError; file system errors pass through. */
export async function readModelFile(path: string, expectedKind?: string): Promise<ModelFileContents> {
  return decodeModel(await readFile(path), path, expectedKind);
}

/**
 * Fetches a required array from decoded contents.
 * @throws ModelFileError when missing, of the wrong type or length.
 */
export function requireArray<T extends "f32" | "i32">(contents: ModelFileContents, label: string, name: string, dtype: T, length?: number): T extends "f32" ? Float32Array : Int32Array {
  const a = contents.arrays[name];
  const ok = dtype === "f32" ? a instanceof Float32Array : a instanceof Int32Array;
  if (!a || !ok) throw new ModelFileError(label, `corrupted: array "${name}" (${dtype}) is missing`);
  if (length !== undefined && a.length !== length) {
    throw new ModelFileError(label, `corrupted: array "${name}" has length ${a.length}, expected ${length}`);
  }
  return a as T extends "f32" ? Float32Array : Int32Array;
}
