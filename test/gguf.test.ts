import { closeSync, existsSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync, ftruncateSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import {
  bf16BitsToNumber,
  dequantizeQ8_0,
  f16BitsToNumber,
  f32ToBf16Bits,
  f32ToF16Bits,
  GgmlType,
  GgufError,
  GgufValueType,
  gv,
  kv,
  openGguf,
  openGgufSync,
  quantizeQ8_0,
  readTensorBytes,
  readTensorF32,
  readTensorF64,
  writeGguf,
  type GgufMetadataEntry,
  type GgufTensorSpec,
} from "../src/gguf/index.js";

const dir = mkdtempSync(join(tmpdir(), "tallrec-gguf-test-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let fileNo = 0;
const tmpPath = (name = "f"): string => join(dir, `${name}-${fileNo++}.gguf`);

/** Small deterministic PRNG for test data. */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function randomF32(n: number, seed: number, scale = 1): Float32Array {
  const r = rng(seed);
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = (r() * 2 - 1) * scale;
  return a;
}

/** Expects `fn` to throw a GgufError whose message starts with `path` and matches `re`. */
function expectGgufError(fn: () => unknown, path: string, re?: RegExp): GgufError {
  let err: unknown;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  expect(err, "expected a GgufError").toBeInstanceOf(GgufError);
  const g = err as GgufError;
  expect(g.message.startsWith(`${path}: `)).toBe(true);
  if (re) expect(g.message).toMatch(re);
  return g;
}

describe("half-float conversion", () => {
  it("matches numpy on edge values", () => {
    // Expected bits from numpy: np.float32(v).astype(np.float16).view(np.uint16)
    const cases: Array<[number, number]> = [
      [65504, 0x7bff],
      [65519, 0x7bff],
      [65520, 0x7c00], // halfway to 65536: ties to even = infinity
      [1e9, 0x7c00],
      [-1e9, 0xfc00],
      [2 ** -24, 0x0001],
      [2 ** -25, 0x0000], // halfway between 0 and the smallest subnormal: even = 0
      [2.980232594040899e-8, 0x0001], // just above that halfway point
      [3 * 2 ** -25, 0x0002], // 1.5 subnormal steps: ties to even = 2
      [1 + 2 ** -11, 0x3c00],
      [1 + 3 * 2 ** -11, 0x3c02],
      [-0, 0x8000],
      [2 ** -14, 0x0400],
      [2 ** -14 - 2 ** -25, 0x0400], // rounds up from the largest subnormal into the smallest normal
      [0.1, 0x2e66],
      [-3.14159, 0xc248],
      [1e-8, 0x0000],
      [Infinity, 0x7c00],
      [-Infinity, 0xfc00],
    ];
    for (const [v, bits] of cases) expect(f32ToF16Bits(v), `f16(${v})`).toBe(bits);
    expect(Number.isNaN(f16BitsToNumber(f32ToF16Bits(NaN)))).toBe(true);
  });

  it("round-trips every finite half exactly and rounds every midpoint to even", () => {
    const f32 = new Float32Array(1);
    const u32 = new Uint32Array(f32.buffer);
    const nextUp = (x: number): number => {
      f32[0] = x;
      u32[0] += 1;
      return f32[0];
    };
    const nextDown = (x: number): number => {
      f32[0] = x;
      u32[0] -= 1;
      return f32[0];
    };
    for (let h = 0; h < 0x7c00; h++) {
      const v = f16BitsToNumber(h);
      expect(f32ToF16Bits(v)).toBe(h);
      expect(f32ToF16Bits(-v)).toBe(h | 0x8000);
      // midpoint to the next half (65504 -> 65536 = infinity for the last one)
      const next = h + 1 === 0x7c00 ? 65536 : f16BitsToNumber(h + 1);
      const mid = (v + next) / 2;
      const even = (h & 1) === 0 ? h : h + 1;
      if (f32ToF16Bits(mid) !== even) expect.fail(`midpoint after 0x${h.toString(16)} rounded to 0x${f32ToF16Bits(mid).toString(16)}`);
      if (f32ToF16Bits(nextDown(mid)) !== h) expect.fail(`below midpoint after 0x${h.toString(16)}`);
      if (f32ToF16Bits(nextUp(mid)) !== h + 1) expect.fail(`above midpoint after 0x${h.toString(16)}`);
    }
  });

  it("converts bfloat16 with round to nearest even", () => {
    expect(f32ToBf16Bits(1)).toBe(0x3f80);
    expect(f32ToBf16Bits(1 + 2 ** -8)).toBe(0x3f80); // tie, even stays
    expect(f32ToBf16Bits(1 + 3 * 2 ** -8)).toBe(0x3f82); // tie, rounds up to even
    expect(f32ToBf16Bits(1 + 2 ** -8 + 2 ** -20)).toBe(0x3f81);
    expect(f32ToBf16Bits(0.1)).toBe(0x3dcd); // numpy/torch value
    expect(f32ToBf16Bits(-3.14159)).toBe(0xc049);
    expect(f32ToBf16Bits(-0)).toBe(0x8000);
    expect(f32ToBf16Bits(3.4028234663852886e38)).toBe(0x7f80); // max float32 rounds to infinity
    expect(Number.isNaN(bf16BitsToNumber(f32ToBf16Bits(NaN)))).toBe(true);
    for (let b = 0; b < 0x7f80; b += 7) expect(f32ToBf16Bits(bf16BitsToNumber(b))).toBe(b);
  });

  it("quantizes Q8_0 blocks like ggml", () => {
    const x = new Float32Array(64);
    for (let i = 0; i < 32; i++) x[i] = i - 16; // amax 16
    // second block all zeros: scale 0, quants 0
    const q = new Uint8Array(68);
    quantizeQ8_0(x, 0, 2, q, 0);
    const d = Math.fround(16 / 127);
    expect(q[0] | (q[1] << 8)).toBe(f32ToF16Bits(d));
    const id = Math.fround(1 / d);
    for (let i = 0; i < 32; i++) {
      const v = Math.fround((i - 16) * id);
      const expected = Math.sign(v) * Math.round(Math.abs(v));
      expect((q[2 + i] << 24) >> 24).toBe(expected);
    }
    expect((q[2] << 24) >> 24).toBe(-127);
    expect([...q.subarray(34)].every((b) => b === 0)).toBe(true);
    const back = new Float32Array(64);
    dequantizeQ8_0(q, 0, 2, back, 0);
    const dh = f16BitsToNumber(q[0] | (q[1] << 8));
    for (let i = 0; i < 32; i++) expect(Math.abs(back[i] - x[i])).toBeLessThanOrEqual(dh / 2 + 16 * 2 ** -10);
    expect([...back.subarray(32)].every((v) => v === 0)).toBe(true);
  });
});

function allTypesMetadata(big = false): GgufMetadataEntry[] {
  const entries = [
    kv("general.architecture", gv.str("llama")),
    kv("t.u8", gv.u8(255)),
    kv("t.i8", gv.i8(-128)),
    kv("t.u16", gv.u16(65535)),
    kv("t.i16", gv.i16(-32768)),
    kv("t.u32", gv.u32(0xffffffff)),
    kv("t.i32", gv.i32(-0x80000000)),
    kv("t.f32", gv.f32(0.1)),
    kv("t.f64", gv.f64(0.1)),
    kv("t.bool.true", gv.bool(true)),
    kv("t.bool.false", gv.bool(false)),
    kv("t.str", gv.str('héllo ▁wörld \u{1F600}\n"quoted"')),
    kv("t.str.empty", gv.str("")),
    kv("t.u64", gv.u64(0xffffffffffffffffn)),
    kv("t.i64", gv.i64(-(1n << 63n))),
    kv("t.arr.u8", gv.numArray(GgufValueType.UINT8, [0, 1, 255])),
    kv("t.arr.i8", gv.numArray(GgufValueType.INT8, [-128, 0, 127])),
    kv("t.arr.u16", gv.numArray(GgufValueType.UINT16, [0, 65535])),
    kv("t.arr.i16", gv.numArray(GgufValueType.INT16, [-32768, 32767])),
    kv("t.arr.u32", gv.numArray(GgufValueType.UINT32, [0, 0xffffffff])),
    kv("t.arr.i32", gv.numArray(GgufValueType.INT32, [-0x80000000, 0x7fffffff, 6])),
    kv("t.arr.f32", gv.numArray(GgufValueType.FLOAT32, [1.5, -2.25, Infinity, -0])),
    kv("t.arr.f64", gv.numArray(GgufValueType.FLOAT64, [Math.PI, -1e300])),
    kv("t.arr.bool", gv.boolArray([true, false, true])),
    kv("t.arr.str", gv.strArray(["a", "", "▁▁", "<0x0A>"])),
    kv("t.arr.u64", gv.bigArray(GgufValueType.UINT64, [0n, 0xffffffffffffffffn])),
    kv("t.arr.i64", gv.bigArray(GgufValueType.INT64, [-(1n << 63n), (1n << 63n) - 1n])),
    kv("t.arr.empty", gv.strArray([])),
  ];
  if (big) {
    // larger than the writer's initial 64 KiB header buffer and the reader's 64 KiB chunk
    entries.push(kv("t.arr.big", gv.strArray(Array.from({ length: 20000 }, (_, i) => `token-${i}-▁`))));
    entries.push(kv("t.str.big", gv.str("x".repeat(100_000) + "end")));
  }
  return entries;
}

describe("GGUF round trip", () => {
  it("keeps every metadata type and value", async () => {
    const path = tmpPath("meta");
    const meta = allTypesMetadata(true);
    await writeGguf(path, { metadata: meta, tensors: [] });
    const f = await openGguf(path);
    expect(f.version).toBe(3);
    expect([...f.metadata.keys()]).toEqual(meta.map((m) => m.key));
    for (const m of meta) {
      const { key, ...value } = m;
      const got = f.metadata.get(key);
      if (value.type === GgufValueType.FLOAT32) {
        expect(got).toEqual({ type: GgufValueType.FLOAT32, value: Math.fround(value.value as number) });
      } else {
        expect(got, key).toEqual(value);
      }
    }
    expect(f.tensors).toEqual([]);
  });

  it("writes and reads F32, F16, BF16, Q8_0 and raw tensors with any alignment", async () => {
    for (const alignment of [undefined, 1, 64]) {
      const path = tmpPath("tensors");
      const a = randomF32(7 * 3, 1);
      const b = randomF32(64 * 5, 2, 100);
      const c = randomF32(96, 3, 3);
      const d = randomF32(32 * 2 * 2 * 2, 4, 0.01);
      const raw = new Uint8Array(18 * 2).map((_, i) => i);
      const tensors: GgufTensorSpec[] = [
        { name: "a", dims: [7, 3], type: GgmlType.F32, data: a },
        { name: "b", dims: [64, 5], type: GgmlType.F16, data: () => b },
        { name: "c", dims: [96], type: GgmlType.BF16, data: async () => c },
        { name: "d", dims: [32, 2, 2, 2], type: GgmlType.Q8_0, data: d },
        { name: "raw.q4_0", dims: [64], type: GgmlType.Q4_0, raw: true, data: raw },
      ];
      const metadata = alignment === undefined ? [] : [kv("general.alignment", gv.u32(alignment))];
      await writeGguf(path, { metadata, tensors });
      const f = openGgufSync(path);
      const al = alignment ?? 32;
      expect(f.alignment).toBe(al);
      expect(f.dataOffset % al).toBe(0);
      expect(f.tensors.map((t) => [t.name, t.dims, t.typeName])).toEqual([
        ["a", [7, 3], "F32"],
        ["b", [64, 5], "F16"],
        ["c", [96], "BF16"],
        ["d", [32, 2, 2, 2], "Q8_0"],
        ["raw.q4_0", [64], "Q4_0"],
      ]);
      let expectedRel = 0;
      for (const t of f.tensors) {
        expect(t.relativeOffset).toBe(expectedRel); // packed in order, as llama.cpp requires
        expect(t.offset).toBe(f.dataOffset + t.relativeOffset);
        expectedRel += Math.ceil(t.byteSize / al) * al;
      }
      expect(f.tensorsByName.get("d")?.byteSize).toBe(8 * 34);
      expect(statSync(path).size).toBe(f.dataOffset + expectedRel);

      expect([...readTensorF32(f, "a")]).toEqual([...a]);
      expect([...readTensorF64(f, "a")]).toEqual([...a]);
      expect([...readTensorF32(f, "b")]).toEqual([...b].map((v) => f16BitsToNumber(f32ToF16Bits(v))));
      expect([...readTensorF32(f, "c")]).toEqual([...c].map((v) => bf16BitsToNumber(f32ToBf16Bits(v))));
      const dq = readTensorF64(f, "d");
      const dExpected = new Uint8Array(8 * 34);
      quantizeQ8_0(d, 0, 8, dExpected, 0);
      expect(readTensorBytes(f, "d")).toEqual(dExpected);
      for (let i = 0; i < d.length; i++) expect(Math.abs(dq[i] - d[i])).toBeLessThan(0.01 / 127);
      expect(readTensorBytes(f, "raw.q4_0")).toEqual(raw);
      expectGgufError(() => readTensorF32(f, "raw.q4_0"), path, /raw\.q4_0 has type Q4_0; only F32, F16, BF16 and Q8_0/);
      expectGgufError(() => readTensorF32(f, "nope"), path, /no tensor named "nope"/);
    }
  });

  it("streams: each tensor is produced after the previous one is on disk, and the file appears only when complete", async () => {
    const path = tmpPath("stream");
    const tmp = `${path}.tmp-${process.pid}`;
    const sizes: number[] = [];
    const calls: string[] = [];
    const spec = (i: number): GgufTensorSpec => ({
      name: `t${i}`,
      dims: [1024],
      type: GgmlType.F32,
      data: () => {
        calls.push(`t${i}`);
        expect(existsSync(path)).toBe(false);
        sizes.push(statSync(tmp).size);
        return new Float32Array(1024).fill(i);
      },
    });
    await writeGguf(path, { metadata: [], tensors: [spec(0), spec(1), spec(2)] });
    expect(calls).toEqual(["t0", "t1", "t2"]);
    // the data of tensor i-1 (4096 bytes) was written before tensor i was asked for
    expect(sizes[1] - sizes[0]).toBe(4096);
    expect(sizes[2] - sizes[1]).toBe(4096);
    expect(existsSync(tmp)).toBe(false);
    const f = openGgufSync(path);
    expect(readTensorF32(f, "t2")[1023]).toBe(2);
  });

  it("leaves no file behind when a tensor producer fails", async () => {
    const path = tmpPath("fail");
    await expect(
      writeGguf(path, {
        metadata: [],
        tensors: [
          { name: "ok", dims: [4], type: GgmlType.F32, data: new Float32Array(4) },
          {
            name: "bad",
            dims: [4],
            type: GgmlType.F32,
            data: () => {
              throw new Error("producer failed");
            },
          },
        ],
      }),
    ).rejects.toThrow("producer failed");
    expect(existsSync(path)).toBe(false);
    expect(readdirSync(dir).filter((n) => n.includes("fail"))).toEqual([]);
  });

  it("rejects invalid content when writing", async () => {
    const path = tmpPath("invalid");
    const cases: Array<[Parameters<typeof writeGguf>[1], RegExp]> = [
      [{ metadata: [kv("x", gv.u8(256))], tensors: [] }, /metadata x: 256 is not an integer in \[0, 255\]/],
      [{ metadata: [kv("x", gv.i32(1.5))], tensors: [] }, /not an integer/],
      [{ metadata: [kv("x", gv.u64(-1n))], tensors: [] }, /not a bigint/],
      [{ metadata: [kv("x", gv.u8(1)), kv("x", gv.u8(2))], tensors: [] }, /duplicate metadata key "x"/],
      [{ metadata: [kv("general.alignment", gv.u32(48))], tensors: [] }, /power of two/],
      [{ metadata: [], tensors: [{ name: "t", dims: [3], type: GgmlType.F32, data: new Float32Array(4) }] }, /expected a Float32Array of 3 values, got 4/],
      [
        {
          metadata: [],
          tensors: [
            { name: "t", dims: [1], type: GgmlType.F32, data: new Float32Array(1) },
            { name: "t", dims: [1], type: GgmlType.F32, data: new Float32Array(1) },
          ],
        },
        /duplicate tensor name "t"/,
      ],
      [{ metadata: [], tensors: [{ name: "q", dims: [33], type: GgmlType.Q8_0, data: new Float32Array(33) }] }, /not a multiple of the Q8_0 block size 32/],
      [{ metadata: [], tensors: [{ name: "x".repeat(64), dims: [1], type: GgmlType.F32, data: new Float32Array(1) }] }, /must have 1\.\.63 bytes/],
      [{ metadata: [], tensors: [{ name: "r", dims: [32], type: GgmlType.Q4_0, raw: true, data: new Uint8Array(17) }] }, /raw data must be a Uint8Array of 18 bytes/],
    ];
    for (const [content, re] of cases) {
      await expect(writeGguf(path, content)).rejects.toThrow(re);
      await expect(writeGguf(path, content)).rejects.toBeInstanceOf(GgufError);
      expect(existsSync(path)).toBe(false);
    }
  });
});

/** Byte builder for hand-made (possibly malformed) GGUF files. */
class Bytes {
  private parts: number[] = [];
  u32(v: number): this {
    for (let i = 0; i < 4; i++) this.parts.push((v >>> (8 * i)) & 0xff);
    return this;
  }
  u64(v: bigint): this {
    for (let i = 0n; i < 8n; i++) this.parts.push(Number((v >> (8n * i)) & 0xffn));
    return this;
  }
  str(s: string): this {
    const b = Buffer.from(s, "utf8");
    this.u64(BigInt(b.length));
    this.parts.push(...b);
    return this;
  }
  raw(...b: number[]): this {
    this.parts.push(...b);
    return this;
  }
  header(nTensors: bigint, nKv: bigint, version = 3): this {
    return this.raw(0x47, 0x47, 0x55, 0x46).u32(version).u64(nTensors).u64(nKv);
  }
  save(): string {
    const p = tmpPath("crafted");
    writeFileSync(p, Uint8Array.from(this.parts));
    return p;
  }
}

describe("GGUF reader robustness", () => {
  let validPath = "";
  let valid: Uint8Array = new Uint8Array();

  it("prepares a small valid file", async () => {
    validPath = tmpPath("valid");
    await writeGguf(validPath, {
      metadata: allTypesMetadata(),
      tensors: [
        { name: "blk.0.attn_q.weight", dims: [32, 2], type: GgmlType.F16, data: randomF32(64, 9) },
        { name: "blk.0.attn_k.weight", dims: [32], type: GgmlType.Q8_0, data: randomF32(32, 10) },
        { name: "output_norm.weight", dims: [5], type: GgmlType.F32, data: randomF32(5, 11) },
      ],
    });
    valid = new Uint8Array(readFileSync(validPath)); // a copy: Buffer.slice would share memory
    expect(openGgufSync(validPath).tensors.length).toBe(3);
  });

  it("reports truncation at every offset, naming the file", () => {
    const f = openGgufSync(validPath);
    const p = tmpPath("trunc");
    const last = f.tensors[f.tensors.length - 1];
    const lastEnd = last.offset + last.byteSize;
    for (let len = 0; len < lastEnd; len++) {
      writeFileSync(p, valid.subarray(0, len));
      const e = expectGgufError(() => openGgufSync(p), p, /truncated/);
      if (len >= f.dataOffset) {
        const t = f.tensors.find((x) => x.offset + x.byteSize > len)!;
        expect(e.message).toBe(`${p}: truncated: tensor ${t.name} ends at byte ${t.offset + t.byteSize} but the file has ${len} bytes`);
      }
    }
    // cutting only the padding after the last tensor is fine
    writeFileSync(p, valid.subarray(0, lastEnd));
    expect([...readTensorF32(openGgufSync(p), last.name)]).toEqual([...readTensorF32(f, last.name)]);
  });

  it("reports a file that shrank after it was opened", () => {
    const p = tmpPath("shrink");
    writeFileSync(p, valid);
    const f = openGgufSync(p);
    writeFileSync(p, valid.subarray(0, f.dataOffset + 10));
    expectGgufError(() => readTensorF32(f, "blk.0.attn_q.weight"), p, /truncated: tensor blk\.0\.attn_q\.weight ends at byte \d+ but the file ended at byte \d+/);
  });

  it("throws GgufError (never anything else) on random bytes and corrupted files", () => {
    const r = rng(42);
    const p = tmpPath("fuzz");
    let parsed = 0;
    for (let i = 0; i < 300; i++) {
      let bytes: Uint8Array;
      if (i < 100) {
        bytes = new Uint8Array(Math.floor(r() * 2000)).map(() => Math.floor(r() * 256));
        if (i % 2 === 0 && bytes.length >= 4) bytes.set([0x47, 0x47, 0x55, 0x46]); // right magic, random rest
        if (i % 4 === 0 && bytes.length >= 8) bytes.set([3, 0, 0, 0], 4);
      } else {
        bytes = valid.slice();
        const flips = 1 + Math.floor(r() * 4);
        for (let k = 0; k < flips; k++) bytes[Math.floor(r() * bytes.length)] ^= 1 << Math.floor(r() * 8);
      }
      writeFileSync(p, bytes);
      try {
        const f = openGgufSync(p);
        parsed++;
        for (const t of f.tensors) {
          try {
            readTensorF64(f, t.name);
          } catch (e) {
            expect(e).toBeInstanceOf(GgufError);
          }
        }
      } catch (e) {
        if (!(e instanceof GgufError)) throw new Error(`case ${i}: not a GgufError: ${String(e)}`, { cause: e });
        expect(e.message.startsWith(p)).toBe(true);
      }
    }
    expect(parsed).toBeGreaterThan(0); // some flips only touch values or tensor data
  });

  it("rejects bad magic, versions and absurd counts and lengths without allocating", () => {
    let p = new Bytes().raw(0x47, 0x47, 0x4d, 0x4c).u32(3).u64(0n).u64(0n).save();
    expectGgufError(() => openGgufSync(p), p, /bad magic "GGML"/);
    p = new Bytes().save();
    expectGgufError(() => openGgufSync(p), p, /truncated: 0 bytes/);
    p = new Bytes().header(0n, 0n, 1).save();
    expectGgufError(() => openGgufSync(p), p, /version 1 is not supported/);
    p = new Bytes().header(0n, 0n, 0x03000000).save();
    expectGgufError(() => openGgufSync(p), p, /big-endian/);
    p = new Bytes().header(10n ** 12n, 0n).save();
    expectGgufError(() => openGgufSync(p), p, /truncated or corrupt: tensor count is 1000000000000 but a file of 24 bytes/);
    p = new Bytes().header(0n, 1n << 62n).save();
    expectGgufError(() => openGgufSync(p), p, /metadata count is 4611686018427387904/);
    p = new Bytes()
      .header(0n, 1n)
      .u64(1n << 60n)
      .raw(0x61)
      .save();
    expectGgufError(() => openGgufSync(p), p, /metadata key #0 is a string of 1152921504606846976 bytes/);
    p = new Bytes()
      .header(0n, 1n)
      .str("k")
      .u32(GgufValueType.STRING)
      .u64(1n << 60n)
      .save();
    expectGgufError(() => openGgufSync(p), p, /metadata "k" is a string of 1152921504606846976 bytes/);
    p = new Bytes()
      .header(0n, 1n)
      .str("k")
      .u32(GgufValueType.ARRAY)
      .u32(GgufValueType.UINT64)
      .u64(1n << 62n)
      .save();
    expectGgufError(() => openGgufSync(p), p, /element count of metadata "k" is 4611686018427387904/);
    p = new Bytes().header(0n, 1n).str("k").u32(GgufValueType.ARRAY).u32(GgufValueType.STRING).u64(3n).str("a").save();
    expectGgufError(() => openGgufSync(p), p, /truncated or corrupt: element count of metadata "k" is 3 but a file of 58 bytes can hold at most 1 at offset 41/);
    p = new Bytes().header(0n, 1n).str("k").u32(GgufValueType.ARRAY).u32(GgufValueType.ARRAY).u64(0n).raw(0, 0, 0, 0).save();
    expectGgufError(() => openGgufSync(p), p, /nested array/);
    p = new Bytes().header(0n, 1n).str("k").u32(13).raw(0, 0, 0, 0).save();
    expectGgufError(() => openGgufSync(p), p, /invalid value type 13/);
    p = new Bytes().header(0n, 1n).str("k").u32(GgufValueType.BOOL).raw(7).raw(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0).save();
    expectGgufError(() => openGgufSync(p), p, /bool with byte value 7/);
    p = new Bytes().header(0n, 2n).str("k").u32(GgufValueType.UINT8).raw(1).str("k").u32(GgufValueType.UINT8).raw(2).save();
    expectGgufError(() => openGgufSync(p), p, /duplicate metadata key "k"/);
    p = new Bytes().header(0n, 1n).str("").u32(GgufValueType.UINT8).raw(1).raw(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0).save();
    expectGgufError(() => openGgufSync(p), p, /metadata key #0 is empty/);
    p = new Bytes().header(0n, 1n).str("general.alignment").u32(GgufValueType.UINT32).u32(48).save();
    expectGgufError(() => openGgufSync(p), p, /alignment 48 is not a power of 2/);
    p = new Bytes().header(0n, 1n).str("general.alignment").u32(GgufValueType.UINT64).u64(32n).save();
    expectGgufError(() => openGgufSync(p), p, /general\.alignment must be UINT32 but is UINT64/);
  });

  it("rejects malformed tensor infos", () => {
    const tensor = (b: Bytes, name: string, dims: bigint[], type: number, offset: bigint): Bytes => {
      b.str(name).u32(dims.length);
      for (const d of dims) b.u64(d);
      return b.u32(type).u64(offset);
    };
    const pad = new Array(64).fill(0);
    let p = tensor(new Bytes().header(1n, 0n), "w", [1n, 1n, 1n, 1n, 1n], 0, 0n)
      .raw(...pad)
      .save();
    expectGgufError(() => openGgufSync(p), p, /tensor w has 5 dimensions/);
    p = tensor(new Bytes().header(1n, 0n), "w", [4n], 31, 0n)
      .raw(...pad)
      .save();
    expectGgufError(() => openGgufSync(p), p, /tensor w has invalid ggml type 31/);
    p = tensor(new Bytes().header(1n, 0n), "w", [33n], GgmlType.Q8_0, 0n)
      .raw(...pad)
      .save();
    expectGgufError(() => openGgufSync(p), p, /rows of 33 elements, not a multiple of the block size 32/);
    p = tensor(new Bytes().header(1n, 0n), "w", [1n << 40n, 1n << 40n], 0, 0n)
      .raw(...pad)
      .save();
    expectGgufError(() => openGgufSync(p), p, /tensor w has too many elements|absurdly large/);
    p = tensor(new Bytes().header(1n, 0n), "w", [-1n], 0, 0n)
      .raw(...pad)
      .save();
    expectGgufError(() => openGgufSync(p), p, /negative dimension/);
    p = tensor(new Bytes().header(1n, 0n), "w", [4n], 0, 1n << 60n)
      .raw(...pad)
      .save();
    expectGgufError(() => openGgufSync(p), p, /data offset 1152921504606846976, beyond the end of the file/);
    p = tensor(new Bytes().header(1n, 0n), "w", [4n], 0, 4n)
      .raw(...pad)
      .save();
    expectGgufError(() => openGgufSync(p), p, /tensor w has data offset 4, not a multiple of the alignment 32/);
    p = tensor(tensor(new Bytes().header(2n, 0n), "w", [4n], 0, 0n), "w", [4n], 0, 32n)
      .raw(...pad)
      .save();
    expectGgufError(() => openGgufSync(p), p, /duplicate tensor name "w"/);
    p = tensor(new Bytes().header(1n, 0n), "big", [1024n, 1024n], 0, 0n)
      .raw(...pad)
      .save();
    expectGgufError(() => openGgufSync(p), p, /truncated: tensor big ends at byte 4194400 but the file has 131 bytes/);
  });

  it("reads only the header of a large file", () => {
    // A 2 GiB sparse tensor: opening must neither read nor allocate it.
    const crafted = new Bytes()
      .header(1n, 1n)
      .str("general.name")
      .u32(GgufValueType.STRING)
      .str("sparse")
      .str("w")
      .u32(1)
      .u64(1n << 29n)
      .u32(0)
      .u64(0n)
      .save();
    const headLen = statSync(crafted).size;
    const dataOffset = Math.ceil(headLen / 32) * 32;
    const fd = openSync(crafted, "r+");
    ftruncateSync(fd, dataOffset + 2 ** 31);
    closeSync(fd);
    const before = process.memoryUsage().arrayBuffers;
    const t0 = performance.now();
    const f = openGgufSync(crafted);
    const ms = performance.now() - t0;
    expect(f.tensors[0].byteSize).toBe(2 ** 31);
    expect(f.dataOffset).toBe(dataOffset);
    expect(process.memoryUsage().arrayBuffers - before).toBeLessThan(16 * 2 ** 20);
    expect(ms).toBeLessThan(500);
    rmSync(crafted);
  });
});
