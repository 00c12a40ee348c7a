/**
 * convert-model: Hugging Face LlamaForCausalLM checkpoints to GGUF.
 *
 * The synthetic generator writes the same tiny model in Hugging Face layout (q/k rows
 * unpermuted); converting it must give exactly the tensors and metadata the GGUF generator
 * wrote directly: F32 safetensors with tokenizer.model, F16 in sharded PyTorch .bin files with
 * only tokenizer.json, and the --outtype conversions. Bad checkpoints are refused with nothing
 * written.
 */
import { existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { ConvertError } from "../src/convert/errors.js";
import { convertHfModel } from "../src/convert/model.js";
import { f32ToBf16Bits, f32ToF16Bits } from "../src/gguf/float.js";
import { openGgufSync, readTensorBytes, readTensorF32, type GgufFile } from "../src/gguf/reader.js";
import { writeHfLlamaModel } from "../src/synth/hf.js";
import { LLAMA_PRESETS } from "../src/synth/index.js";
import { testModels } from "./helpers/models.js";

let dir: string;
let paths: Awaited<ReturnType<typeof testModels>>;

beforeAll(async () => {
  paths = await testModels();
  dir = await mkdtemp(join(tmpdir(), "tallrec-convert-model-"));
});
afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

const SYNTH_KEYS = new Set(["tallrec.synth.version", "tallrec.synth.spec"]);

function expectSameModel(expected: GgufFile, got: GgufFile): void {
  expect(got.tensors.map((t) => t.name).sort()).toEqual(expected.tensors.map((t) => t.name).sort());
  for (const t of expected.tensors) {
    const u = got.tensorsByName.get(t.name)!;
    expect([u.dims, u.typeName], t.name).toEqual([t.dims, t.typeName]);
    expect(Buffer.from(readTensorBytes(got, t.name)).equals(Buffer.from(readTensorBytes(expected, t.name))), `${t.name} bytes`).toBe(true);
  }
  const meta = (f: GgufFile) => Object.fromEntries([...f.metadata].filter(([k]) => !SYNTH_KEYS.has(k)));
  expect(meta(got)).toEqual(meta(expected));
}

describe("convert-model reproduces the GGUF generator's model exactly", () => {
  it("F32 safetensors with tokenizer.model", async () => {
    const hf = join(dir, "hf-f32");
    await writeHfLlamaModel(hf, "tiny", { tokenizer: "sentencepiece" });
    const out = join(dir, "f32.gguf");
    const r = await convertHfModel(hf, out);
    expect(r).toMatchObject({ outtype: "f32", tensors: 21, tokenizer: join(hf, "tokenizer.model") });
    expectSameModel(openGgufSync(paths.tiny), openGgufSync(out));
  });

  it("F16 in three PyTorch .bin shards with only tokenizer.json", async () => {
    const hf = join(dir, "hf-f16-bin");
    await writeHfLlamaModel(hf, "tiny-f16", { format: "bin", shards: 3, tokenizer: "json" });
    expect(readdirSync(hf).filter((f) => f.endsWith(".bin")).length).toBe(3);
    expect(existsSync(join(hf, "pytorch_model.bin.index.json"))).toBe(true);
    expect(existsSync(join(hf, "tokenizer.model"))).toBe(false);
    const out = join(dir, "f16.gguf");
    const r = await convertHfModel(hf, out);
    expect(r.outtype).toBe("f16");
    expect(r.tokenizer).toBe(join(hf, "tokenizer.json"));
    expectSameModel(openGgufSync(paths.tinyF16), openGgufSync(out));
  });

  it("sharded safetensors; --outtype f16 of an F32 checkpoint equals the generator's F16 model", async () => {
    const hf = join(dir, "hf-f32-sharded");
    await writeHfLlamaModel(hf, "tiny", { shards: 2 });
    expect(existsSync(join(hf, "model.safetensors.index.json"))).toBe(true);
    const out = join(dir, "f32-to-f16.gguf");
    await convertHfModel(hf, out, { outtype: "f16", name: "tallrec-synth-tiny-f16" });
    expectSameModel(openGgufSync(paths.tinyF16), openGgufSync(out));
  });

  it("--outtype bf16 rounds the matrices to bfloat16 and keeps the norms in F32", async () => {
    const hf = join(dir, "hf-f32");
    const out = join(dir, "bf16.gguf");
    await convertHfModel(hf, out, { outtype: "bf16" });
    const got = openGgufSync(out);
    const ref = openGgufSync(paths.tiny);
    expect(got.metadata.get("general.file_type")?.value).toBe(32);
    for (const t of ref.tensors) {
      const u = got.tensorsByName.get(t.name)!;
      const want = readTensorF32(ref, t.name);
      if (t.dims.length === 1) {
        expect(u.typeName).toBe("F32");
        expect(readTensorF32(got, t.name)).toEqual(want);
      } else {
        expect(u.typeName).toBe("BF16");
        const bits = new Uint16Array(readTensorBytes(got, t.name).buffer);
        for (let i = 0; i < want.length; i += 97) expect(bits[i]).toBe(f32ToBf16Bits(want[i]));
      }
    }
  });

  it("a BF16 checkpoint converts to BF16 by default and to F16 on request", async () => {
    const hf = join(dir, "hf-bf16");
    await writeHfLlamaModel(hf, "tiny", { dtype: "BF16" });
    const auto = join(dir, "bf16-auto.gguf");
    expect((await convertHfModel(hf, auto)).outtype).toBe("bf16");
    expect(openGgufSync(auto).tensorsByName.get("blk.0.attn_q.weight")!.typeName).toBe("BF16");
    const f16 = join(dir, "bf16-to-f16.gguf");
    await convertHfModel(hf, f16, { outtype: "f16" });
    const src = readTensorF32(openGgufSync(auto), "blk.1.ffn_up.weight");
    const bits = new Uint16Array(readTensorBytes(openGgufSync(f16), "blk.1.ffn_up.weight").buffer);
    for (let i = 0; i < src.length; i += 31) expect(bits[i]).toBe(f32ToF16Bits(src[i]));
  });
});

describe("special tokens", () => {
  it("a config.json that disagrees with the tokenizer (decapoda's bos 0 / eos 1) keeps the tokenizer's ids, with a note", async () => {
    const hf = join(dir, "hf-decapoda");
    await writeHfLlamaModel(hf, "tiny", { tokenizer: "sentencepiece" });
    const cfg = JSON.parse(readFileSync(join(hf, "config.json"), "utf8")) as Record<string, unknown>;
    writeFileSync(join(hf, "config.json"), JSON.stringify({ ...cfg, bos_token_id: 0, eos_token_id: 1, pad_token_id: -1, vocab_size: 32000, architectures: ["LLaMAForCausalLM"] }));
    // decapoda's tokenizer_config.json has empty special token strings
    writeFileSync(join(hf, "tokenizer_config.json"), JSON.stringify({ bos_token: "", eos_token: "", unk_token: "", tokenizer_class: "LLaMATokenizer" }));
    const notes: string[] = [];
    const out = join(dir, "decapoda.gguf");
    await convertHfModel(hf, out, { log: (m) => notes.push(m) });
    const f = openGgufSync(out);
    expect(f.metadata.get("tokenizer.ggml.bos_token_id")?.value).toBe(1);
    expect(f.metadata.get("tokenizer.ggml.eos_token_id")?.value).toBe(2);
    expect(f.metadata.has("tokenizer.ggml.padding_token_id")).toBe(false);
    expect(notes.join("\n")).toMatch(/config\.json bos_token_id 0 disagrees with the tokenizer's bos token 1 \("<s>"\)/);
  });
});

describe("bad checkpoints are refused and nothing is written", () => {
  async function fresh(name: string, opts: Parameters<typeof writeHfLlamaModel>[2] = {}): Promise<string> {
    const hf = join(dir, name);
    await writeHfLlamaModel(hf, "tiny", opts);
    return hf;
  }
  async function refuse(hf: string, pattern: RegExp): Promise<void> {
    const out = join(dir, "refused.gguf");
    const err = await convertHfModel(hf, out).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConvertError);
    expect((err as Error).message).toMatch(pattern);
    expect(readdirSync(dir).filter((f) => f.startsWith("refused.gguf"))).toEqual([]);
  }
  function editConfig(hf: string, patch: Record<string, unknown>): void {
    const cfg = JSON.parse(readFileSync(join(hf, "config.json"), "utf8")) as Record<string, unknown>;
    writeFileSync(join(hf, "config.json"), JSON.stringify({ ...cfg, ...patch }));
  }

  it("another architecture", async () => {
    const hf = await fresh("bad-arch");
    editConfig(hf, { architectures: ["GPTNeoXForCausalLM"], model_type: "gpt_neox" });
    await refuse(hf, /architecture "GPTNeoXForCausalLM" is not supported: only LlamaForCausalLM/);
  });

  it("sizes in config.json that the tensors do not have", async () => {
    const hf = await fresh("bad-shape");
    editConfig(hf, { intermediate_size: 256 });
    await refuse(hf, /tensor model\.layers\.0\.mlp\.gate_proj\.weight has shape \[172, 64\], expected \[256, 64\]/);
  });

  it("more layers than the checkpoint has, and tensors a plain LLaMA does not have", async () => {
    const hf = await fresh("bad-layers");
    editConfig(hf, { num_hidden_layers: 3 });
    await refuse(hf, /missing tensor model\.layers\.2\.input_layernorm\.weight/);
    editConfig(hf, { num_hidden_layers: 1 });
    await refuse(hf, /unexpected tensors model\.layers\.1\./);
  });

  it("an unsupported rope scaling", async () => {
    const hf = await fresh("bad-rope");
    editConfig(hf, { rope_scaling: { type: "yarn", factor: 4 } });
    await refuse(hf, /rope scaling "yarn" is not supported/);
  });

  it("a truncated safetensors file, and a shard the index names but that is missing", async () => {
    const hf = await fresh("bad-trunc", { shards: 2 });
    const shard = join(hf, "model-00002-of-00002.safetensors");
    const bytes = readFileSync(shard);
    writeFileSync(shard, bytes.subarray(0, bytes.length - 1000));
    await refuse(hf, /truncated: tensor .* ends at byte \d+ but the file has \d+ bytes/);
    rmSync(shard);
    await refuse(hf, /shard model-00002-of-00002\.safetensors is missing/);
  });

  it("no tokenizer, and a tokenizer that is not LLaMA's", async () => {
    const hf = await fresh("bad-tok", { tokenizer: "json" });
    const tj = JSON.parse(readFileSync(join(hf, "tokenizer.json"), "utf8")) as { model: Record<string, unknown> };
    writeFileSync(join(hf, "tokenizer.json"), JSON.stringify({ ...tj, model: { ...tj.model, byte_fallback: false, ignore_merges: true } }));
    await refuse(hf, /only LLaMA-1\/2 style tokenizers/);
    rmSync(join(hf, "tokenizer.json"));
    await refuse(hf, /no tokenizer: expected tokenizer\.model/);
  });

  it("no config.json, and no weights", async () => {
    const hf = await fresh("bad-files", { tokenizer: "sentencepiece" });
    rmSync(join(hf, "model.safetensors"));
    await refuse(hf, /no weights: expected model\.safetensors/);
    rmSync(join(hf, "config.json"));
    await refuse(hf, /no config\.json/);
  });

  it("a model smaller than its tokenizer", async () => {
    const small = { ...LLAMA_PRESETS.tiny, name: "small" };
    const hf = join(dir, "bad-vocab");
    await writeHfLlamaModel(hf, small);
    editConfig(hf, { vocab_size: 31999 });
    await refuse(hf, /vocab_size 31999 differs from the embedding's 32000 rows/);
  });
});
