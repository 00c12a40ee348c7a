/**
 * A streaming GGUF (version 3) writer.
 *
 * The header (metadata and tensor infos) is computed from tensor descriptions
 * first; tensor data is then produced, converted and written one tensor at a
 * time, so a large model never has to exist in memory at once. Output goes to
 * `path + ".tmp-<pid>"` and is renamed to `path` only when complete.
 */
import { writeFileAtomic } from "./atomic.js";
import { f32ToBf16Bits, f32ToF16Bits, Q8_0_BLOCK, Q8_0_BYTES, quantizeQ8_0 } from "./float.js";
import {
  GGML_MAX_DIMS,
  GGML_MAX_NAME,
  GGUF_DEFAULT_ALIGNMENT,
  GGUF_MAGIC,
  GgmlType,
  ggmlTypeTraits,
  GgufError,
  GgufValueType,
  type GgufBigintType,
  type GgufMetadataEntry,
  type GgufNumberType,
  type GgufScalarType,
  type GgufValue,
} from "./types.js";

/** Tensor types the writer can produce from float32 data. */
export type GgufWritableType = typeof GgmlType.F32 | typeof GgmlType.F16 | typeof GgmlType.BF16 | typeof GgmlType.Q8_0;

/** Tensor data, given directly or produced on demand (called once, just before the tensor is written). */
export type GgufTensorData<T> = T | (() => T | Promise<T>);

/**
 * A tensor to write. `dims` are in ggml order (`dims[0]` = row length).
 * With a float `type`, `data` holds `prod(dims)` float32 values that are
 * converted on the fly; with `raw: true`, `data` holds the exact bytes for any
 * ggml type (its size is checked).
 */
export type GgufTensorSpec =
  { name: string; dims: readonly number[]; type: GgufWritableType; raw?: false; data: GgufTensorData<Float32Array> } | { name: string; dims: readonly number[]; type: number; raw: true; data: GgufTensorData<Uint8Array> };

/** What {@link writeGguf} writes. */
export interface GgufContent {
  /** Metadata entries in order; keys must be unique. Put `general.alignment` (UINT32) here to change the alignment. */
  metadata: Iterable<GgufMetadataEntry>;
  /**
   * Tensor descriptions in file order. The list is iterated once up front to
   * build the header; use lazy `data` functions to keep only one tensor's data
   * in memory at a time.
   */
  tensors: Iterable<GgufTensorSpec>;
}

/** Helpers that build typed metadata values: `{ key: "llama.block_count", ...gv.u32(2) }`. */
export const gv = {
  u8: (value: number): GgufValue => ({ type: GgufValueType.UINT8, value }),
  i8: (value: number): GgufValue => ({ type: GgufValueType.INT8, value }),
  u16: (value: number): GgufValue => ({ type: GgufValueType.UINT16, value }),
  i16: (value: number): GgufValue => ({ type: GgufValueType.INT16, value }),
  u32: (value: number): GgufValue => ({ type: GgufValueType.UINT32, value }),
  i32: (value: number): GgufValue => ({ type: GgufValueType.INT32, value }),
  f32: (value: number): GgufValue => ({ type: GgufValueType.FLOAT32, value }),
  f64: (value: number): GgufValue => ({ type: GgufValueType.FLOAT64, value }),
  u64: (value: bigint): GgufValue => ({ type: GgufValueType.UINT64, value }),
  i64: (value: bigint): GgufValue => ({ type: GgufValueType.INT64, value }),
  bool: (value: boolean): GgufValue => ({ type: GgufValueType.BOOL, value }),
  str: (value: string): GgufValue => ({ type: GgufValueType.STRING, value }),
  numArray: (itemType: GgufNumberType, value: number[]): GgufValue => ({ type: GgufValueType.ARRAY, itemType, value }),
  bigArray: (itemType: GgufBigintType, value: bigint[]): GgufValue => ({ type: GgufValueType.ARRAY, itemType, value }),
  boolArray: (value: boolean[]): GgufValue => ({ type: GgufValueType.ARRAY, itemType: GgufValueType.BOOL, value }),
  strArray: (value: string[]): GgufValue => ({ type: GgufValueType.ARRAY, itemType: GgufValueType.STRING, value }),
};

/** Builds a metadata entry: `kv("general.architecture", gv.str("llama"))`. */
export function kv(key: string, value: GgufValue): GgufMetadataEntry {
  return { key, ...value };
}

const enc = new TextEncoder();

/** Growable little-endian byte buffer for the header. */
class ByteSink {
  private buf = new Uint8Array(1 << 16);
  private view = new DataView(this.buf.buffer);
  length = 0;

  private reserve(n: number): number {
    if (this.length + n > this.buf.length) {
      let cap = this.buf.length * 2;
      while (cap < this.length + n) cap *= 2;
      const next = new Uint8Array(cap);
      next.set(this.buf.subarray(0, this.length));
      this.buf = next;
      this.view = new DataView(next.buffer);
    }
    const at = this.length;
    this.length += n;
    return at;
  }
  u8(v: number): void {
    const at = this.reserve(1);
    this.view.setUint8(at, v);
  }
  i8(v: number): void {
    const at = this.reserve(1);
    this.view.setInt8(at, v);
  }
  u16(v: number): void {
    const at = this.reserve(2);
    this.view.setUint16(at, v, true);
  }
  i16(v: number): void {
    const at = this.reserve(2);
    this.view.setInt16(at, v, true);
  }
  u32(v: number): void {
    const at = this.reserve(4);
    this.view.setUint32(at, v, true);
  }
  i32(v: number): void {
    const at = this.reserve(4);
    this.view.setInt32(at, v, true);
  }
  f32(v: number): void {
    const at = this.reserve(4);
    this.view.setFloat32(at, v, true);
  }
  f64(v: number): void {
    const at = this.reserve(8);
    this.view.setFloat64(at, v, true);
  }
  u64(v: bigint | number): void {
    const at = this.reserve(8);
    this.view.setBigUint64(at, BigInt(v), true);
  }
  i64(v: bigint | number): void {
    const at = this.reserve(8);
    this.view.setBigInt64(at, BigInt(v), true);
  }
  string(s: string): void {
    const b = enc.encode(s);
    this.u64(b.length);
    const at = this.reserve(b.length); // may reallocate this.buf: call it before reading this.buf
    this.buf.set(b, at);
  }
  zeros(n: number): void {
    const at = this.reserve(n);
    this.buf.fill(0, at, this.length);
  }
  bytes(): Uint8Array {
    return this.buf.subarray(0, this.length);
  }
}

function checkInt(path: string, what: string, v: unknown, min: number, max: number): void {
  if (typeof v !== "number" || !Number.isInteger(v) || v < min || v > max) {
    throw new GgufError(path, `${what}: ${String(v)} is not an integer in [${min}, ${max}]`);
  }
}

function checkBig(path: string, what: string, v: unknown, min: bigint, max: bigint): void {
  if (typeof v !== "bigint" || v < min || v > max) {
    throw new GgufError(path, `${what}: ${String(v)} is not a bigint in [${min}, ${max}]`);
  }
}

function writeScalar(path: string, sink: ByteSink, what: string, type: GgufScalarType, v: unknown): void {
  switch (type) {
    case GgufValueType.UINT8:
      checkInt(path, what, v, 0, 0xff);
      return sink.u8(v as number);
    case GgufValueType.INT8:
      checkInt(path, what, v, -0x80, 0x7f);
      return sink.i8(v as number);
    case GgufValueType.UINT16:
      checkInt(path, what, v, 0, 0xffff);
      return sink.u16(v as number);
    case GgufValueType.INT16:
      checkInt(path, what, v, -0x8000, 0x7fff);
      return sink.i16(v as number);
    case GgufValueType.UINT32:
      checkInt(path, what, v, 0, 0xffffffff);
      return sink.u32(v as number);
    case GgufValueType.INT32:
      checkInt(path, what, v, -0x80000000, 0x7fffffff);
      return sink.i32(v as number);
    case GgufValueType.FLOAT32:
    case GgufValueType.FLOAT64:
      if (typeof v !== "number") throw new GgufError(path, `${what}: ${String(v)} is not a number`);
      return type === GgufValueType.FLOAT32 ? sink.f32(v) : sink.f64(v);
    case GgufValueType.UINT64:
      checkBig(path, what, v, 0n, 0xffffffffffffffffn);
      return sink.u64(v as bigint);
    case GgufValueType.INT64:
      checkBig(path, what, v, -(1n << 63n), (1n << 63n) - 1n);
      return sink.i64(v as bigint);
    case GgufValueType.BOOL:
      if (typeof v !== "boolean") throw new GgufError(path, `${what}: ${String(v)} is not a boolean`);
      return sink.u8(v ? 1 : 0);
    case GgufValueType.STRING:
      if (typeof v !== "string") throw new GgufError(path, `${what}: ${String(v)} is not a string`);
      return sink.string(v);
    default:
      throw new GgufError(path, `${what}: invalid value type ${String(type)}`);
  }
}

interface PlannedTensor {
  spec: GgufTensorSpec;
  nElements: number;
  byteSize: number;
  relativeOffset: number;
}

function planTensors(path: string, specs: Iterable<GgufTensorSpec>, alignment: number): PlannedTensor[] {
  const out: PlannedTensor[] = [];
  const names = new Set<string>();
  let offset = 0;
  for (const spec of specs) {
    const nameBytes = enc.encode(spec.name).length;
    if (nameBytes === 0 || nameBytes >= GGML_MAX_NAME) {
      throw new GgufError(path, `tensor name ${JSON.stringify(spec.name)} must have 1..${GGML_MAX_NAME - 1} bytes`);
    }
    if (names.has(spec.name)) throw new GgufError(path, `duplicate tensor name ${JSON.stringify(spec.name)}`);
    names.add(spec.name);
    if (spec.dims.length < 1 || spec.dims.length > GGML_MAX_DIMS) {
      throw new GgufError(path, `tensor ${spec.name}: ${spec.dims.length} dimensions (must be 1..${GGML_MAX_DIMS})`);
    }
    let n = 1;
    for (const d of spec.dims) {
      checkInt(path, `tensor ${spec.name} dimension`, d, 0, Number.MAX_SAFE_INTEGER);
      n *= d;
    }
    const traits = ggmlTypeTraits(spec.type);
    if (!traits) throw new GgufError(path, `tensor ${spec.name}: invalid ggml type ${spec.type}`);
    if (!spec.raw && ![GgmlType.F32, GgmlType.F16, GgmlType.BF16, GgmlType.Q8_0].includes(spec.type as GgufWritableType)) {
      throw new GgufError(path, `tensor ${spec.name}: cannot convert float data to ${traits.name} (pass raw bytes)`);
    }
    if (spec.dims[0] % traits.blockSize !== 0) {
      throw new GgufError(path, `tensor ${spec.name}: row length ${spec.dims[0]} is not a multiple of the ${traits.name} block size ${traits.blockSize}`);
    }
    const byteSize = (n / traits.blockSize) * traits.typeSize;
    out.push({ spec, nElements: n, byteSize, relativeOffset: offset });
    offset += Math.ceil(byteSize / alignment) * alignment;
  }
  return out;
}

function buildHeader(path: string, metadata: GgufMetadataEntry[], tensors: PlannedTensor[], alignment: number): Uint8Array {
  const sink = new ByteSink();
  sink.u32(GGUF_MAGIC);
  sink.u32(3);
  sink.u64(tensors.length);
  sink.u64(metadata.length);
  const keys = new Set<string>();
  for (const e of metadata) {
    if (!e.key) throw new GgufError(path, "empty metadata key");
    if (keys.has(e.key)) throw new GgufError(path, `duplicate metadata key ${JSON.stringify(e.key)}`);
    keys.add(e.key);
    sink.string(e.key);
    sink.u32(e.type);
    if (e.type === GgufValueType.ARRAY) {
      if (!Array.isArray(e.value)) throw new GgufError(path, `metadata ${e.key}: array value is not an array`);
      if ((e.itemType as number) === GgufValueType.ARRAY) throw new GgufError(path, `metadata ${e.key}: nested arrays are not supported`);
      sink.u32(e.itemType);
      sink.u64(e.value.length);
      for (let i = 0; i < e.value.length; i++) writeScalar(path, sink, `metadata ${e.key}[${i}]`, e.itemType, e.value[i]);
    } else {
      writeScalar(path, sink, `metadata ${e.key}`, e.type, e.value);
    }
  }
  for (const t of tensors) {
    sink.string(t.spec.name);
    sink.u32(t.spec.dims.length);
    for (const d of t.spec.dims) sink.i64(d);
    sink.u32(t.spec.type);
    sink.u64(t.relativeOffset);
  }
  const pad = (alignment - (sink.length % alignment)) % alignment;
  sink.zeros(pad);
  return sink.bytes();
}

/** Elements converted per chunk, bounding the temporary byte buffer. */
const CONVERT_CHUNK = 1 << 20;

function convertChunk(type: GgufWritableType, src: Float32Array, start: number, n: number): Uint8Array {
  switch (type) {
    case GgmlType.F32:
      return new Uint8Array(src.buffer, src.byteOffset + start * 4, n * 4);
    case GgmlType.F16:
    case GgmlType.BF16: {
      const out = new Uint16Array(n);
      const conv = type === GgmlType.F16 ? f32ToF16Bits : f32ToBf16Bits;
      for (let i = 0; i < n; i++) out[i] = conv(src[start + i]);
      return new Uint8Array(out.buffer);
    }
    case GgmlType.Q8_0: {
      const nb = n / Q8_0_BLOCK;
      const out = new Uint8Array(nb * Q8_0_BYTES);
      quantizeQ8_0(src, start, nb, out, 0);
      return out;
    }
  }
}

/**
 * Writes a GGUF v3 file. Metadata and tensor infos go first; then each tensor's
 * data is obtained (calling lazy producers one at a time), converted to its
 * type (F16/BF16 round to nearest even, Q8_0 as ggml quantizes) and written,
 * padded to the alignment. The file appears at `path` only when complete: it is
 * written to `path + ".tmp-<pid>"` and renamed, and the temporary file is
 * removed on failure.
 *
 * @throws {GgufError} for invalid content (duplicate keys or names, values out
 *   of range for their type, data of the wrong length, ...).
 */
export async function writeGguf(path: string, content: GgufContent): Promise<void> {
  const metadata = [...content.metadata];
  let alignment = GGUF_DEFAULT_ALIGNMENT;
  const al = metadata.find((e) => e.key === "general.alignment");
  if (al) {
    if (al.type !== GgufValueType.UINT32 || al.value === 0 || (al.value & (al.value - 1)) !== 0) {
      throw new GgufError(path, "general.alignment must be a UINT32 power of two");
    }
    alignment = al.value;
  }
  const tensors = planTensors(path, content.tensors, alignment);
  const header = buildHeader(path, metadata, tensors, alignment);

  await writeFileAtomic(path, fileChunks(path, header, tensors, alignment));
}

/** The bytes of the file: the header, then each tensor's data (produced and converted one at a time) padded to the alignment. */
async function* fileChunks(path: string, header: Uint8Array, tensors: PlannedTensor[], alignment: number): AsyncGenerator<Uint8Array, void, undefined> {
  yield header;
  const zeros = new Uint8Array(alignment);
  for (const t of tensors) {
    const spec = t.spec;
    const data = typeof spec.data === "function" ? await spec.data() : spec.data;
    if (spec.raw) {
      if (!(data instanceof Uint8Array) || data.length !== t.byteSize) {
        throw new GgufError(path, `tensor ${spec.name}: raw data must be a Uint8Array of ${t.byteSize} bytes`);
      }
      yield data;
    } else {
      if (!(data instanceof Float32Array) || data.length !== t.nElements) {
        throw new GgufError(path, `tensor ${spec.name}: expected a Float32Array of ${t.nElements} values, got ${data instanceof Float32Array ? data.length : typeof data}`);
      }
      // CONVERT_CHUNK is a multiple of the Q8_0 block, and so is the element count.
      for (let start = 0; start < t.nElements; start += CONVERT_CHUNK) {
        const n = Math.min(CONVERT_CHUNK, t.nElements - start);
        yield convertChunk(spec.type, data, start, n);
      }
    }
    const pad = (alignment - (t.byteSize % alignment)) % alignment;
    if (pad) yield zeros.subarray(0, pad);
  }
}
