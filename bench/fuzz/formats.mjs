// Hostile-input fuzzer: low-level helpers shared by the mutators (seeded random numbers, typed
// GGUF values in JSON recipes, a GGUF header patcher, a PyTorch state-dict pickle and a zip
// writer whose declared sizes may lie). Plain ESM over dist/ (run `npx tsc -p tsconfig.json` first).
import { PickleBuilder } from "../../dist/convert/pickle.js";
import { encodeRawZip } from "../../dist/convert/zip.js";

/** mulberry32: a small, fast, seeded generator. */
export class Rng {
  constructor(seed) {
    this.s = seed >>> 0 || 0x9e3779b9;
  }
  next() {
    let t = (this.s = (this.s + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  int(n) {
    return Math.floor(this.next() * n);
  }
  pick(xs) {
    return xs[this.int(xs.length)];
  }
  chance(p) {
    return this.next() < p;
  }
}

// ---- typed values in JSON (NaN, Infinity and bigints survive the round trip)
export function encodeNumber(x) {
  if (typeof x === "bigint") return { $big: x.toString() };
  if (typeof x === "number" && !Number.isFinite(x)) return { $num: String(x) };
  if (Object.is(x, -0)) return { $num: "-0" };
  return x;
}
export function decodeNumber(x) {
  if (x && typeof x === "object" && "$big" in x) return BigInt(x.$big);
  if (x && typeof x === "object" && "$num" in x) return Number(x.$num);
  return x;
}
export function encodeValue(v) {
  const value = Array.isArray(v.value) ? v.value.map(encodeNumber) : encodeNumber(v.value);
  return v.type === 9 ? { type: 9, itemType: v.itemType, value } : { type: v.type, value };
}
export function decodeValue(e) {
  const value = Array.isArray(e.value) ? e.value.map(decodeNumber) : decodeNumber(e.value);
  return e.type === 9 ? { type: 9, itemType: e.itemType, value } : { type: e.type, value };
}

// ---- GGUF header patching (what the writer refuses to write: unknown types, zero dims, bad offsets)
/**
 * Finds tensor `name`'s info in a GGUF file's bytes: returns the offset of its n_dims field.
 * The info is the name (u64 length + bytes) followed by n_dims, dims, type and offset.
 */
export function findTensorInfo(bytes, name) {
  const nameBytes = Buffer.from(name, "utf8");
  const needle = Buffer.alloc(8 + nameBytes.length);
  needle.writeBigUInt64LE(BigInt(nameBytes.length), 0);
  nameBytes.copy(needle, 8);
  const at = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).indexOf(needle);
  return at < 0 ? -1 : at + needle.length;
}

/** Applies a header patch to tensor `name`: its type, one dimension, the dimension count or the data offset. */
export function patchTensorField(bytes, name, field, index, value) {
  const at = findTensorInfo(bytes, name);
  if (at < 0) return false;
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const nDims = b.readUInt32LE(at);
  if (field === "ndims") b.writeUInt32LE(value >>> 0, at);
  else if (field === "dim") b.writeBigInt64LE(BigInt(value), at + 4 + 8 * Math.min(index, Math.max(0, nDims - 1)));
  else if (field === "type") b.writeUInt32LE(value >>> 0, at + 4 + 8 * nDims);
  else if (field === "offset") b.writeBigUInt64LE(BigInt(value), at + 4 + 8 * nDims + 4);
  return true;
}

// ---- PyTorch state dicts (pickle protocol 2, as torch.save writes them) and zip archives
/** tensors: { name, key, dtype ("F32"|"F16"|"BF16"), numel, shape, stride, offset } */
export function stateDictPickle(tensors) {
  const storage = { F32: "FloatStorage", F16: "HalfStorage", BF16: "BFloat16Storage" };
  const p = new PickleBuilder().proto(2).emptyDict().put();
  if (tensors.length > 0) p.mark();
  for (const t of tensors) {
    p.str(t.name).put();
    p.global("torch._utils", "_rebuild_tensor_v2");
    p.mark();
    p.mark()
      .str("storage")
      .global("torch", storage[t.dtype] ?? "FloatStorage")
      .str(t.key)
      .str("cpu")
      .int(t.numel)
      .tuple()
      .put()
      .binpersid()
      .put();
    p.int(t.offset ?? 0);
    p.mark();
    for (const d of t.shape) p.int(d);
    p.tuple().put();
    p.mark();
    for (const d of t.stride) p.int(d);
    p.tuple().put();
    p.bool(false);
    p.global("collections", "OrderedDict").emptyTuple().reduce().put();
    p.tuple().put().reduce().put();
  }
  if (tensors.length > 0) p.setitems();
  return p.stop().finish();
}

/** Contiguous row-major strides of a shape. */
export function contiguous(shape) {
  const stride = [];
  let s = 1;
  for (let d = shape.length - 1; d >= 0; d--) {
    stride[d] = s;
    s *= shape[d];
  }
  return stride;
}

/** A zip archive; each file { name, body, deflated?, size? (declared; may lie), crc?, method? }. */
export const zipArchive = (files) => Buffer.from(encodeRawZip(files));
