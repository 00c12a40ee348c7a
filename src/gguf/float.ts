/**
 * Element conversions for the tensor types this package reads and writes:
 * IEEE half floats (F16), bfloat16 (BF16) and ggml's Q8_0 blocks.
 *
 * All conversions from float32 round to nearest, ties to even, like numpy's
 * `astype(np.float16)`, ggml's F16C path and ggml's `ggml_compute_fp32_to_bf16`.
 */

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** The raw bits of `x` rounded to float32. */
export function f32Bits(x: number): number {
  f32[0] = x;
  return u32[0];
}

/**
 * Converts a number (first rounded to float32) to IEEE binary16 bits,
 * rounding to nearest even. Overflow gives ±infinity, NaN stays NaN (quiet,
 * keeping the top payload bits, as x86 F16C does).
 */
export function f32ToF16Bits(x: number): number {
  const u = f32Bits(x);
  const sign = (u >>> 16) & 0x8000;
  const exp = (u >>> 23) & 0xff;
  const mant = u & 0x7fffff;
  if (exp === 0xff) return mant === 0 ? sign | 0x7c00 : sign | 0x7e00 | (mant >>> 13);
  const e = exp - 112; // rebias 127 -> 15
  if (e >= 31) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign; // below half the smallest subnormal: +-0
    const m = mant | 0x800000;
    const shift = 14 - e; // 14..24
    let h = m >>> shift;
    const rem = m & ((1 << shift) - 1);
    const halfway = 1 << (shift - 1);
    if (rem > halfway || (rem === halfway && (h & 1) === 1)) h++;
    return sign | h; // a carry into the exponent field gives the smallest normal, as it should
  }
  let h = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (h & 1) === 1)) h++; // may carry up to infinity: correct
  return sign | h;
}

/** Exact float value of binary16 bits. */
export function f16BitsToNumber(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >>> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 31) return mant === 0 ? sign * Infinity : NaN;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

let f16Table: Float32Array | undefined;
/** Lookup table of all 65536 binary16 values as float32 (exact). */
export function f16ToF32Table(): Float32Array {
  if (!f16Table) {
    const t = new Float32Array(65536);
    for (let h = 0; h < 65536; h++) t[h] = f16BitsToNumber(h);
    f16Table = t;
  }
  return f16Table;
}

/**
 * Converts a number (first rounded to float32) to bfloat16 bits, rounding to
 * nearest even; NaN becomes a quiet NaN (ggml's `ggml_compute_fp32_to_bf16`).
 */
export function f32ToBf16Bits(x: number): number {
  const u = f32Bits(x);
  if ((u & 0x7fffffff) > 0x7f800000) return (u >>> 16) | 64;
  return ((u + (0x7fff + ((u >>> 16) & 1))) >>> 16) & 0xffff;
}

/** Exact float value of bfloat16 bits. */
export function bf16BitsToNumber(b: number): number {
  u32[0] = (b & 0xffff) << 16;
  return f32[0];
}

/** Q8_0: blocks of 32 values, each an f16 scale followed by 32 int8 quants (34 bytes). */
export const Q8_0_BLOCK = 32;
/** Bytes in one Q8_0 block. */
export const Q8_0_BYTES = 34;

/**
 * Quantizes `src[srcOffset .. srcOffset + 32*nBlocks)` to Q8_0 blocks written at
 * `dst[dstOffset..]`, exactly as ggml's `quantize_row_q8_0_ref` does (float32
 * arithmetic, `roundf` rounding half away from zero).
 */
export function quantizeQ8_0(src: Float32Array, srcOffset: number, nBlocks: number, dst: Uint8Array, dstOffset: number): void {
  const fr = Math.fround;
  for (let b = 0; b < nBlocks; b++) {
    const base = srcOffset + b * Q8_0_BLOCK;
    let amax = 0;
    for (let j = 0; j < Q8_0_BLOCK; j++) amax = Math.max(amax, Math.abs(src[base + j]));
    const d = fr(amax / 127);
    const id = d !== 0 ? fr(1 / d) : 0;
    const hd = f32ToF16Bits(d);
    const o = dstOffset + b * Q8_0_BYTES;
    dst[o] = hd & 0xff;
    dst[o + 1] = hd >>> 8;
    for (let j = 0; j < Q8_0_BLOCK; j++) {
      const v = fr(src[base + j] * id);
      const q = Math.sign(v) * Math.round(Math.abs(v)); // roundf: half away from zero
      dst[o + 2 + j] = q & 0xff;
    }
  }
}

/**
 * Dequantizes `nBlocks` Q8_0 blocks from `src[srcOffset..]` into `dst[dstOffset..]`
 * (`ggml`'s `dequantize_row_q8_0`: value = f16 scale × int8 quant, exact in float32).
 */
export function dequantizeQ8_0(src: Uint8Array, srcOffset: number, nBlocks: number, dst: Float32Array | Float64Array, dstOffset: number): void {
  const table = f16ToF32Table();
  for (let b = 0; b < nBlocks; b++) {
    const o = srcOffset + b * Q8_0_BYTES;
    const d = table[src[o] | (src[o + 1] << 8)];
    const out = dstOffset + b * Q8_0_BLOCK;
    for (let j = 0; j < Q8_0_BLOCK; j++) {
      const q = (src[o + 2 + j] << 24) >> 24;
      dst[out + j] = q * d;
    }
  }
}
