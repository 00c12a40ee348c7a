/**
 * merge and quantize, and the four CLI commands.
 *
 * - A merged model scores as the base model with the adapter(s) applied (within 1e-3 ×
 *   max(1, |logit|)): F32 and F16 bases, one adapter or two with scales; Q8_0 bases are
 *   dequantized, merged and requantized (checked against the F32 merge, with Q8_0's error).
 * - Quantized models (llama.cpp's own quantizer) load and score.
 * - Bad input is refused with nothing written; the CLI commands do the same through commander.
 */
import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { Command } from "commander";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";

import { addGlobalOptions, CliError } from "../src/cli/common.js";
import { convertLoraCommand, convertModelCommand, mergeCommand, quantizeCommand } from "../src/cli/commands/convert.js";
import { ConvertError } from "../src/convert/errors.js";
import { mergeLora } from "../src/convert/merge.js";
import { quantizationTypes, quantizeModel } from "../src/convert/quantize.js";
import { Engine, type Score } from "../src/engine/engine.js";
import { f32ToF16Bits } from "../src/gguf/float.js";
import { openGgufSync, readTensorBytes, readTensorF32, readTensorF64 } from "../src/gguf/reader.js";
import { GgmlType, type GgufMetadataEntry } from "../src/gguf/types.js";
import { writeGguf } from "../src/gguf/writer.js";
import { renderPrompt } from "../src/engine/prompt.js";
import { writeHfLlamaModel, writePeftAdapter } from "../src/synth/hf.js";
import { generateLora, TINY_LORA_A } from "../src/synth/index.js";
import { sampleRows } from "./helpers/data.js";
import { relDiff, testModels } from "./helpers/models.js";

let dir: string;
let paths: Awaited<ReturnType<typeof testModels>>;

beforeAll(async () => {
  paths = await testModels();
  dir = await mkdtemp(join(tmpdir(), "tallrec-convert-merge-"));
});
afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

const prompts = () => [renderPrompt(sampleRows("movie")[11]), renderPrompt(sampleRows("book")[2]), renderPrompt({ instruction: "Is it?", input: "" })];

async function scores(model: string, adapters: Array<{ path: string; scale: number }> = [], kvType: "f16" | "f32" = "f32"): Promise<Score[]> {
  const engine = await Engine.load({
    model,
    adapters: adapters.map((a, i) => ({ name: `a${i}`, path: a.path })),
    defaultAdapter: null,
    gpu: "cpu",
    contextSize: 1024,
    kvType,
  });
  try {
    const r = (await engine.score(prompts(), { adapter: adapters.map((a, i) => ({ name: `a${i}`, scale: a.scale })) })) as Score[];
    for (const s of r) expect(s.error).toBeUndefined();
    return r;
  } finally {
    await engine.close();
  }
}

function worst(a: Score[], b: Score[]): number {
  let w = 0;
  a.forEach((s, i) => (w = Math.max(w, relDiff(s.logitYes, b[i].logitYes), relDiff(s.logitNo, b[i].logitNo))));
  return w;
}

function leftovers(prefix: string): string[] {
  return readdirSync(dir).filter((f) => f.startsWith(prefix));
}

describe("a merged model scores as the base model with the adapter", () => {
  it("F32 base, adapter a (q/v) at scale 1", async () => {
    const out = join(dir, "merged-a.gguf");
    const r = await mergeLora(paths.tiny, [{ path: paths.loraA }], out);
    expect(r.merged.sort()).toEqual(["blk.0.attn_q.weight", "blk.0.attn_v.weight", "blk.1.attn_q.weight", "blk.1.attn_v.weight"]);
    expect(r.types).toEqual({ F32: 4 });
    const merged = await scores(out);
    const withAdapter = await scores(paths.tiny, [{ path: paths.loraA, scale: 1 }]);
    const base = await scores(paths.tiny);
    expect(worst(merged, withAdapter)).toBeLessThan(1e-3);
    expect(worst(base, withAdapter)).toBeGreaterThan(1e-2); // merging changed what it should
    // untouched tensors are copied exactly, metadata too (plus a note of what was merged)
    const m = openGgufSync(out);
    expect(readTensorF64(m, "blk.0.attn_k.weight")).toEqual(readTensorF64(openGgufSync(paths.tiny), "blk.0.attn_k.weight"));
    expect(m.metadata.get("tallrec.merged_adapters")?.value).toBe("tiny-lora-a.gguf:1");
    expect(m.metadata.get("tokenizer.ggml.tokens")).toEqual(openGgufSync(paths.tiny).metadata.get("tokenizer.ggml.tokens"));
  });

  it("F32 base, two adapters with scales (a at 0.5, b on all seven projections at 1)", async () => {
    const out = join(dir, "merged-ab.gguf");
    await mergeLora(
      paths.tiny,
      [
        { path: paths.loraA, scale: 0.5 },
        { path: paths.loraB, scale: 1 },
      ],
      out,
    );
    const both = await scores(out);
    expect(
      worst(
        both,
        await scores(paths.tiny, [
          { path: paths.loraA, scale: 0.5 },
          { path: paths.loraB, scale: 1 },
        ]),
      ),
    ).toBeLessThan(1e-3);
    // merging one after the other gives the same model, and the record lists both
    const first = join(dir, "merged-a-half.gguf");
    const second = join(dir, "merged-a-half-then-b.gguf");
    await mergeLora(paths.tiny, [{ path: paths.loraA, scale: 0.5 }], first);
    await mergeLora(first, [{ path: paths.loraB }], second);
    expect(openGgufSync(second).metadata.get("tallrec.merged_adapters")?.value).toBe("tiny-lora-a.gguf:0.5,tiny-lora-b.gguf:1");
    expect(worst(await scores(second), both)).toBeLessThan(1e-5);
  });

  it("F16 base: merged weights are round-to-nearest F16 of W + s·B·A; --outtype f32 merges exactly", async () => {
    const out = join(dir, "merged-f16.gguf");
    const r = await mergeLora(paths.tinyF16, [{ path: paths.loraA }], out);
    expect(r.types).toEqual({ F16: 4 });
    // the merged weight, computed here independently in float64 from the GGUF files
    const base = openGgufSync(paths.tinyF16);
    const ad = openGgufSync(paths.loraA);
    const w = readTensorF64(base, "blk.1.attn_v.weight"); // ggml [64, 32]: W[o][i] at i + 64·o
    const a = readTensorF64(ad, "blk.1.attn_v.weight.lora_a"); // [64, 8]: A[k][i] at i + 64·k
    const b = readTensorF64(ad, "blk.1.attn_v.weight.lora_b"); // [8, 32]: B[o][k] at k + 8·o
    const s = 16 / 8;
    const got = new Uint16Array(readTensorBytes(openGgufSync(out), "blk.1.attn_v.weight").buffer);
    for (let o = 0; o < 32; o++) {
      for (let i = 0; i < 64; i++) {
        let d = 0;
        for (let k = 0; k < 8; k++) d += b[k + 8 * o] * a[i + 64 * k];
        expect(got[i + 64 * o]).toBe(f32ToF16Bits(w[i + 64 * o] + s * d));
      }
    }
    // F16 rounding of the merged weights is the only difference from the F16 base with the adapter
    expect(worst(await scores(out, [], "f16"), await scores(paths.tinyF16, [{ path: paths.loraA, scale: 1 }], "f16"))).toBeLessThan(1e-2);

    // --outtype f32: exact. Compare with the same F16 weights held in F32, plus the adapter.
    const exact = join(dir, "merged-f16-as-f32.gguf");
    expect((await mergeLora(paths.tinyF16, [{ path: paths.loraB }], exact, { outtype: "f32" })).types).toEqual({ F32: 14 });
    expect(openGgufSync(exact).tensorsByName.get("token_embd.weight")!.typeName).toBe("F16"); // untouched tensors keep their type
    const f32Copy = join(dir, "tiny-f16-in-f32.gguf");
    await writeGguf(f32Copy, {
      metadata: [...base.metadata].map(([key, v]) => ({ key, ...v }) as GgufMetadataEntry),
      tensors: base.tensors.map((t) => ({ name: t.name, dims: t.dims, type: GgmlType.F32, data: () => readTensorF32(base, t.name) })),
    });
    expect(worst(await scores(exact), await scores(f32Copy, [{ path: paths.loraB, scale: 1 }]))).toBeLessThan(1e-3);
  });

  it("Q8_0 base: dequantized, merged, requantized to Q8_0", async () => {
    const q8 = join(dir, "tiny-q8.gguf");
    await quantizeModel(paths.tiny, q8, "Q8_0");
    const out = join(dir, "merged-q8.gguf");
    const r = await mergeLora(q8, [{ path: paths.loraA }], out);
    expect(r.types).toEqual({ Q8_0: 4 });
    const m = openGgufSync(out);
    expect(m.tensorsByName.get("blk.0.attn_q.weight")!.typeName).toBe("Q8_0");
    // the merged Q8_0 weight is the F32 merge up to Q8_0's rounding (half a step of its block scale)
    const f32Merged = join(dir, "merged-a-ref.gguf");
    await mergeLora(paths.tiny, [{ path: paths.loraA }], f32Merged);
    const want = readTensorF64(openGgufSync(f32Merged), "blk.1.attn_v.weight");
    const got = readTensorF64(m, "blk.1.attn_v.weight");
    const base = readTensorF64(openGgufSync(q8), "blk.1.attn_v.weight");
    let maxErr = 0;
    let maxDelta = 0;
    for (let i = 0; i < want.length; i++) {
      maxErr = Math.max(maxErr, Math.abs(got[i] - want[i]));
      maxDelta = Math.max(maxDelta, Math.abs(want[i] - base[i]));
    }
    let amax = 0;
    for (const v of want) amax = Math.max(amax, Math.abs(v));
    expect(maxErr).toBeLessThan((2 * amax) / 127); // Q8_0 of the base plus Q8_0 of the merge
    expect(maxDelta).toBeGreaterThan(10 * maxErr); // the adapter's update is far above the rounding
    expect(worst(await scores(out), await scores(q8, [{ path: paths.loraA, scale: 1 }]))).toBeLessThan(0.05);
  });

  it("other quantized bases, adapters that do not fit, and bad scales are refused with nothing written", async () => {
    const q4 = join(dir, "tiny-q4km.gguf");
    await quantizeModel(paths.tiny, q4, "Q4_K_M");
    const refuse = async (base: string, adapters: Array<{ path: string; scale?: number }>, pattern: RegExp) => {
      const err = await mergeLora(base, adapters, join(dir, "refused-merge.gguf")).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ConvertError);
      expect((err as Error).message).toMatch(pattern);
      expect(leftovers("refused-merge.gguf")).toEqual([]);
    };
    await refuse(q4, [{ path: paths.loraA }], /blk\.\d\.attn_[qv]\.weight is Q\w+: tallrec merges into F32, F16, BF16 and Q8_0 weights only\. Merge into the F16 model, then quantize/);
    const archLora = join(dir, "qwen-lora.gguf");
    await generateLora(archLora, "tiny", { ...TINY_LORA_A, mismatch: "architecture" });
    await refuse(paths.tiny, [{ path: archLora }], /adapter architecture "qwen2" does not match the model's "llama"/);
    const shapeLora = join(dir, "shape-lora.gguf");
    await generateLora(shapeLora, "tiny", { ...TINY_LORA_A, mismatch: "shape" });
    await refuse(paths.tiny, [{ path: shapeLora }], /shape mismatch for blk\.0\.attn_q\.weight/);
    await refuse(paths.tiny, [{ path: paths.loraA, scale: Number.NaN }], /scale NaN is not a finite number/);
    await refuse(paths.tiny, [], /no adapters given/);
    await refuse(paths.loraA, [{ path: paths.loraA }], /this is a LoRA adapter, not a model/);
  });
});

describe("quantize", () => {
  it("lists llama.cpp's types", () => {
    expect(quantizationTypes()).toEqual(expect.arrayContaining(["Q8_0", "Q4_K_M", "F16"]));
  });

  it.each(["Q8_0", "q4_k_m"])("%s: the quantized model loads and scores close to the F32 model", async (type) => {
    const out = join(dir, `tiny-${type}.gguf`);
    const r = await quantizeModel(paths.tiny, out, type);
    expect(r.type).toBe(type.toUpperCase());
    expect(r.outputBytes).toBeLessThan(r.inputBytes / 3);
    const q = await scores(out, [{ path: paths.loraA, scale: 1 }], "f16");
    const f = await scores(paths.tiny, [{ path: paths.loraA, scale: 1 }], "f16");
    for (const s of q) expect(s.pYes).toBeGreaterThan(0);
    // quantization noise on a 64-wide random model (measured: Q8_0 0.14, Q4_K_M larger); a broken file would be O(10)
    expect(worst(q, f)).toBeLessThan(type === "Q8_0" ? 0.3 : 1.5);
    expect(worst(q, f)).toBeGreaterThan(1e-4); // it really is another model
  });

  it("refuses unknown types, adapters, truncated models and output = input, leaving nothing", async () => {
    const refuse = async (input: string, output: string, type: string, pattern: RegExp) => {
      const err = await quantizeModel(input, output, type).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ConvertError);
      expect((err as Error).message).toMatch(pattern);
    };
    await refuse(paths.tiny, join(dir, "refused-q.gguf"), "Q3_XYZ", /unknown quantization type "Q3_XYZ" \(known: .*Q4_K_M/);
    await refuse(paths.loraA, join(dir, "refused-q.gguf"), "Q8_0", /this is a LoRA adapter, not a model/);
    const cut = join(dir, "cut.gguf");
    writeFileSync(cut, readFileSync(paths.tiny).subarray(0, 1_000_000));
    await refuse(cut, join(dir, "refused-q.gguf"), "Q8_0", /truncated|beyond the end of the file/);
    await refuse(paths.tiny, paths.tiny, "Q8_0", /the output must differ from the input/);
    expect(leftovers("refused-q.gguf")).toEqual([]);
  });
});

describe("the CLI commands", () => {
  function program(): Command {
    const p = addGlobalOptions(new Command("tallrec")).exitOverride();
    for (const c of [convertLoraCommand(), convertModelCommand(), mergeCommand(), quantizeCommand()]) p.addCommand(c.exitOverride());
    return p;
  }
  async function cli(...args: string[]): Promise<string> {
    let out = "";
    const spy = vi.spyOn(process.stdout, "write").mockImplementation((chunk: string | Uint8Array) => {
      out += String(chunk);
      return true;
    });
    const err = vi.spyOn(process.stderr, "write").mockImplementation(() => true);
    try {
      await program().parseAsync(["node", "tallrec", "--quiet", ...args]);
      return out;
    } finally {
      spy.mockRestore();
      err.mockRestore();
    }
  }

  it("convert-model, convert-lora, merge and quantize from a Hugging Face checkpoint to a served model", async () => {
    const hf = join(dir, "cli-hf");
    const peft = join(dir, "cli-peft");
    await writeHfLlamaModel(hf, "tiny", { format: "bin" });
    await writePeftAdapter(peft, "tiny", TINY_LORA_A, { format: "bin" });
    const model = join(dir, "cli-model.gguf");
    const m = JSON.parse(await cli("convert-model", hf, "-o", model, "--outtype", "f32", "--json")) as { outtype: string; tensors: number };
    expect(m).toMatchObject({ outtype: "f32", tensors: 21 });
    const adapter = join(dir, "cli-adapter.gguf");
    const text = await cli("convert-lora", peft, "-m", model, "-o", adapter);
    expect(text).toMatch(/8 tensors, attn_q\/attn_v in 2 blocks, r=8, alpha 16 \(scale 2\)/);
    const merged = join(dir, "cli-merged.gguf");
    expect(await cli("merge", "-m", model, "-l", `${adapter}:0.5`, "-o", merged)).toMatch(/merged 1 adapter\(s\) into 4 tensors \(4 F32\)/);
    const q = join(dir, "cli-q8.gguf");
    const qr = JSON.parse(await cli("quantize", merged, q, "Q8_0", "--json")) as { type: string };
    expect(qr.type).toBe("Q8_0");
    expect(existsSync(q)).toBe(true);
    expect(openGgufSync(merged).metadata.get("tallrec.merged_adapters")?.value).toBe("cli-adapter.gguf:0.5");
    // the merged model at 0.5 scores as the converted model with the adapter at 0.5
    expect(worst(await scores(merged), await scores(model, [{ path: adapter, scale: 0.5 }]))).toBeLessThan(1e-3);
    expect(worst(await scores(q, [], "f16"), await scores(merged, [], "f16"))).toBeLessThan(0.3);
  });

  it("turns bad input into a one-line CliError and usage mistakes into usage errors", async () => {
    const e1 = await cli("convert-lora", join(dir, "nowhere"), "-m", paths.tiny, "-o", join(dir, "x.gguf")).catch((e: unknown) => e);
    expect(e1).toBeInstanceOf(CliError);
    expect((e1 as CliError).exitCode).toBe(1);
    expect((e1 as Error).message).toMatch(/nowhere: not a directory/);
    const saved = process.env.TALLREC_MODEL;
    delete process.env.TALLREC_MODEL;
    try {
      const e2 = await cli("merge", "-o", join(dir, "x.gguf"), "-l", paths.loraA).catch((e: unknown) => e);
      expect((e2 as CliError).exitCode).toBe(2);
      expect((e2 as Error).message).toMatch(/no base model/);
    } finally {
      if (saved !== undefined) process.env.TALLREC_MODEL = saved;
    }
    const e3 = await cli("quantize", paths.tiny, join(dir, "x.gguf"), "Q9").catch((e: unknown) => e);
    expect((e3 as Error).message).toMatch(/unknown quantization type "Q9"/);
    expect(existsSync(join(dir, "x.gguf"))).toBe(false);
  });
});
