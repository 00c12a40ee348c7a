/**
 * The file formats behind the converters, without Python: safetensors, zip (stored, deflated,
 * zip64), the safe pickle reader on pickles made by CPython's own pickler in torch.save's shape
 * (protocols 2 and 4, strided views, storage offsets), PyTorch checkpoints, SentencePiece models,
 * and llama.cpp's q/k row permutation.
 */
import { writeFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { ConvertError } from "../src/convert/errors.js";
import { permuteQkRows } from "../src/convert/permute.js";
import { PickleBuilder, PickleError, PyDict, PyTuple, unpickle } from "../src/convert/pickle.js";
import { encodeSafetensors, openSafetensors } from "../src/convert/safetensors.js";
import { encodeSentencePieceModel, parseSentencePieceModel, type SentencePieceModel } from "../src/convert/sentencepiece.js";
import { readTensorAsF32, type SourceTensor } from "../src/convert/tensor.js";
import { encodeTorchCheckpoint, openTorchCheckpoint } from "../src/convert/torch.js";
import { encodeZip, openZip, readZipEntry } from "../src/convert/zip.js";
import { f32ToBf16Bits, f32ToF16Bits } from "../src/gguf/float.js";

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "tallrec-convert-formats-"));
});
afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

function file(name: string, data: Uint8Array | Uint8Array[]): string {
  const p = join(dir, name);
  writeFileSync(p, Array.isArray(data) ? Buffer.concat(data) : data);
  return p;
}
const f32 = (...v: number[]) => new Uint8Array(new Float32Array(v).buffer);
const u16 = (v: number[]) => new Uint8Array(new Uint16Array(v).buffer);
const values = (t: SourceTensor | undefined) => Array.from(readTensorAsF32(t!));
const byName = (ts: SourceTensor[]) => new Map(ts.map((t) => [t.name, t]));

describe("safetensors", () => {
  it("reads F32, F16 and BF16 tensors and the metadata it wrote", () => {
    const p = file(
      "a.safetensors",
      encodeSafetensors(
        [
          { name: "x", dtype: "F32", shape: [2, 2], data: f32(1, -2, 3.5, 1e-8) },
          { name: "h", dtype: "F16", shape: [3], data: u16([0.5, -2, 65504].map(f32ToF16Bits)) },
          { name: "b", dtype: "BF16", shape: [1, 2], data: u16([1.5, -3e38].map(f32ToBf16Bits)) },
        ],
        { format: "pt" },
      ),
    );
    const f = openSafetensors(p);
    expect(f.metadata).toEqual({ format: "pt" });
    const t = byName(f.tensors);
    expect(t.get("x")!.shape).toEqual([2, 2]);
    expect(values(t.get("x"))).toEqual([1, -2, 3.5, Math.fround(1e-8)]);
    expect(values(t.get("h"))).toEqual([0.5, -2, 65504]);
    expect(values(t.get("b"))[0]).toBe(1.5);
    expect(values(t.get("b"))[1]).toBeCloseTo(-3e38, -36);
  });

  it("refuses truncated files and inconsistent headers, naming the problem", () => {
    const good = Buffer.concat(encodeSafetensors([{ name: "x", dtype: "F32", shape: [4], data: f32(1, 2, 3, 4) }]));
    const bad = (name: string, bytes: Uint8Array, pattern: RegExp) => {
      expect(() => openSafetensors(file(name, bytes))).toThrow(pattern);
      try {
        openSafetensors(join(dir, name));
      } catch (e) {
        expect(e).toBeInstanceOf(ConvertError);
      }
    };
    bad("t1.safetensors", good.subarray(0, good.length - 4), /truncated: tensor x ends at byte \d+ but the file has \d+ bytes/);
    bad("t2.safetensors", good.subarray(0, 20), /truncated or not a safetensors file: the header claims \d+ bytes/);
    bad("t3.safetensors", good.subarray(0, 5), /too short/);
    const hdr = (h: object) => {
      const j = Buffer.from(JSON.stringify(h));
      const n = Buffer.alloc(8);
      n.writeBigUInt64LE(BigInt(j.length));
      return Buffer.concat([n, j, Buffer.alloc(16)]);
    };
    bad("h1.safetensors", hdr({ x: { dtype: "F32", shape: [4], data_offsets: [0, 12] } }), /F32 \[4\] needs 16 bytes but data_offsets span 12/);
    bad("h2.safetensors", hdr({ x: { dtype: "Q4", shape: [4], data_offsets: [0, 16] } }), /unknown dtype "Q4"/);
    bad("h3.safetensors", hdr({ x: { dtype: "F32", shape: [-4], data_offsets: [0, 16] } }), /invalid shape/);
    bad("h4.safetensors", Buffer.concat([Buffer.from([4, 0, 0, 0, 0, 0, 0, 0]), Buffer.from("{oops")]), /the header is not JSON/);
  });

  it("integer tensors are listed but cannot be converted", () => {
    const p = file("i.safetensors", encodeSafetensors([{ name: "ids", dtype: "I64", shape: [2], data: new Uint8Array(16) }]));
    expect(() => readTensorAsF32(openSafetensors(p).tensors[0])).toThrow(/dtype I64; only F32, F16 and BF16/);
  });
});

describe("zip", () => {
  const entries = [
    { name: "a/data.pkl", data: new TextEncoder().encode("hello ".repeat(50)) },
    { name: "a/data/0", data: f32(1, 2, 3) },
    { name: "a/empty", data: new Uint8Array(0) },
  ];
  it.each([
    { label: "stored", opts: {} },
    { label: "deflated", opts: { deflate: new Set(["a/data.pkl", "a/data/0"]) } },
    { label: "zip64 records", opts: { zip64: true } },
    { label: "64-byte aligned (torch's layout)", opts: { align: 64 } },
  ])("reads $label entries", ({ label, opts }) => {
    const p = file(`z-${label.replace(/\W+/g, "-")}.zip`, encodeZip(entries, opts));
    const z = openZip(p);
    expect([...z.entries.keys()]).toEqual(entries.map((e) => e.name));
    for (const e of entries) expect(Buffer.from(readZipEntry(z, z.entries.get(e.name)!)).equals(Buffer.from(e.data))).toBe(true);
    if ("deflate" in opts) expect(z.entries.get("a/data.pkl")!.method).toBe(8);
    if ("deflate" in opts) expect(z.entries.get("a/data.pkl")!.compressedSize).toBeLessThan(300);
  });

  it("detects corruption and truncation", () => {
    const bytes = encodeZip(entries);
    const corrupt = bytes.slice();
    corrupt[40] ^= 0xff; // inside the first entry's data
    const z = openZip(file("corrupt.zip", corrupt));
    expect(() => readZipEntry(z, z.entries.get("a/data.pkl")!)).toThrow(/CRC-32 mismatch/);
    expect(() => openZip(file("cut.zip", bytes.subarray(0, bytes.length - 30)))).toThrow(/truncated or not a zip archive: no end-of-central-directory/);
    expect(() => openZip(file("notzip.zip", new Uint8Array(100)))).toThrow(/not a zip archive/);
  });
});

/**
 * data.pkl written by CPython's pickle.Pickler (protocol 2, and protocol 4 with FRAME, MEMOIZE,
 * STACK_GLOBAL) exactly as torch.save pickles an OrderedDict of tensors:
 *   w = FloatStorage "0" (6 floats), offset 0, size (3, 2), stride (1, 3)   (a transposed view)
 *   v = FloatStorage "0", offset 2, size (2,), stride (1,)
 *   h = HalfStorage "1" (3 halves), offset 0, size (3,), stride (1,)
 */
const PY_PICKLES = {
  2: "gAJjY29sbGVjdGlvbnMKT3JkZXJlZERpY3QKcQApUnEBKFgBAAAAd3ECY3RvcmNoLl91dGlscwpfcmVidWlsZF90ZW5zb3JfdjIKcQMoKFgHAAAAc3RvcmFnZXEEY3RvcmNoCkZsb2F0U3RvcmFnZQpxBVgBAAAAMHEGWAMAAABjcHVxB0sGdHEIUUsASwNLAoZxCUsBSwOGcQqJaAApUnELdHEMUnENWAEAAAB2cQ5oAygoaARoBWgGaAdLBnRxD1FLAksChXEQSwGFcRGJaAApUnESdHETUnEUWAEAAABocRVoAygoaARjdG9yY2gKSGFsZlN0b3JhZ2UKcRZYAQAAADFxF2gHSwN0cRhRSwBLA4VxGWgRiWgAKVJxGnRxG1JxHHUu",
  4: "gASV/AAAAAAAAACMC2NvbGxlY3Rpb25zlIwLT3JkZXJlZERpY3SUk5QpUpQojAF3lIwMdG9yY2guX3V0aWxzlIwSX3JlYnVpbGRfdGVuc29yX3YylJOUKCiMB3N0b3JhZ2WUjAV0b3JjaJSMDEZsb2F0U3RvcmFnZZSTlIwBMJSMA2NwdZRLBnSUUUsASwNLAoaUSwFLA4aUiWgCKVKUdJRSlIwBdpRoBygoaAhoC2gMaA1LBnSUUUsCSwKFlEsBhZSJaAIpUpR0lFKUjAFolGgHKChoCGgJjAtIYWxmU3RvcmFnZZSTlIwBMZRoDUsDdJRRSwBLA4WUaBeJaAIpUpR0lFKUdS4=",
} as const;

const STATE_DICT_WITH_METADATA =
  "gAJjY29sbGVjdGlvbnMKT3JkZXJlZERpY3QKcQApUnEBWA4AAABsbV9oZWFkLndlaWdodHECY3RvcmNoLl91dGlscwpfcmVidWlsZF90ZW5zb3JfdjIKcQMoKFgHAAAAc3RvcmFnZXEEY3RvcmNoCkZsb2F0U3RvcmFnZQpxBVgBAAAAMHEGWAMAAABjcHVxB0sCdHEIUUsASwFLAoZxCUsCSwGGcQqJaAApUnELdHEMUnENc31xDlgJAAAAX21ldGFkYXRhcQ9oAClScRAoWAAAAABxEX1xElgHAAAAdmVyc2lvbnETSwFzWAcAAABsbV9oZWFkcRR9cRVoE0sBc3VzYi4=";

describe("PyTorch checkpoints", () => {
  const storages = [
    { name: "py/data/0", data: f32(1, 2, 3, 4, 5, 6) },
    { name: "py/data/1", data: u16([0.5, -2, 65504].map(f32ToF16Bits)) },
    { name: "py/version", data: new TextEncoder().encode("3\n") },
  ];
  it.each([2, 4] as const)("reads CPython protocol %i pickles: strided views and storage offsets are honoured", (proto) => {
    const pkl = new Uint8Array(Buffer.from(PY_PICKLES[proto], "base64"));
    const p = file(`py${proto}.bin`, encodeZip([{ name: "py/data.pkl", data: pkl }, ...storages], { deflate: new Set(["py/data/1"]) }));
    const t = byName(openTorchCheckpoint(p).tensors);
    expect([...t.keys()]).toEqual(["w", "v", "h"]);
    expect(t.get("w")!.shape).toEqual([3, 2]);
    expect(values(t.get("w"))).toEqual([1, 4, 2, 5, 3, 6]);
    expect(values(t.get("v"))).toEqual([3, 4]);
    expect(t.get("h")!.dtype).toBe("F16");
    expect(values(t.get("h"))).toEqual([0.5, -2, 65504]);
  });

  it("reads a model.state_dict() pickle, whose OrderedDict carries _metadata set by BUILD", () => {
    // CPython protocol 2: OrderedDict([("lm_head.weight", FloatStorage "0" (1, 2))]) with
    // ._metadata = OrderedDict([("", {"version": 1}), ("lm_head", {"version": 1})])
    const pkl = new Uint8Array(Buffer.from(STATE_DICT_WITH_METADATA, "base64"));
    const p = file(
      "sd.bin",
      encodeZip([
        { name: "pytorch_model/data.pkl", data: pkl },
        { name: "pytorch_model/data/0", data: f32(7, 8) },
      ]),
    );
    const t = openTorchCheckpoint(p).tensors;
    expect(t.map((x) => [x.name, x.shape])).toEqual([["lm_head.weight", [1, 2]]]);
    expect(values(t[0])).toEqual([7, 8]);
  });

  it("reads what its own writer wrote (dict and OrderedDict, deflated, zip64)", () => {
    const tensors = [
      { name: "a", dtype: "F32", shape: [2, 3], data: f32(1, 2, 3, 4, 5, 6) },
      { name: "b", dtype: "BF16", shape: [2], data: u16([1, -2].map(f32ToBf16Bits)) },
    ];
    for (const opts of [{}, { ordered: true, deflate: true }, { zip64: true, archive: "adapter_model" }]) {
      const t = byName(openTorchCheckpoint(file("own.bin", encodeTorchCheckpoint(tensors, opts))).tensors);
      expect(values(t.get("a"))).toEqual([1, 2, 3, 4, 5, 6]);
      expect(values(t.get("b"))).toEqual([1, -2]);
    }
  });

  it("refuses what is not a flat state dict of tensors", () => {
    const zipWith = (pkl: Uint8Array, extra: Array<{ name: string; data: Uint8Array }> = []) => encodeZip([{ name: "archive/data.pkl", data: pkl }, ...extra]);
    const nested = new PickleBuilder().proto(2).emptyDict().str("state_dict").emptyDict().setitem().stop().finish();
    expect(() => openTorchCheckpoint(file("nested.bin", zipWith(nested)))).toThrow(/state dict entry state_dict is a nested dict, not a tensor/);
    const list = new PickleBuilder().proto(2).emptyList().stop().finish();
    expect(() => openTorchCheckpoint(file("list.bin", zipWith(list)))).toThrow(/its top level is not a dict/);
    // a view reaching past its storage
    const pkl = new PickleBuilder()
      .proto(2)
      .emptyDict()
      .str("x")
      .global("torch._utils", "_rebuild_tensor_v2")
      .mark()
      .mark()
      .str("storage")
      .global("torch", "FloatStorage")
      .str("0")
      .str("cpu")
      .int(4)
      .tuple()
      .binpersid()
      .int(2)
      .mark()
      .int(4)
      .tuple()
      .mark()
      .int(1)
      .tuple()
      .bool(false)
      .global("collections", "OrderedDict")
      .emptyTuple()
      .reduce()
      .tuple()
      .reduce()
      .setitem()
      .stop()
      .finish();
    expect(() => openTorchCheckpoint(file("oob.bin", zipWith(pkl, [{ name: "archive/data/0", data: f32(1, 2, 3, 4) }])))).toThrow(/tensor x \[4\] reaches element 5 of a storage of 4/);
    expect(() => openTorchCheckpoint(file("nostorage.bin", zipWith(pkl)))).toThrow(/storage 0 has no archive\/data\/0 entry/);
    expect(() => openTorchCheckpoint(file("short.bin", zipWith(pkl, [{ name: "archive/data/0", data: f32(1, 2) }])))).toThrow(/holds 8 bytes, fewer than 4 F32 elements/);
    expect(() => openTorchCheckpoint(file("big.bin", zipWith(pkl, [{ name: "archive/byteorder", data: new TextEncoder().encode("big") }])))).toThrow(/byte order "big" is not supported/);
    expect(() => openTorchCheckpoint(file("nopkl.bin", encodeZip([{ name: "x/y", data: new Uint8Array(1) }])))).toThrow(/the zip has no <archive>\/data\.pkl/);
    expect(() => openTorchCheckpoint(file("legacy.bin", new Uint8Array([0x80, 0x02, 0x8a, 0x0a])))).toThrow(/legacy \(pre-1\.6, non-zip\) PyTorch serialization/);
  });
});

describe("the pickle reader", () => {
  it("decodes the opcodes torch checkpoints use", () => {
    const v = new PickleBuilder()
      .proto(2)
      .mark()
      .int(7)
      .int(300)
      .int(70000)
      .int(-5)
      .int(2 ** 40)
      .int(-(2 ** 40))
      .str("é")
      .none()
      .bool(true)
      .tuple()
      .stop()
      .finish();
    const r = unpickle(v) as PyTuple;
    expect(r).toBeInstanceOf(PyTuple);
    expect(r.items).toEqual([7, 300, 70000, -5, 2 ** 40, -(2 ** 40), "é", null, true]);
    const d = unpickle(new PickleBuilder().proto(2).emptyDict().put().mark().str("a").int(1).str("b").emptyList().setitems().stop().finish()) as PyDict;
    expect([...d.entries]).toEqual([
      ["a", 1],
      ["b", []],
    ]);
  });

  it("refuses malformed pickles", () => {
    expect(() => unpickle(new Uint8Array([0x80, 0x02, 0x58, 0xff, 0xff, 0, 0]))).toThrow(/truncated: needs 65535 more bytes/);
    expect(() => unpickle(new Uint8Array([0x80, 0x02, 0xff]))).toThrow(/unknown opcode 0xff/);
    expect(() => unpickle(new Uint8Array([0x80, 0x02, 0x68, 0x03, 0x2e]))).toThrow(/memo key 3 is not defined/);
    expect(() => unpickle(new Uint8Array([0x80, 0x02, 0x4e, 0x4e, 0x2e]))).toThrow(/STOP with 2 values/);
    expect(() => unpickle(new Uint8Array([0x80, 0x02, 0x49, 0x31, 0x0a, 0x2e]))).toThrow(/INT \(protocol 0 text\) is not allowed/);
    expect(() => unpickle(new Uint8Array([0x80, 0x02, 0x4e, 0x51, 0x2e]))).toThrow(/persistent id without a loader/);
    expect(() => unpickle(new Uint8Array([0x80, 0x02, 0x4e]))).toThrow(PickleError);
  });

  it("refuses every global the caller did not allow, before anything could be called", () => {
    const evil = new PickleBuilder().proto(2).global("subprocess", "check_output").stop().finish();
    expect(() => unpickle(evil, { callables: { "collections.OrderedDict": () => new PyDict() } })).toThrow(
      /Python global subprocess\.check_output, which is not allowed \(a checkpoint may only use collections\.OrderedDict\)/,
    );
    let called = false;
    const ok = new PickleBuilder().proto(2).global("collections", "OrderedDict").emptyTuple().reduce().stop().finish();
    unpickle(ok, { callables: { "collections.OrderedDict": () => ((called = true), new PyDict()) } });
    expect(called).toBe(true);
  });
});

describe("SentencePiece models", () => {
  it("round-trip pieces, scores, types and the trainer/normalizer fields", () => {
    const m: SentencePieceModel = {
      pieces: [
        { piece: "<unk>", score: 0, type: 2 },
        { piece: "<s>", score: 0, type: 3 },
        { piece: "<0x0A>", score: 0, type: 6 },
        { piece: "▁the", score: -1.5, type: 1 },
        { piece: "日本", score: -123456, type: 1 },
      ],
      modelType: 2,
      byteFallback: true,
      unkId: 0,
      bosId: 1,
      eosId: -1,
      padId: -1,
      addDummyPrefix: false,
      removeExtraWhitespaces: false,
    };
    const bytes = encodeSentencePieceModel(m);
    expect(parseSentencePieceModel(bytes, "m")).toEqual(m);
    expect(() => parseSentencePieceModel(bytes.subarray(0, bytes.length - 10), "m")).toThrow(/corrupt SentencePiece model/);
    expect(() => parseSentencePieceModel(new Uint8Array(0), "m")).toThrow(/no pieces/);
  });
});

describe("llama.cpp's q/k row permutation", () => {
  it("matches convert_hf_to_gguf.py's reshape/swapaxes and is inverted by to-hf", () => {
    // rows of a 12 x 3 matrix whose first column is 0, 3, 6, ...: numpy's
    // w.reshape(n_head, 2, 12 // n_head // 2, 3).swapaxes(1, 2).reshape(12, 3)[:, 0]
    const w = new Float32Array(Array.from({ length: 36 }, (_, i) => i));
    const bytes = new Uint8Array(w.buffer);
    const firstColumn = (b: Uint8Array) => Array.from(new Float32Array(b.slice().buffer)).filter((_, i) => i % 3 === 0);
    expect(firstColumn(permuteQkRows(bytes, 12, 12, 2, "to-gguf"))).toEqual([0, 9, 3, 12, 6, 15, 18, 27, 21, 30, 24, 33]);
    expect(firstColumn(permuteQkRows(bytes, 12, 12, 3, "to-gguf"))).toEqual([0, 6, 3, 9, 12, 18, 15, 21, 24, 30, 27, 33]);
    expect(permuteQkRows(permuteQkRows(bytes, 12, 12, 3, "to-gguf"), 12, 12, 3, "to-hf")).toEqual(bytes);
    expect(() => permuteQkRows(bytes, 12, 12, 4, "to-gguf")).toThrow(/heads of even size/);
  });
});
