/**
 * Checkpoint tensors as the converters see them: a name, a dtype, a shape in PyTorch/numpy order
 * (row-major, the last dimension contiguous) and a way to read the bytes. Safetensors files and
 * PyTorch zip checkpoints both produce these.
 */
import { bf16BitsToNumber, f16ToF32Table } from "../gguf/float.js";
import { ConvertError } from "./errors.js";

/** Element types a converter can turn into float32. */
export type FloatDType = "F32" | "F16" | "BF16";

/** Bytes per element of every dtype name the readers know (safetensors' names). */
export const DTYPE_BYTES: Readonly<Record<string, number>> = {
  F64: 8,
  F32: 4,
  F16: 2,
  BF16: 2,
  I64: 8,
  I32: 4,
  I16: 2,
  I8: 1,
  U8: 1,
  BOOL: 1,
};

/** A tensor in a checkpoint file. */
export interface SourceTensor {
  /** Name in the checkpoint, e.g. "model.layers.0.self_attn.q_proj.weight". */
  readonly name: string;
  /** Element type ("F32", "F16", "BF16", or another safetensors dtype name that cannot be converted). */
  readonly dtype: string;
  /** Shape in PyTorch order: `shape[shape.length - 1]` is the contiguous dimension. */
  readonly shape: readonly number[];
  /** The file it comes from (for messages). */
  readonly file: string;
  /** Reads the elements as contiguous little-endian bytes in row-major order (a fresh buffer). */
  readBytes(): Uint8Array;
}

/** Number of elements of a shape (1 for a scalar). */
export function numel(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** True when `dtype` is F32, F16 or BF16. */
export function isFloatDType(dtype: string): dtype is FloatDType {
  return dtype === "F32" || dtype === "F16" || dtype === "BF16";
}

/** Converts little-endian F32/F16/BF16 bytes to float32 values (exact for all three). */
export function bytesToF32(bytes: Uint8Array, dtype: FloatDType): Float32Array {
  if (dtype === "F32") {
    if (bytes.byteOffset % 4 === 0) return new Float32Array(bytes.buffer, bytes.byteOffset, bytes.length / 4);
    return new Float32Array(bytes.slice().buffer);
  }
  const n = bytes.length / 2;
  const out = new Float32Array(n);
  const h = bytes.byteOffset % 2 === 0 ? new Uint16Array(bytes.buffer, bytes.byteOffset, n) : new Uint16Array(bytes.slice().buffer);
  if (dtype === "F16") {
    const table = f16ToF32Table();
    for (let i = 0; i < n; i++) out[i] = table[h[i]];
  } else {
    for (let i = 0; i < n; i++) out[i] = bf16BitsToNumber(h[i]);
  }
  return out;
}

/**
 * Reads a tensor as float32 values in row-major order.
 *
 * @throws {ConvertError} for a dtype other than F32, F16 or BF16.
 */
export function readTensorAsF32(t: SourceTensor): Float32Array {
  if (!isFloatDType(t.dtype)) {
    throw new ConvertError(t.file, `tensor ${t.name} has dtype ${t.dtype}; only F32, F16 and BF16 tensors can be converted`);
  }
  const bytes = t.readBytes();
  const n = numel(t.shape);
  if (bytes.length !== n * DTYPE_BYTES[t.dtype]) {
    throw new ConvertError(t.file, `tensor ${t.name}: read ${bytes.length} bytes, expected ${n * DTYPE_BYTES[t.dtype]}`);
  }
  return bytesToF32(bytes, t.dtype);
}

/** "[4096, 4096]" for messages. */
export function shapeText(shape: readonly number[]): string {
  return `[${shape.join(", ")}]`;
}
