/**
 * convert-lora: PEFT adapters (adapter_config.json + adapter_model.safetensors / .bin) to GGUF.
 *
 * - The PEFT adapters the synthetic generator writes convert back to exactly the generator's GGUF
 *   adapters (every tensor byte for byte, alpha), from both file formats.
 * - Scores of llama.cpp running the converted model + converted adapter equal an independent
 *   float64 reference that applies the PEFT adapter in Hugging Face's convention (rotate-half
 *   RoPE on unpermuted weights, delta = s·B·A) within 1e-3 × max(1, |logit|): q/v adapters
 *   (TALLRec's), all seven projections, use_rslora, and rank/alpha patterns.
 * - Bad input is refused with a message naming the problem, and no output file is left.
 */
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { ConvertError } from "../src/convert/errors.js";
import { convertPeftLora } from "../src/convert/lora.js";
import { convertHfModel } from "../src/convert/model.js";
import { encodeSafetensors } from "../src/convert/safetensors.js";
import { encodeTorchCheckpoint } from "../src/convert/torch.js";
import { encodeZip } from "../src/convert/zip.js";
import { PickleBuilder } from "../src/convert/pickle.js";
import { Engine, type Score } from "../src/engine/engine.js";
import { getMetadataNumber, openGgufSync, readTensorBytes } from "../src/gguf/reader.js";
import { gv, kv, writeGguf } from "../src/gguf/writer.js";
import { renderPrompt } from "../src/engine/prompt.js";
import { LLAMA_PRESETS, TINY_LORA_A, TINY_LORA_B } from "../src/synth/index.js";
import { writeHfLlamaModel, writePeftAdapter } from "../src/synth/hf.js";
import { sampleRows } from "./helpers/data.js";
import { relDiff, testModels } from "./helpers/models.js";
import { loadHfReference } from "./reference/hf64.js";

const YES = 8241;
const NO = 3782;

let dir: string;
let paths: Awaited<ReturnType<typeof testModels>>;
const hfModel = () => join(dir, "hf-tiny");
const convertedModel = () => join(dir, "tiny-converted.gguf");

beforeAll(async () => {
  paths = await testModels();
  dir = await mkdtemp(join(tmpdir(), "tallrec-convert-lora-"));
  await writeHfLlamaModel(hfModel(), "tiny");
  await convertHfModel(hfModel(), convertedModel());
});
afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** Files in the work dir whose names start with `prefix` (to check nothing half-written remains). */
function leftovers(prefix: string): string[] {
  return readdirSync(dir).filter((f) => f.startsWith(prefix));
}

function sameTensors(expected: string, got: string): void {
  const a = openGgufSync(expected);
  const b = openGgufSync(got);
  expect(b.tensors.map((t) => t.name).sort()).toEqual(a.tensors.map((t) => t.name).sort());
  for (const t of a.tensors) {
    const u = b.tensorsByName.get(t.name)!;
    expect(u.dims, t.name).toEqual(t.dims);
    expect(u.typeName, t.name).toBe(t.typeName);
    expect(Buffer.from(readTensorBytes(b, t.name)).equals(Buffer.from(readTensorBytes(a, t.name))), `${t.name} bytes`).toBe(true);
  }
}

describe("PEFT adapters convert to exactly the generator's GGUF adapters", () => {
  it.each([
    { label: "q/v r8 (TALLRec's), safetensors", opts: TINY_LORA_A, ref: "loraA" as const, format: "safetensors" as const },
    { label: "q/v r8, adapter_model.bin", opts: TINY_LORA_A, ref: "loraA" as const, format: "bin" as const },
    { label: "all seven projections r4, safetensors", opts: TINY_LORA_B, ref: "loraB" as const, format: "safetensors" as const },
    { label: "all seven projections r4, adapter_model.bin", opts: TINY_LORA_B, ref: "loraB" as const, format: "bin" as const },
  ])("$label", async ({ opts, ref, format }) => {
    const ad = join(dir, `peft-${ref}-${format}`);
    await writePeftAdapter(ad, "tiny", opts, { format });
    expect(existsSync(join(ad, format === "bin" ? "adapter_model.bin" : "adapter_model.safetensors"))).toBe(true);
    const out = `${ad}.gguf`;
    const r = await convertPeftLora(ad, out, { base: convertedModel() });
    expect(r.alpha).toBe(opts.alpha);
    expect(r.ranks).toEqual([opts.r]);
    expect(r.tensors).toBe(2 * 2 * opts.targets.length);
    sameTensors(paths[ref], out);
    const f = openGgufSync(out);
    expect(getMetadataNumber(f, "adapter.lora.alpha")).toBe(opts.alpha);
    expect(f.metadata.get("general.type")?.value).toBe("adapter");
    expect(f.metadata.get("adapter.type")?.value).toBe("lora");
  });

  it("F16 and BF16 adapter tensors are read exactly; --outtype f16 writes F16", async () => {
    const ad = join(dir, "peft-f16");
    await writePeftAdapter(ad, "tiny", TINY_LORA_A, { dtype: "F16", format: "bin" });
    const out16 = join(dir, "peft-f16-out16.gguf");
    await convertPeftLora(ad, out16, { base: paths.tiny, outtype: "f16" });
    const out32 = join(dir, "peft-f16-out32.gguf");
    await convertPeftLora(ad, out32, { base: paths.tiny });
    const f16 = openGgufSync(out16);
    const f32 = openGgufSync(out32);
    expect(new Set(f16.tensors.map((t) => t.typeName))).toEqual(new Set(["F16"]));
    expect(new Set(f32.tensors.map((t) => t.typeName))).toEqual(new Set(["F32"]));
    // F16 values widen to F32 exactly and narrow back to the same bits
    const ref = openGgufSync(paths.loraA);
    const name = "blk.1.attn_q.weight.lora_b";
    const a = new Float32Array(readTensorBytes(f32, name).buffer);
    const h = new Uint16Array(readTensorBytes(f16, name).buffer);
    const orig = new Float32Array(readTensorBytes(ref, name).buffer);
    let maxRel = 0;
    for (let i = 0; i < a.length; i++) maxRel = Math.max(maxRel, Math.abs(a[i] - orig[i]) / Math.abs(orig[i] || 1));
    expect(maxRel).toBeLessThan(2 ** -11); // the generator's F32 values rounded once to F16
    expect(maxRel).toBeGreaterThan(0);
    expect(h.length).toBe(a.length);

    const adBf = join(dir, "peft-bf16");
    await writePeftAdapter(adBf, "tiny", TINY_LORA_A, { dtype: "BF16" });
    const outBf = join(dir, "peft-bf16.gguf");
    await convertPeftLora(adBf, outBf, { base: paths.tiny });
    const bf = new Float32Array(readTensorBytes(openGgufSync(outBf), name).buffer);
    // every converted value is a bfloat16: its low 16 bits are zero
    const bits = new Uint32Array(bf.buffer);
    expect(bits.every((b) => (b & 0xffff) === 0)).toBe(true);
  });
});

describe("the scale llama.cpp applies equals PEFT's", () => {
  it("use_rslora writes alpha·sqrt(r), so alpha_gguf / r = alpha / sqrt(r)", async () => {
    const ad = join(dir, "peft-rslora");
    await writePeftAdapter(ad, "tiny", TINY_LORA_A, { useRslora: true });
    const out = `${ad}.gguf`;
    const r = await convertPeftLora(ad, out, { base: paths.tiny });
    const alpha = getMetadataNumber(openGgufSync(out), "adapter.lora.alpha");
    expect(alpha / 8).toBeCloseTo(16 / Math.sqrt(8), 6);
    expect(r.scale).toBeCloseTo(16 / Math.sqrt(8), 12);
    // the tensors are unchanged: only alpha carries the scale
    sameTensors(paths.loraA, out);
  });

  it("target_modules given as a regular expression (PEFT's other form) is accepted", async () => {
    const ad = join(dir, "peft-regex");
    await writePeftAdapter(ad, "tiny", TINY_LORA_A, { config: { target_modules: ".*\\.(q_proj|v_proj)$" } });
    await convertPeftLora(ad, `${ad}.gguf`, { base: paths.tiny });
    sameTensors(paths.loraA, `${ad}.gguf`);
  });

  it("an alpha_pattern entry is folded into that module's lora_B", async () => {
    const ad = join(dir, "peft-pattern");
    await writePeftAdapter(ad, "tiny", TINY_LORA_A, { config: { alpha_pattern: { "layers.1.self_attn.v_proj": 4 } } });
    const out = `${ad}.gguf`;
    const notes: string[] = [];
    await convertPeftLora(ad, out, { base: paths.tiny, log: (m) => notes.push(m) });
    expect(notes.join("\n")).toMatch(/folded/);
    const got = openGgufSync(out);
    const ref = openGgufSync(paths.loraA);
    const read = (f: typeof got, n: string) => new Float32Array(readTensorBytes(f, n).buffer);
    // v_proj of block 1: PEFT scale 4/8 instead of 16/8, so lora_b is multiplied by 1/4
    const b1 = read(got, "blk.1.attn_v.weight.lora_b");
    const r1 = read(ref, "blk.1.attn_v.weight.lora_b");
    for (let i = 0; i < b1.length; i++) expect(b1[i]).toBeCloseTo(r1[i] / 4, 6);
    // block 0 is untouched
    expect(Buffer.from(readTensorBytes(got, "blk.0.attn_v.weight.lora_b")).equals(Buffer.from(readTensorBytes(ref, "blk.0.attn_v.weight.lora_b")))).toBe(true);
  });
});

describe("llama.cpp with the converted model and adapter equals the Hugging Face float64 reference", () => {
  const cases = [
    { label: "q/v adapter (TALLRec's r=8, alpha=16)", opts: TINY_LORA_A, peft: {} },
    { label: "adapter on all seven projections (r=4, alpha=8)", opts: TINY_LORA_B, peft: {} },
    { label: "q/v adapter with use_rslora", opts: TINY_LORA_A, peft: { useRslora: true } },
  ];
  let engine: Engine;
  const adapterDirs: string[] = [];
  beforeAll(async () => {
    const adapters = [];
    for (const [i, c] of cases.entries()) {
      const ad = join(dir, `score-${i}`);
      await writePeftAdapter(ad, "tiny", c.opts, c.peft);
      await convertPeftLora(ad, `${ad}.gguf`, { base: convertedModel() });
      adapterDirs.push(ad);
      adapters.push({ name: `c${i}`, path: `${ad}.gguf` });
    }
    engine = await Engine.load({ model: convertedModel(), adapters, defaultAdapter: null, gpu: "cpu", contextSize: 1024, kvType: "f32" });
  });
  afterAll(async () => engine?.close());

  const prompts = () => [renderPrompt(sampleRows("movie")[3]), renderPrompt(sampleRows("book")[5]), renderPrompt({ instruction: "Is it?", input: "" })];

  it("the converted base model alone (q/k permutation of convert-model)", async () => {
    const ref = loadHfReference(hfModel());
    const texts = prompts();
    const got = (await engine.score(texts, { adapter: null })) as Score[];
    texts.forEach((text, k) => {
      const row = ref.forwardLastLogits(Array.from(engine.tokenize(text)));
      expect(relDiff(got[k].logitYes, row[YES])).toBeLessThan(1e-3);
      expect(relDiff(got[k].logitNo, row[NO])).toBeLessThan(1e-3);
    });
  });

  it.each([...cases.map((c, i) => ({ ...c, i, scale: 1 })), { ...cases[1], i: 1, scale: 0.5, label: "all seven projections at scale 0.5" }])("$label", async ({ i, scale }) => {
    const ref = loadHfReference(hfModel(), [{ dir: adapterDirs[i], scale }]);
    const base = loadHfReference(hfModel());
    const texts = prompts();
    const got = (await engine.score(texts, { adapter: [{ name: `c${i}`, scale }] })) as Score[];
    let worst = 0;
    let moved = 0;
    texts.forEach((text, k) => {
      const tokens = Array.from(engine.tokenize(text));
      const row = ref.forwardLastLogits(tokens);
      expect(got[k].error).toBeUndefined();
      worst = Math.max(worst, relDiff(got[k].logitYes, row[YES]), relDiff(got[k].logitNo, row[NO]));
      const b = base.forwardLastLogits(tokens);
      moved = Math.max(moved, Math.abs(row[YES] - b[YES]), Math.abs(row[NO] - b[NO]));
    });
    expect(worst).toBeLessThan(1e-3);
    expect(moved).toBeGreaterThan(1e-2); // the adapter matters: a wrong scale or permutation would show
  });
});

describe("bad adapters are refused with a clear message and nothing is written", () => {
  async function peft(name: string, config?: Record<string, unknown>, format: "safetensors" | "bin" = "safetensors", opts = TINY_LORA_A): Promise<string> {
    const ad = join(dir, name);
    await writePeftAdapter(ad, "tiny", opts, { config, format });
    return ad;
  }
  async function refuse(ad: string, pattern: RegExp, base = paths.tiny): Promise<void> {
    const out = `${ad}-out.gguf`;
    const err = await convertPeftLora(ad, out, { base }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConvertError);
    expect((err as Error).message).toMatch(pattern);
    expect(existsSync(out)).toBe(false);
    expect(leftovers(`${ad.split("/").pop()}-out.gguf`)).toEqual([]);
  }

  it("an empty adapter_model.bin (TALLRec's 443-byte file) says PEFT saved nothing", async () => {
    const ad = await peft("empty");
    await rm(join(ad, "adapter_model.safetensors"));
    writeFileSync(join(ad, "adapter_model.bin"), encodeTorchCheckpoint([]));
    expect(statSync(join(ad, "adapter_model.bin")).size).toBeLessThan(1000);
    await refuse(ad, /holds no tensors.*PEFT saved an empty state dict/);
  });

  it("an empty adapter_model.safetensors too", async () => {
    const ad = await peft("empty-st");
    writeFileSync(join(ad, "adapter_model.safetensors"), Buffer.concat(encodeSafetensors([], { format: "pt" })));
    await refuse(ad, /holds no tensors/);
  });

  it.each([
    { label: "bias other than none", config: { bias: "lora_only" }, pattern: /bias "lora_only" is not supported/ },
    { label: "modules_to_save", config: { modules_to_save: ["lm_head"] }, pattern: /modules_to_save \["lm_head"\] is not supported/ },
    { label: "DoRA", config: { use_dora: true }, pattern: /DoRA/ },
    { label: "another PEFT type", config: { peft_type: "IA3" }, pattern: /peft_type "IA3" is not supported/ },
    { label: "a target module LLaMA lacks", config: { target_modules: ["q_proj", "query_key_value"] }, pattern: /target module "query_key_value" is not in a LLaMA base/ },
    { label: "weights for a module target_modules does not list", config: { target_modules: ["q_proj"] }, pattern: /holds weights for v_proj, which adapter_config.json's target_modules/ },
    { label: "r disagreeing with the tensors", config: { r: 16 }, pattern: /has rank 8, but adapter_config.json says r = 16/ },
    { label: "no lora_alpha", config: { lora_alpha: null }, pattern: /lora_alpha must be a positive number/ },
  ])("$label", async ({ label, config, pattern }) => {
    await refuse(await peft(`bad-${label.replace(/\W+/g, "-")}`, config), pattern);
  });

  it("a layer the base model does not have", async () => {
    const ad = await peft("layers");
    const base = join(dir, "one-layer.gguf");
    // a one-block LLaMA: the adapter's block 1 is missing
    const hf = join(dir, "hf-one-layer");
    await writeHfLlamaModel(hf, { ...LLAMA_PRESETS.tiny, nLayer: 1 });
    await convertHfModel(hf, base);
    await refuse(ad, /targets blk\.1\.attn_q\.weight, which the base model .* does not have \(it has 1 blocks\)/, base);
  });

  it("shapes that do not fit the base model", async () => {
    const ad = await peft("shapes");
    const hf = join(dir, "hf-wide");
    const base = join(dir, "wide.gguf");
    await writeHfLlamaModel(hf, { ...LLAMA_PRESETS.tiny, nEmbd: 128, nHead: 8, nHeadKv: 4 });
    await convertHfModel(hf, base);
    await refuse(ad, /shape mismatch for layer 0 q_proj: lora_A \[8, 64\] and lora_B \[64, 8\] do not fit the base weight blk\.0\.attn_q\.weight \(out 128, in 128/, base);
  });

  it("a base model of another architecture, or an adapter given as the base", async () => {
    const ad = await peft("arch");
    const other = join(dir, "qwen.gguf");
    await writeGguf(other, { metadata: [kv("general.architecture", gv.str("qwen2")), kv("qwen2.block_count", gv.u32(2))], tensors: [{ name: "token_embd.weight", dims: [64, 4], type: 0, data: new Float32Array(256) }] });
    await refuse(ad, /architecture is "qwen2"; PEFT LLaMA adapters need a llama base/, other);
    await refuse(ad, /this is a LoRA adapter, not a base model/, paths.loraA);
  });

  it("an unexpected tensor (LoRA on embeddings, a bias, a lora_B without lora_A)", async () => {
    const ad = await peft("extra");
    const good = readFileSync(join(ad, "adapter_model.safetensors"));
    const n = Number(good.readBigUInt64LE(0));
    const header = JSON.parse(good.subarray(8, 8 + n).toString()) as Record<string, { dtype: string; shape: number[]; data_offsets: number[] }>;
    const data = good.subarray(8 + n);
    const entries = Object.entries(header)
      .filter(([k]) => k !== "__metadata__")
      .map(([name, t]) => ({ name, dtype: t.dtype, shape: t.shape, data: new Uint8Array(data.subarray(t.data_offsets[0], t.data_offsets[1])) }));
    const cases: Array<[typeof entries, RegExp]> = [
      [[...entries, { name: "base_model.model.model.embed_tokens.lora_embedding_A", dtype: "F32", shape: [8, 4], data: new Uint8Array(128) }], /LoRA on the token embedding/],
      [[...entries, { name: "base_model.model.model.layers.0.self_attn.q_proj.lora_B.bias", dtype: "F32", shape: [64], data: new Uint8Array(256) }], /is a bias/],
      [entries.filter((e) => !e.name.endsWith("layers.1.self_attn.v_proj.lora_A.weight")), /layer 1 v_proj has lora_B but no lora_A/],
      [
        [...entries, { name: "base_model.model.model.layers.0.self_attn.rotary_emb.lora_A.weight", dtype: "F32", shape: [8, 64], data: new Uint8Array(2048) }],
        /targets self_attn\.rotary_emb, which a LLaMA base does not have/,
      ],
    ];
    for (const [list, pattern] of cases) {
      writeFileSync(join(ad, "adapter_model.safetensors"), Buffer.concat(encodeSafetensors(list)));
      await refuse(ad, pattern);
    }
  });

  it("truncated weight files", async () => {
    for (const format of ["safetensors", "bin"] as const) {
      const ad = await peft(`trunc-${format}`, undefined, format);
      const file = join(ad, format === "bin" ? "adapter_model.bin" : "adapter_model.safetensors");
      const bytes = readFileSync(file);
      writeFileSync(file, bytes.subarray(0, bytes.length - 700));
      await refuse(ad, /truncated/);
    }
  });

  it("a corrupt storage found while writing leaves no output behind", async () => {
    const ad = await peft("corrupt-storage", undefined, "bin");
    const file = join(ad, "adapter_model.bin");
    const bytes = readFileSync(file);
    bytes[Math.floor(bytes.length / 2)] ^= 0x55; // inside one of the storages: the pickle still reads
    writeFileSync(file, bytes);
    await refuse(ad, /CRC-32 mismatch/);
  });

  it("a pickle that calls anything but the tensor-rebuild functions is never run", async () => {
    const ad = await peft("evil", undefined, "bin");
    const marker = join(dir, "pwned");
    const hostile = [
      // os.system("touch pwned")
      { pkl: new PickleBuilder().proto(2).global("os", "system").str(`touch ${marker}`).tuple1().reduce().stop().finish(), pattern: /Python global os\.system, which is not allowed/ },
      // builtins.eval via STACK_GLOBAL (protocol 4)
      { pkl: new PickleBuilder().proto(4).str("builtins").str("eval").bytes(0x93).str("1").tuple1().reduce().stop().finish(), pattern: /builtins\.eval, which is not allowed/ },
      // torch.storage._load_from_bytes: unpickles arbitrary bytes, so it is refused too
      { pkl: new PickleBuilder().proto(2).global("torch.storage", "_load_from_bytes").bytes(0x43, 1, 0).tuple1().reduce().stop().finish(), pattern: /torch\.storage\._load_from_bytes, which is not allowed/ },
      // a storage class is a tag, never callable
      { pkl: new PickleBuilder().proto(2).global("torch", "FloatStorage").emptyTuple().reduce().stop().finish(), pattern: /torch\.FloatStorage, which may not be called/ },
      // object construction without a global call
      { pkl: new PickleBuilder().proto(2).global("collections", "OrderedDict").emptyTuple().bytes(0x81).stop().finish(), pattern: /NEWOBJ \(object construction\) is not allowed/ },
    ];
    for (const { pkl, pattern } of hostile) {
      writeFileSync(join(ad, "adapter_model.bin"), encodeZip([{ name: "archive/data.pkl", data: pkl }]));
      await refuse(ad, pattern);
    }
    expect(existsSync(marker)).toBe(false);
  });

  it("a directory that is not an adapter", async () => {
    await writeFile(join(dir, "not-a-dir"), "x");
    await refuse(join(dir, "not-a-dir"), /not a directory/);
    await refuse(hfModel(), /no adapter_config\.json/);
  });
});
