/**
 * The synthetic model generator: vocabulary layout, model and adapter files,
 * determinism, staleness detection, and adapters llama.cpp must refuse.
 */
import { existsSync, mkdtempSync, rmSync, statSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { getLlama, LlamaLogLevel } from "node-llama-cpp";
import { afterAll, describe, expect, it } from "vitest";
import { f16BitsToNumber, f32ToF16Bits, GgmlType, GgufValueType, gv, kv, openGgufSync, readTensorF32, readTensorF64, writeGguf } from "../src/gguf/index.js";
import {
  ensureTestModels,
  generateLlamaModel,
  generateLora,
  LLAMA_PRESETS,
  llamaTensors,
  loadLlamaVocab,
  LlamaTokenType,
  Rng,
  SYNTH_VERSION,
  SYNTH_VERSION_KEY,
  TINY_LORA_A,
  TINY_LORA_B,
  type LoraMismatch,
} from "../src/synth/index.js";
import { loadReference } from "./reference/llama64.js";

const dir = mkdtempSync(join(tmpdir(), "tallrec-synth-test-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const root = new URL("..", import.meta.url).pathname;
const TINY = join(root, "models", "tiny.gguf");
const TINY_F16 = join(root, "models", "tiny-f16.gguf");

describe("random numbers", () => {
  it("are deterministic per (seed, stream) and look standard normal", () => {
    const a = new Rng(7, "x").normalArray(20000, 1);
    expect(new Rng(7, "x").normalArray(20000, 1)).toEqual(a);
    expect(new Rng(7, "y").normalArray(10, 1)).not.toEqual(a.subarray(0, 10));
    expect(new Rng(8, "x").normalArray(10, 1)).not.toEqual(a.subarray(0, 10));
    let mean = 0;
    for (const v of a) mean += v / a.length;
    let v2 = 0;
    for (const v of a) v2 += (v - mean) ** 2 / a.length;
    expect(Math.abs(mean)).toBeLessThan(0.03);
    expect(Math.abs(Math.sqrt(v2) - 1)).toBeLessThan(0.03);
    expect(a.filter((v) => Math.abs(v) > 3).length / a.length).toBeLessThan(0.006); // ~0.27% expected
  });
});

describe("LLaMA vocabulary", () => {
  it("has LLaMA's 32000 tokens, types and merge-rank scores", async () => {
    const v = await loadLlamaVocab();
    expect(v.tokens.length).toBe(32000);
    expect(v.tokens.slice(0, 4)).toEqual(["<unk>", "<s>", "</s>", "<0x00>"]);
    expect(v.tokens[258]).toBe("<0xFF>");
    expect(v.tokens[8241]).toBe("Yes");
    expect(v.tokens[3782]).toBe("No");
    expect(v.tokenTypes[0]).toBe(LlamaTokenType.UNKNOWN);
    expect(v.tokenTypes[1]).toBe(LlamaTokenType.CONTROL);
    expect(v.tokenTypes[2]).toBe(LlamaTokenType.CONTROL);
    expect(v.tokenTypes.slice(3, 259).every((t) => t === LlamaTokenType.BYTE)).toBe(true);
    expect(v.tokenTypes.slice(259).every((t) => t === LlamaTokenType.NORMAL)).toBe(true);
    expect(v.nMerges).toBe(61249);
    const produced = v.scores.filter((s) => s > -v.nMerges);
    // every merge rank produces at most one token: produced scores are distinct
    expect(new Set(produced).size).toBe(produced.length);
    // specials, bytes and single characters are produced by no merge and score below every merge
    const unproduced = v.scores.map((s, id) => [s, id]).filter(([s]) => s <= -v.nMerges);
    expect(unproduced.length).toBe(32000 - produced.length);
    for (const [s, id] of unproduced) expect(s).toBe(-(v.nMerges + id));
    expect(unproduced.map(([, id]) => id).slice(0, 259)).toEqual(Array.from({ length: 259 }, (_, i) => i));
    // "▁▁" (id 259) comes from the LAST merge: scoring by -id would prefer it and break tokenization
    expect(v.scores[259]).toBe(-(v.nMerges - 1));
    expect(Math.max(...v.scores)).toBe(-0); // the first merge's token
    expect([v.addBos, v.addEos, v.addSpacePrefix, v.bosId, v.eosId, v.unkId]).toEqual([true, false, true, 1, 2, 0]);
  });
});

describe("generated models", () => {
  it("lay out the tiny model like convert_hf_to_gguf.py (metadata, names, shapes, types)", () => {
    const f = openGgufSync(TINY);
    const meta = (k: string): unknown => f.metadata.get(k)?.value;
    expect(meta("general.architecture")).toBe("llama");
    expect(meta("llama.embedding_length")).toBe(64);
    expect(meta("llama.block_count")).toBe(2);
    expect(meta("llama.attention.head_count")).toBe(4);
    expect(meta("llama.attention.head_count_kv")).toBe(2);
    expect(meta("llama.feed_forward_length")).toBe(172);
    expect(meta("llama.rope.dimension_count")).toBe(16);
    expect(meta("llama.context_length")).toBe(2048);
    expect(meta("llama.rope.freq_base")).toBe(10000);
    expect(meta("llama.attention.layer_norm_rms_epsilon")).toBe(Math.fround(1e-5));
    expect(meta("general.file_type")).toBe(0);
    expect(meta("tokenizer.ggml.model")).toBe("llama");
    expect(f.metadata.get("tokenizer.ggml.scores")).toMatchObject({ type: GgufValueType.ARRAY, itemType: GgufValueType.FLOAT32 });
    expect(f.metadata.get("tokenizer.ggml.token_type")).toMatchObject({ type: GgufValueType.ARRAY, itemType: GgufValueType.INT32 });
    expect((meta("tokenizer.ggml.tokens") as string[]).length).toBe(32000);
    expect(meta("tokenizer.ggml.add_bos_token")).toBe(true);
    expect(meta("tokenizer.ggml.add_eos_token")).toBe(false);
    expect(meta(SYNTH_VERSION_KEY)).toBe(SYNTH_VERSION);
    const shapes = Object.fromEntries(f.tensors.map((t) => [t.name, [t.typeName, ...t.dims]]));
    expect(shapes).toEqual({
      "token_embd.weight": ["F32", 64, 32000],
      ...Object.fromEntries(
        [0, 1].flatMap((l) => [
          [`blk.${l}.attn_norm.weight`, ["F32", 64]],
          [`blk.${l}.attn_q.weight`, ["F32", 64, 64]],
          [`blk.${l}.attn_k.weight`, ["F32", 64, 32]],
          [`blk.${l}.attn_v.weight`, ["F32", 64, 32]],
          [`blk.${l}.attn_output.weight`, ["F32", 64, 64]],
          [`blk.${l}.ffn_norm.weight`, ["F32", 64]],
          [`blk.${l}.ffn_gate.weight`, ["F32", 64, 172]],
          [`blk.${l}.ffn_up.weight`, ["F32", 64, 172]],
          [`blk.${l}.ffn_down.weight`, ["F32", 172, 64]],
        ]),
      ),
      "output_norm.weight": ["F32", 64],
      "output.weight": ["F32", 64, 32000],
    });
  });

  it("give tiny-f16 the same weights rounded to F16, with F32 norms", () => {
    const a = openGgufSync(TINY);
    const b = openGgufSync(TINY_F16);
    expect(b.metadata.get("general.file_type")?.value).toBe(1);
    for (const t of b.tensors) expect([t.name, t.typeName]).toEqual([t.name, t.dims.length === 1 ? "F32" : "F16"]);
    const q32 = readTensorF32(a, "blk.1.attn_q.weight");
    const q16 = readTensorF32(b, "blk.1.attn_q.weight");
    expect([...q16]).toEqual([...q32].map((v) => f16BitsToNumber(f32ToF16Bits(v))));
    expect(readTensorF32(b, "blk.0.ffn_norm.weight")).toEqual(readTensorF32(a, "blk.0.ffn_norm.weight"));
  });

  it("use non-unit norm weights and the documented weight scales", () => {
    const f = openGgufSync(TINY);
    const stats = (name: string): [number, number] => {
      const x = readTensorF64(f, name);
      const mean = x.reduce((s, v) => s + v, 0) / x.length;
      return [mean, Math.sqrt(x.reduce((s, v) => s + (v - mean) ** 2, 0) / x.length)];
    };
    const [nm, ns] = stats("blk.0.attn_norm.weight");
    expect(Math.abs(nm - 1)).toBeLessThan(0.15);
    expect(ns).toBeGreaterThan(0.2);
    expect(ns).toBeLessThan(0.4);
    expect(stats("token_embd.weight")[1]).toBeCloseTo(1, 1);
    expect(stats("blk.0.attn_q.weight")[1]).toBeCloseTo(1.5 / 8, 1);
    expect(stats("blk.0.ffn_down.weight")[1]).toBeCloseTo(1 / Math.sqrt(172), 1);
    expect(stats("output.weight")[1]).toBeCloseTo(3 / 8, 1);
  });

  it("are deterministic: the same spec gives byte-identical files, another seed does not", async () => {
    const p1 = join(dir, "a.gguf");
    const p2 = join(dir, "b.gguf");
    const p3 = join(dir, "c.gguf");
    await generateLlamaModel(p1, "tiny");
    await generateLlamaModel(p2, "tiny");
    await generateLlamaModel(p3, { ...LLAMA_PRESETS.tiny, seed: 99 });
    const b1 = readFileSync(p1);
    expect(b1.equals(readFileSync(p2))).toBe(true);
    expect(b1.equals(readFileSync(TINY))).toBe(true);
    expect(b1.length).toBe(readFileSync(p3).length);
    expect(b1.equals(readFileSync(p3))).toBe(false);
  });

  it("size the presets as documented", () => {
    const bytes = (name: "tiny" | "tiny-f16" | "bench"): number => llamaTensors(LLAMA_PRESETS[name], 32000).reduce((s, t) => s + t.dims.reduce((a, b) => a * b, 1) * (t.type === GgmlType.F32 ? 4 : 2), 0);
    expect(bytes("tiny") / 1e6).toBeCloseTo(16.8, 0);
    expect(statSync(TINY).size / 1e6).toBeCloseTo(17.5, 0); // + ~0.7 MB of vocabulary metadata
    expect(statSync(TINY_F16).size / 1e6).toBeCloseTo(9.1, 0);
    expect(bytes("bench") / 1e6).toBeGreaterThan(300);
    expect(bytes("bench") / 1e6).toBeLessThan(320);
    const bench = LLAMA_PRESETS.bench;
    expect([bench.nEmbd, bench.nLayer, bench.nHead, bench.nHeadKv, bench.nFf, bench.matrixType]).toEqual([1024, 8, 16, 4, 2816, "F16"]);
  });

  it("rejects invalid specs", async () => {
    await expect(generateLlamaModel(join(dir, "x.gguf"), { ...LLAMA_PRESETS.tiny, nHeadKv: 3 })).rejects.toThrow(/not a multiple of n_head_kv/);
    await expect(generateLlamaModel(join(dir, "x.gguf"), { ...LLAMA_PRESETS.tiny, nHead: 5 })).rejects.toThrow(/not a multiple of n_head/);
    await expect(generateLlamaModel(join(dir, "x.gguf"), "huge" as "tiny")).rejects.toThrow(/unknown model preset "huge"/);
    expect(existsSync(join(dir, "x.gguf"))).toBe(false);
  });
});

describe("LoRA adapters", () => {
  it("use llama.cpp's adapter layout with non-zero B and the requested strength", async () => {
    const f = openGgufSync(join(root, "models", "tiny-lora-a.gguf"));
    expect(f.metadata.get("general.type")?.value).toBe("adapter");
    expect(f.metadata.get("adapter.type")?.value).toBe("lora");
    expect(f.metadata.get("adapter.lora.alpha")).toEqual({ type: GgufValueType.FLOAT32, value: 16 });
    expect(f.metadata.get("general.architecture")?.value).toBe("llama");
    expect(f.tensors.map((t) => [t.name, t.typeName, ...t.dims])).toEqual([
      ["blk.0.attn_q.weight.lora_a", "F32", 64, 8],
      ["blk.0.attn_q.weight.lora_b", "F32", 8, 64],
      ["blk.0.attn_v.weight.lora_a", "F32", 64, 8],
      ["blk.0.attn_v.weight.lora_b", "F32", 8, 32],
      ["blk.1.attn_q.weight.lora_a", "F32", 64, 8],
      ["blk.1.attn_q.weight.lora_b", "F32", 8, 64],
      ["blk.1.attn_v.weight.lora_a", "F32", 64, 8],
      ["blk.1.attn_v.weight.lora_b", "F32", 8, 32],
    ]);
    // ‖s·B·A‖_F / ‖W‖_F ≈ strength (0.5) with s = alpha / r = 2
    const a = readTensorF64(f, "blk.0.attn_v.weight.lora_a");
    const b = readTensorF64(f, "blk.0.attn_v.weight.lora_b");
    const w = readTensorF64(openGgufSync(TINY), "blk.0.attn_v.weight");
    let dw2 = 0;
    for (let o = 0; o < 32; o++) {
      for (let i = 0; i < 64; i++) {
        let s = 0;
        for (let j = 0; j < 8; j++) s += b[o * 8 + j] * a[j * 64 + i];
        dw2 += (2 * s) ** 2;
      }
    }
    const w2 = w.reduce((s, v) => s + v * v, 0);
    expect(Math.sqrt(dw2 / w2)).toBeGreaterThan(0.3);
    expect(Math.sqrt(dw2 / w2)).toBeLessThan(0.8);
  });

  it("read shapes and weight scales from a GGUF path like from the spec", async () => {
    const fromSpec = join(dir, "lora-spec.gguf");
    const fromPath = join(dir, "lora-path.gguf");
    const opts = { ...TINY_LORA_B, type: "F16" as const };
    await generateLora(fromSpec, "tiny", opts);
    await generateLora(fromPath, TINY, opts);
    const s = openGgufSync(fromSpec);
    const p = openGgufSync(fromPath);
    expect(p.tensors.map((t) => [t.name, t.typeName, t.dims])).toEqual(s.tensors.map((t) => [t.name, t.typeName, t.dims]));
    expect(s.tensors.every((t) => t.typeName === "F16")).toBe(true);
    expect(readTensorF32(p, "blk.1.ffn_down.weight.lora_a")).toEqual(readTensorF32(s, "blk.1.ffn_down.weight.lora_a"));
    // B's scale comes from the measured weight std instead of the nominal one: close, not identical
    const bs = readTensorF64(s, "blk.1.ffn_down.weight.lora_b");
    const bp = readTensorF64(p, "blk.1.ffn_down.weight.lora_b");
    expect(bp[0] / bs[0]).toBeCloseTo(1, 1);
  });

  it("deliberate mismatches are refused by llama.cpp and by the reference, with the reason", async () => {
    const logs: string[] = [];
    const llama = await getLlama({
      gpu: false,
      build: "never",
      logLevel: LlamaLogLevel.error,
      progressLogs: false,
      logger: (_level, message) => logs.push(message),
    });
    try {
      const model = await llama.loadModel({ modelPath: TINY });
      const cases: Array<[LoraMismatch, RegExp, RegExp]> = [
        ["shape", /tensor 'blk\.0\.attn_q\.weight' has incorrect shape/, /has incorrect shape/],
        ["architecture", /model arch and LoRA arch mismatch/, /arch mismatch/],
        ["layer", /LoRA tensor 'blk\.9\.attn_q\.weight' does not exist in base model/, /does not exist in base model/],
      ];
      for (const [mismatch, cppReason, refReason] of cases) {
        const p = join(dir, `bad-${mismatch}.gguf`);
        await generateLora(p, "tiny", { ...TINY_LORA_A, mismatch });
        logs.length = 0;
        await expect(model.createContext({ contextSize: 256, threads: 1, lora: { adapters: [{ filePath: p }] } })).rejects.toThrow(/Failed to initialize LoRA adapter/);
        expect(logs.join("\n")).toMatch(cppReason);
        expect(() => loadReference(TINY, [{ path: p, scale: 1 }])).toThrow(refReason);
      }
      // and the good ones load
      const ctx = await model.createContext({ contextSize: 256, threads: 1, lora: { adapters: [{ filePath: join(root, "models", "tiny-lora-b.gguf"), scale: 0.5 }] } });
      await ctx.dispose();
      await model.dispose();
    } finally {
      await llama.dispose();
    }
  });
});

describe("ensureTestModels", () => {
  it("creates the four files, keeps fresh ones and regenerates stale or broken ones", async () => {
    const d = join(dir, "models");
    const paths = await ensureTestModels(d);
    expect(Object.values(paths).map((p) => p.slice(d.length + 1))).toEqual(["tiny.gguf", "tiny-f16.gguf", "tiny-lora-a.gguf", "tiny-lora-b.gguf"]);
    expect(readFileSync(paths.tiny).equals(readFileSync(TINY))).toBe(true);
    expect(readFileSync(paths.loraB).equals(readFileSync(join(root, "models", "tiny-lora-b.gguf")))).toBe(true);
    const mtimes = Object.values(paths).map((p) => statSync(p).mtimeMs);
    await ensureTestModels(d);
    expect(Object.values(paths).map((p) => statSync(p).mtimeMs)).toEqual(mtimes);

    // a truncated file and a file from another generator version are both replaced
    writeFileSync(paths.loraA, readFileSync(paths.loraA).subarray(0, 1000));
    await writeGguf(paths.tinyF16, { metadata: [kv("general.architecture", gv.str("llama")), kv(SYNTH_VERSION_KEY, gv.u32(SYNTH_VERSION - 1))], tensors: [] });
    await ensureTestModels(d);
    expect(readFileSync(paths.loraA).equals(readFileSync(join(root, "models", "tiny-lora-a.gguf")))).toBe(true);
    expect(readFileSync(paths.tinyF16).equals(readFileSync(TINY_F16))).toBe(true);
    expect(statSync(paths.tiny).mtimeMs).toBe(mtimes[0]);
  });
});
