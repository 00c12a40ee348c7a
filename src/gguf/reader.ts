/**
 * A small, defensive GGUF reader (versions 2 and 3, little-endian).
 *
 * Only the header (metadata and tensor infos) is read when a file is opened,
 * through bounded buffered reads from a file descriptor; tensor data is read on
 * demand, one tensor at a time. Every length and count is checked against the
 * bytes the file actually has before anything is allocated, so truncated,
 * corrupted or hostile files fail with a {@link GgufError} naming the file and
 * the problem instead of crashing or exhausting memory.
 */
import { closeSync, fstatSync, openSync, readSync } from "node:fs";
import { printable } from "../printable.js";
import { bf16BitsToNumber, dequantizeQ8_0, f16ToF32Table, Q8_0_BLOCK } from "./float.js";
import {
  GGML_MAX_DIMS,
  GGUF_DEFAULT_ALIGNMENT,
  GGUF_MAGIC,
  GGUF_VALUE_SIZE,
  GgmlType,
  ggmlTypeName,
  ggmlTypeTraits,
  GgufError,
  GgufValueType,
  ggufValueTypeName,
  type GgufArrayValue,
  type GgufScalarValue,
  type GgufValue,
} from "./types.js";

/** Where one tensor lives in a GGUF file. */
export interface GgufTensorInfo {
  /** Tensor name, e.g. "blk.0.attn_q.weight". */
  name: string;
  /** Dimensions in ggml order: `dims[0]` (ne0) is the contiguous one (a row's length). */
  dims: number[];
  /** ggml type code (see {@link GgmlType}). */
  type: number;
  /** ggml type name, e.g. "F16". */
  typeName: string;
  /** Number of elements (product of dims). */
  nElements: number;
  /** Offset relative to the start of the data section, as stored in the file. */
  relativeOffset: number;
  /** Absolute byte offset of the tensor data in the file. */
  offset: number;
  /** Size of the tensor data in bytes. */
  byteSize: number;
}

/** A parsed GGUF header. Tensor data stays on disk until read with {@link readTensorF32} and friends. */
export interface GgufFile {
  /** The path the file was opened with (used in error messages). */
  path: string;
  /** Format version (2 or 3). */
  version: number;
  /** File size in bytes when it was opened. */
  fileSize: number;
  /** Tensor data alignment (`general.alignment`, default 32). */
  alignment: number;
  /** Absolute offset of the tensor data section. */
  dataOffset: number;
  /** Metadata in file order, each value with its GGUF type. */
  metadata: Map<string, GgufValue>;
  /** Tensor infos in file order. */
  tensors: GgufTensorInfo[];
  /** Tensor infos by name. */
  tensorsByName: Map<string, GgufTensorInfo>;
}

/** Smallest encoded size of one metadata entry: key length (8), a 1-byte key, type (4), a 1-byte value. */
const MIN_KV_BYTES = 14;
/** Smallest encoded size of one tensor info: name length (8), n_dims (4), type (4), offset (8). */
const MIN_TENSOR_INFO_BYTES = 24;
const CHUNK = 1 << 16;
const utf8 = new TextDecoder("utf-8");

/** Buffered, bounds-checked sequential reader over a file descriptor. */
class HeaderReader {
  private buf = new Uint8Array(CHUNK);
  private view = new DataView(this.buf.buffer);
  /** File offset of buf[0]. */
  private bufStart = 0;
  /** Valid bytes in buf. */
  private bufLen = 0;
  /** Current absolute position. */
  pos = 0;
  /** Describes what is being read, for error messages. */
  context = "header";

  constructor(
    private readonly fd: number,
    readonly path: string,
    readonly fileSize: number,
  ) {}

  get remaining(): number {
    return this.fileSize - this.pos;
  }

  fail(message: string): never {
    throw new GgufError(this.path, message);
  }

  /** Makes bytes [pos, pos+n) available in the buffer (n <= CHUNK) and returns their buffer index. */
  private need(n: number): number {
    if (n > this.remaining) {
      this.fail(`truncated: reading ${this.context} needs ${n} bytes at offset ${this.pos} but the file has ${this.fileSize} bytes`);
    }
    const end = this.pos + n;
    if (this.pos < this.bufStart || end > this.bufStart + this.bufLen) {
      const want = Math.min(CHUNK, this.fileSize - this.pos);
      let got = 0;
      while (got < want) {
        const r = readSync(this.fd, this.buf, got, want - got, this.pos + got);
        if (r === 0) break;
        got += r;
      }
      this.bufStart = this.pos;
      this.bufLen = got;
      if (got < n) this.fail(`truncated: file ended early while reading ${this.context} at offset ${this.pos}`);
    }
    const at = this.pos - this.bufStart;
    this.pos = end;
    return at;
  }

  u8(): number {
    return this.buf[this.need(1)];
  }
  i8(): number {
    return this.view.getInt8(this.need(1));
  }
  u16(): number {
    return this.view.getUint16(this.need(2), true);
  }
  i16(): number {
    return this.view.getInt16(this.need(2), true);
  }
  u32(): number {
    return this.view.getUint32(this.need(4), true);
  }
  i32(): number {
    return this.view.getInt32(this.need(4), true);
  }
  f32(): number {
    return this.view.getFloat32(this.need(4), true);
  }
  f64(): number {
    return this.view.getFloat64(this.need(8), true);
  }
  u64(): bigint {
    return this.view.getBigUint64(this.need(8), true);
  }
  i64(): bigint {
    return this.view.getBigInt64(this.need(8), true);
  }

  /** A u64 that must fit in [0, max]; `what` names it in the error. */
  count(what: string, max: number): number {
    const v = this.u64();
    if (v > BigInt(max)) {
      this.fail(`truncated or corrupt: ${what} is ${v} but a file of ${this.fileSize} bytes can hold at most ${Math.max(0, max)} at offset ${this.pos - 8}`);
    }
    return Number(v);
  }

  /** A GGUF string: u64 byte length then UTF-8 bytes, length checked before allocating. */
  string(): string {
    const start = this.pos;
    const len = this.u64();
    if (len > BigInt(this.remaining)) {
      this.fail(`truncated or corrupt: ${this.context} is a string of ${len} bytes at offset ${start}, but only ${this.remaining} bytes follow`);
    }
    const n = Number(len);
    if (n <= CHUNK) {
      const at = this.need(n);
      return utf8.decode(this.buf.subarray(at, at + n));
    }
    const big = new Uint8Array(n);
    let got = 0;
    while (got < n) {
      const r = readSync(this.fd, big, got, n - got, this.pos + got);
      if (r === 0) this.fail(`truncated: file ended early while reading ${this.context}`);
      got += r;
    }
    this.pos += n;
    return utf8.decode(big);
  }
}

function readScalar(r: HeaderReader, type: number): number | bigint | boolean | string {
  switch (type) {
    case GgufValueType.UINT8:
      return r.u8();
    case GgufValueType.INT8:
      return r.i8();
    case GgufValueType.UINT16:
      return r.u16();
    case GgufValueType.INT16:
      return r.i16();
    case GgufValueType.UINT32:
      return r.u32();
    case GgufValueType.INT32:
      return r.i32();
    case GgufValueType.FLOAT32:
      return r.f32();
    case GgufValueType.FLOAT64:
      return r.f64();
    case GgufValueType.UINT64:
      return r.u64();
    case GgufValueType.INT64:
      return r.i64();
    case GgufValueType.BOOL: {
      const b = r.u8();
      if (b > 1) r.fail(`${r.context} is a bool with byte value ${b} (must be 0 or 1)`);
      return b === 1;
    }
    case GgufValueType.STRING:
      return r.string();
    default:
      return r.fail(`${r.context} has invalid value type ${type}`);
  }
}

function readValue(r: HeaderReader, type: number): GgufValue {
  if (type !== GgufValueType.ARRAY) {
    return { type, value: readScalar(r, type) } as GgufScalarValue;
  }
  const itemType = r.u32();
  if (itemType === GgufValueType.ARRAY) r.fail(`${r.context} is a nested array (not supported by llama.cpp)`);
  if (!(itemType in GGUF_VALUE_SIZE) && itemType !== GgufValueType.STRING) {
    r.fail(`${r.context} is an array with invalid element type ${itemType}`);
  }
  const minSize = itemType === GgufValueType.STRING ? 8 : GGUF_VALUE_SIZE[itemType];
  const n = r.count(`element count of ${r.context}`, Math.floor((r.remaining - 8) / minSize));
  const items: unknown[] = new Array(n);
  for (let i = 0; i < n; i++) items[i] = readScalar(r, itemType);
  return { type: GgufValueType.ARRAY, itemType, value: items } as GgufArrayValue;
}

function checkedTensorInfo(r: HeaderReader, index: number): Omit<GgufTensorInfo, "offset"> {
  r.context = `name of tensor #${index}`;
  const name = r.string();
  const shown = printable(name);
  r.context = `tensor ${JSON.stringify(shown)}`;
  const nDims = r.u32();
  if (nDims > GGML_MAX_DIMS) r.fail(`tensor ${shown} has ${nDims} dimensions (at most ${GGML_MAX_DIMS})`);
  const dims: number[] = [];
  let nElements = 1;
  for (let d = 0; d < nDims; d++) {
    const ne = r.i64();
    if (ne < 0n) r.fail(`tensor ${shown} has negative dimension ${d}: ${ne}`);
    if (ne > BigInt(Number.MAX_SAFE_INTEGER)) r.fail(`tensor ${shown} dimension ${d} is absurdly large: ${ne}`);
    dims.push(Number(ne));
    nElements *= Number(ne);
  }
  if (!Number.isSafeInteger(nElements)) r.fail(`tensor ${shown} has too many elements: ${dims.join(" x ")}`);
  const type = r.u32();
  const traits = ggmlTypeTraits(type);
  if (!traits) r.fail(`tensor ${shown} has invalid ggml type ${type}`);
  const ne0 = dims.length > 0 ? dims[0] : 1;
  if (ne0 % traits.blockSize !== 0) {
    r.fail(`tensor ${shown} of type ${traits.name} has rows of ${ne0} elements, not a multiple of the block size ${traits.blockSize}`);
  }
  const byteSize = (nElements / traits.blockSize) * traits.typeSize;
  if (!Number.isSafeInteger(byteSize)) r.fail(`tensor ${shown} is absurdly large: ${dims.join(" x ")} ${traits.name}`);
  const rel = r.u64();
  if (rel > BigInt(r.fileSize)) {
    r.fail(`tensor ${shown} has data offset ${rel}, beyond the end of the file (${r.fileSize} bytes)`);
  }
  return { name, dims, type, typeName: traits.name, nElements, relativeOffset: Number(rel), byteSize };
}

function parse(fd: number, path: string): GgufFile {
  const fileSize = fstatSync(fd).size;
  const r: HeaderReader = new HeaderReader(fd, path, fileSize);
  r.context = "magic";
  if (fileSize < 4) r.fail(`truncated: ${fileSize} bytes is too short for a GGUF file`);
  const magic = r.u32();
  if (magic !== GGUF_MAGIC) {
    const shown = Buffer.from(new Uint32Array([magic]).buffer).toString("latin1");
    r.fail(`bad magic ${JSON.stringify(shown)} (not a GGUF file)`);
  }
  r.context = "version";
  const version = r.u32();
  if (version === 1) r.fail("GGUF version 1 is not supported (only 2 and 3)");
  if (version !== 2 && version !== 3) {
    if ((version & 0xffff) === 0 && version !== 0) r.fail(`version ${version}: a big-endian GGUF file? Only little-endian files are supported`);
    r.fail(`unsupported GGUF version ${version} (only 2 and 3)`);
  }
  r.context = "tensor count";
  const nTensors = r.count("tensor count", Math.floor((r.remaining - 8) / MIN_TENSOR_INFO_BYTES));
  r.context = "metadata count";
  const nKv = r.count("metadata count", Math.floor(r.remaining / MIN_KV_BYTES));

  const metadata = new Map<string, GgufValue>();
  for (let i = 0; i < nKv; i++) {
    r.context = `metadata key #${i}`;
    const key = r.string();
    if (key.length === 0) r.fail(`metadata key #${i} is empty`);
    if (metadata.has(key)) r.fail(`duplicate metadata key ${JSON.stringify(printable(key))}`);
    r.context = `type of metadata ${JSON.stringify(printable(key))}`;
    const type = r.u32();
    if (type > GgufValueType.FLOAT64) r.fail(`metadata ${JSON.stringify(printable(key))} has invalid value type ${type}`);
    r.context = `metadata ${JSON.stringify(printable(key))}`;
    metadata.set(key, readValue(r, type));
  }

  let alignment = GGUF_DEFAULT_ALIGNMENT;
  const al = metadata.get("general.alignment");
  if (al) {
    const v = al.value;
    if (al.type !== GgufValueType.UINT32 || typeof v !== "number") {
      r.fail(`general.alignment must be UINT32 but is ${ggufValueTypeName(al.type)}`);
    }
    alignment = v;
    if (alignment === 0 || (alignment & (alignment - 1)) !== 0) r.fail(`general.alignment ${alignment} is not a power of 2`);
  }

  const infos: Omit<GgufTensorInfo, "offset">[] = [];
  const seen = new Set<string>();
  for (let i = 0; i < nTensors; i++) {
    const info = checkedTensorInfo(r, i);
    if (seen.has(info.name)) r.fail(`duplicate tensor name ${JSON.stringify(printable(info.name))}`);
    seen.add(info.name);
    infos.push(info);
  }
  const dataOffset = Math.ceil(r.pos / alignment) * alignment;
  if (nTensors > 0 && dataOffset > fileSize) {
    r.fail(`truncated: the tensor data section starts at byte ${dataOffset} but the file has ${fileSize} bytes`);
  }

  const tensors: GgufTensorInfo[] = [];
  const tensorsByName = new Map<string, GgufTensorInfo>();
  for (const info of infos) {
    if (info.relativeOffset % alignment !== 0) {
      r.fail(`tensor ${printable(info.name)} has data offset ${info.relativeOffset}, not a multiple of the alignment ${alignment}`);
    }
    const offset = dataOffset + info.relativeOffset;
    const end = offset + info.byteSize;
    if (end > fileSize) {
      r.fail(`truncated: tensor ${printable(info.name)} ends at byte ${end} but the file has ${fileSize} bytes`);
    }
    const t: GgufTensorInfo = { ...info, offset };
    tensors.push(t);
    tensorsByName.set(t.name, t);
  }
  return { path, version, fileSize, alignment, dataOffset, metadata, tensors, tensorsByName };
}

/**
 * Opens and parses a GGUF file's header synchronously. Reads only the metadata
 * and tensor infos (never tensor data), and closes the file before returning.
 *
 * @throws {GgufError} when the file is not a valid GGUF v2/v3 file or is truncated.
 */
export function openGgufSync(path: string): GgufFile {
  let fd: number;
  try {
    fd = openSync(path, "r");
  } catch (e) {
    throw new GgufError(path, `cannot open: ${(e as Error).message}`, { cause: e });
  }
  try {
    return parse(fd, path);
  } finally {
    closeSync(fd);
  }
}

/**
 * Opens and parses a GGUF file's header (see {@link openGgufSync}). The parse
 * itself is synchronous (bounded reads of the header only); the promise form
 * exists so callers can treat it like other I/O.
 *
 * @throws {GgufError} (as a rejection) when the file is invalid.
 */
export async function openGguf(path: string): Promise<GgufFile> {
  return openGgufSync(path);
}

/** The info of tensor `name`, or a {@link GgufError} naming the file when it is absent. */
export function getTensorInfo(file: GgufFile, name: string): GgufTensorInfo {
  const t = file.tensorsByName.get(name);
  if (!t) throw new GgufError(file.path, `no tensor named ${JSON.stringify(printable(name))}`);
  return t;
}

/**
 * Reads the raw bytes of tensor `name` (a fresh buffer of exactly `byteSize` bytes).
 *
 * @throws {GgufError} when the tensor is absent or the file has shrunk since it was opened.
 */
export function readTensorBytes(file: GgufFile, name: string): Uint8Array {
  const t = getTensorInfo(file, name);
  const out = new Uint8Array(t.byteSize);
  let fd: number;
  try {
    fd = openSync(file.path, "r");
  } catch (e) {
    throw new GgufError(file.path, `cannot open: ${(e as Error).message}`, { cause: e });
  }
  try {
    let got = 0;
    while (got < t.byteSize) {
      const n = readSync(fd, out, got, t.byteSize - got, t.offset + got);
      if (n === 0) {
        throw new GgufError(file.path, `truncated: tensor ${printable(name)} ends at byte ${t.offset + t.byteSize} but the file ended at byte ${t.offset + got}`);
      }
      got += n;
    }
  } finally {
    closeSync(fd);
  }
  return out;
}

function dequantize<T extends Float32Array | Float64Array>(file: GgufFile, name: string, out: (n: number) => T): T {
  const t = getTensorInfo(file, name);
  switch (t.type) {
    case GgmlType.F32:
    case GgmlType.F16:
    case GgmlType.BF16:
    case GgmlType.Q8_0:
      break;
    default:
      throw new GgufError(file.path, `tensor ${printable(name)} has type ${ggmlTypeName(t.type)}; only F32, F16, BF16 and Q8_0 can be dequantized`);
  }
  const bytes = readTensorBytes(file, name);
  const n = t.nElements;
  const dst = out(n);
  if (t.type === GgmlType.F32) {
    dst.set(new Float32Array(bytes.buffer, bytes.byteOffset, n));
  } else if (t.type === GgmlType.F16) {
    const h = new Uint16Array(bytes.buffer, bytes.byteOffset, n);
    const table = f16ToF32Table();
    for (let i = 0; i < n; i++) dst[i] = table[h[i]];
  } else if (t.type === GgmlType.BF16) {
    const h = new Uint16Array(bytes.buffer, bytes.byteOffset, n);
    for (let i = 0; i < n; i++) dst[i] = bf16BitsToNumber(h[i]);
  } else {
    dequantizeQ8_0(bytes, 0, n / Q8_0_BLOCK, dst, 0);
  }
  return dst;
}

/**
 * Reads tensor `name` as float32 values in ggml order (element `i0 + ne0*i1 + ...`).
 * Supports F32, F16, BF16 and Q8_0 (all exactly representable in float32).
 *
 * @throws {GgufError} for a missing tensor or another type (the message names the type).
 */
export function readTensorF32(file: GgufFile, name: string): Float32Array {
  return dequantize(file, name, (n) => new Float32Array(n));
}

/** Like {@link readTensorF32} but returns float64 values (the same numbers, widened). */
export function readTensorF64(file: GgufFile, name: string): Float64Array {
  return dequantize(file, name, (n) => new Float64Array(n));
}

/** A metadata value, or `undefined` when absent. */
export function getMetadata(file: GgufFile, key: string): GgufValue | undefined {
  return file.metadata.get(key);
}

/**
 * A numeric scalar metadata value (any integer or float type; 64-bit integers
 * must be safe integers), or `fallback` when absent.
 *
 * @throws {GgufError} when absent without a fallback, or of another type.
 */
export function getMetadataNumber(file: GgufFile, key: string, fallback?: number): number {
  const v = file.metadata.get(key);
  if (v === undefined) {
    if (fallback !== undefined) return fallback;
    throw new GgufError(file.path, `missing metadata ${key}`);
  }
  if (typeof v.value === "number") return v.value;
  if (typeof v.value === "bigint" && v.value <= BigInt(Number.MAX_SAFE_INTEGER) && v.value >= -BigInt(Number.MAX_SAFE_INTEGER)) {
    return Number(v.value);
  }
  throw new GgufError(file.path, `metadata ${key} is ${ggufValueTypeName(v.type)}, expected a number`);
}

/**
 * A string metadata value, or `fallback` when absent.
 *
 * @throws {GgufError} when absent without a fallback, or not a string.
 */
export function getMetadataString(file: GgufFile, key: string, fallback?: string): string {
  const v = file.metadata.get(key);
  if (v === undefined) {
    if (fallback !== undefined) return fallback;
    throw new GgufError(file.path, `missing metadata ${key}`);
  }
  if (v.type !== GgufValueType.STRING) {
    throw new GgufError(file.path, `metadata ${key} is ${ggufValueTypeName(v.type)}, expected STRING`);
  }
  return v.value;
}
