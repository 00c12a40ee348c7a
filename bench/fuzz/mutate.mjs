// Hostile-input fuzzer: the seed corpus and the mutators. A mutator plans a list of operations
// from a seeded generator (`plan`) and applies them to a seed file (`apply`): a recipe is the
// format and the operations, so a crasher is stored as a few hundred bytes of JSON and rebuilt
// exactly from the generated corpus.
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import { copyFile, rm } from "node:fs/promises";
import { join } from "node:path";
import { deflateRawSync } from "node:zlib";

import { openWeightFile } from "../../dist/convert/checkpoint.js";
import { openGgufSync } from "../../dist/gguf/reader.js";
import { rewriteGguf } from "../../dist/gguf/rewrite.js";
import { ensureTestModels, generateLora } from "../../dist/synth/index.js";
import { writePeftAdapter } from "../../dist/synth/hf.js";
import { contiguous, decodeNumber, decodeValue, encodeNumber, encodeValue, patchTensorField, stateDictPickle, zipArchive } from "./formats.mjs";

const STR = 8;
const ARR = 9;

// ---- the seed corpus (deterministic: generated from the project's synthetic models)
/**
 * Builds the corpus in `dir` (kept between runs): a LLaMA model with the first 512 tokens of
 * LLaMA's vocabulary (the tiny model's blocks, 0.5 MB, fast to load), a LoRA adapter for it, and a
 * PEFT adapter folder in each weight format.
 */
export async function buildCorpus(repoRoot, dir) {
  mkdirSync(dir, { recursive: true });
  const models = await ensureTestModels(join(repoRoot, "models"));
  const corpus = {
    model: join(dir, "small.gguf"),
    adapter: join(dir, "small-lora.gguf"),
    peftSafetensors: join(dir, "peft-safetensors"),
    peftBin: join(dir, "peft-bin"),
  };
  if (!existsSync(corpus.model)) await smallModel(models.tiny, corpus.model, 512);
  if (!existsSync(corpus.adapter)) await generateLora(corpus.adapter, corpus.model, { r: 8, alpha: 16, targets: ["attn_q", "attn_v"], seed: 11 });
  const lora = { r: 8, alpha: 16, targets: ["attn_q", "attn_v"], seed: 12 };
  if (!existsSync(join(corpus.peftSafetensors, "adapter_config.json"))) await writePeftAdapter(corpus.peftSafetensors, "tiny", lora, { format: "safetensors" });
  if (!existsSync(join(corpus.peftBin, "adapter_config.json"))) await writePeftAdapter(corpus.peftBin, "tiny", lora, { format: "bin" });
  return corpus;
}

/** The tiny model cut to its first `n` tokens (embedding and output rows too). */
async function smallModel(src, dst, n) {
  const f = openGgufSync(src);
  const cut = (key) => ({ ...f.metadata.get(key), value: f.metadata.get(key).value.slice(0, n) });
  const metadata = {
    "tokenizer.ggml.tokens": cut("tokenizer.ggml.tokens"),
    "tokenizer.ggml.scores": cut("tokenizer.ggml.scores"),
    "tokenizer.ggml.token_type": cut("tokenizer.ggml.token_type"),
    "llama.vocab_size": { type: 4, value: n },
  };
  for (const [key, v] of f.metadata) if (key.endsWith("_token_id") && v.value >= n) metadata[key] = null;
  const rows = (name) => {
    const t = f.tensorsByName.get(name);
    return { dims: [t.dims[0], n], data: (old) => old.subarray(0, t.dims[0] * n * 4) };
  };
  await rewriteGguf(src, dst, { metadata, tensors: { "token_embd.weight": rows("token_embd.weight"), "output.weight": rows("output.weight") } });
}

// ---- GGUF mutants (models and adapters)
const U32S = [0, 1, 2, 3, 7, 8, 16, 64, 511, 512, 513, 1024, 1025, 65535, 2 ** 31, 2 ** 32 - 1];
const F32S = [NaN, Infinity, -Infinity, 0, -0, -1, 1e-45, 1e-30, 0.5, 1e6, 3e38, -3e38];
const STRS = ["", "none", "no_vocab", "bogus", "gpt2", "t5", "llama", "adapter", "model", "lora", "qwen2", "yarn", "longrope", "\u001b[31mred\u001b[0m", "\u0000", "x".repeat(70_000)];
const EXTRA_KEYS = [
  "llama.expert_count",
  "llama.expert_used_count",
  "llama.expert_group_count",
  "llama.nextn_predict_layers",
  "llama.attention.key_length",
  "llama.attention.value_length",
  "llama.rope.dimension_count",
  "llama.rope.scaling.type",
  "llama.rope.scaling.factor",
  "llama.rope.freq_base",
  "llama.pooling_type",
  "llama.attention.causal",
  "llama.embedding_length_out",
  "split.count",
  "tokenizer.ggml.model",
  "tokenizer.ggml.merges",
  "tokenizer.ggml.suppress_tokens",
  "tokenizer.ggml.padding_token_id",
  "tokenizer.ggml.eot_token_id",
  "tokenizer.chat_template",
  "adapter.lora.alpha",
  "adapter.alora.invocation_tokens",
  "general.alignment",
];

function randomValue(rng) {
  switch (rng.int(12)) {
    case 0:
      return { type: STR, value: rng.pick(STRS) };
    case 1:
      return { type: 4, value: rng.pick(U32S) };
    case 2:
      return { type: 6, value: rng.pick(F32S) };
    case 3:
      return { type: 5, value: rng.pick([-1, -(2 ** 31), 0, 1, 2 ** 31 - 1]) };
    case 4:
      return { type: 10, value: BigInt(rng.pick([0, 1, 2 ** 40, 2 ** 53])) };
    case 5:
      return { type: 7, value: rng.chance(0.5) };
    case 6:
      return { type: 12, value: rng.pick([NaN, 1e308, -1e308, 16]) };
    case 7:
      return { type: 0, value: rng.int(256) };
    case 8:
      return { type: ARR, itemType: 6, value: [rng.pick(F32S), rng.pick(F32S)] };
    case 9:
      return { type: ARR, itemType: 4, value: Array.from({ length: rng.pick([0, 1, 2, 3, 513]) }, () => rng.pick(U32S)) };
    case 10:
      return { type: ARR, itemType: STR, value: [rng.pick(STRS), "a"] };
    default:
      return { type: ARR, itemType: 5, value: [rng.pick([-1, 0, 7, 1000000])] };
  }
}

/** A value of the same type as `v`, at a boundary. */
function boundaryValue(rng, v) {
  if (v.type === 4 || v.type === 5 || v.type === 2 || v.type === 0) return { type: v.type, value: v.type === 4 ? rng.pick(U32S) : v.type === 5 ? rng.pick([-1, 0, 1, 2 ** 31 - 1]) : rng.int(256) };
  if (v.type === 6) return { type: 6, value: rng.pick(F32S) };
  if (v.type === 7) return { type: 7, value: !v.value };
  if (v.type === STR) return { type: STR, value: rng.pick(STRS) };
  if (v.type === ARR) {
    const n = v.value.length;
    const value = v.value.slice();
    const k = rng.int(4);
    if (k === 0) return { ...v, value: [] };
    if (k === 1) return { ...v, value: value.slice(0, Math.max(0, n - 1 - rng.int(8))) };
    if (k === 2 && n > 1) {
      value[rng.int(n)] = value[rng.int(n)];
      return { ...v, value };
    }
    if (n > 0) value[rng.int(n)] = v.itemType === STR ? rng.pick(STRS) : v.itemType === 6 ? rng.pick(F32S) : rng.pick([-1, 0, 6, 7, 2 ** 31 - 1]);
    return { ...v, value };
  }
  return randomValue(rng);
}

/** Plans 1-3 operations on a GGUF file. */
export function planGguf(rng, file, kind) {
  const keys = [...file.metadata.keys()];
  const names = file.tensors.map((t) => t.name);
  const ops = [];
  const n = rng.chance(0.7) ? 1 : 2 + rng.int(2);
  for (let i = 0; i < n; i++) {
    const r = rng.int(100);
    const key = rng.pick(keys);
    const name = rng.pick(names);
    if (r < 22) ops.push({ op: "meta-set", key, value: encodeValue(randomValue(rng)) });
    else if (r < 42) ops.push({ op: "meta-set", key, value: encodeValue(boundaryValue(rng, file.metadata.get(key))) });
    else if (r < 48) ops.push({ op: "meta-del", key });
    else if (r < 56) ops.push({ op: "meta-set", key: rng.pick(EXTRA_KEYS), value: encodeValue(randomValue(rng)) });
    else if (r < 62 && kind === "model") {
      const nTok = file.metadata.get("tokenizer.ggml.tokens").value.length;
      const a = rng.int(nTok);
      const b = rng.int(nTok);
      ops.push(rng.chance(0.5) ? { op: "vocab-dup", a, b } : { op: "vocab-set", index: a, value: rng.pick(["", "<0x0A>", "<0x", "<0xZZ>", "\u0000", "▁"]) });
    } else if (r < 72) ops.push({ op: "tensor-field", name, field: "type", index: 0, value: rng.pick([0, 1, 2, 4, 5, 8, 12, 15, 24, 25, 26, 27, 28, 30, 31, 36, 39, 41, 42, 43, 99, 2 ** 31]) });
    else if (r < 78) ops.push({ op: "tensor-field", name, field: rng.pick(["dim", "dim", "ndims", "offset"]), index: rng.int(4), value: rng.pick([0, 1, 3, 5, 8, 63, 65, 1024, 2 ** 31, -1, 2 ** 40]) });
    else if (r < 86) {
      const t = file.tensors.find((x) => x.name === name);
      const count = Math.max(1, Math.floor(t.byteSize / 4));
      ops.push({ op: "tensor-poke", name, index: rng.int(count), value: encodeNumber(rng.pick([NaN, Infinity, -Infinity, 3e38, -3e38, 1e38, 65504, 65520])) });
    } else if (r < 89) ops.push({ op: "tensor-rename", name, to: rng.pick([`${name}\u001b[2J`, name.replace(/\.lora_[ab]$/, ""), name.replace("blk.0", "blk.999"), name.replace("blk.1", "blk.0"), `x${name}`]) });
    else if (r < 91) ops.push({ op: "tensor-drop", name });
    else if (r < 97) ops.push({ op: "flip", offset: rng.int(Math.min(file.dataOffset, 1 << 16)), xor: 1 + rng.int(255) });
    else ops.push({ op: "truncate", length: rng.int(file.fileSize) });
  }
  return ops;
}

function f32Bytes(x) {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setFloat32(0, x, true);
  return b;
}

/** Writes the mutant `ops` of GGUF `src` to `dst`. */
export async function applyGguf(src, dst, ops) {
  const file = openGgufSync(src);
  const metadata = {};
  const tensors = {};
  let tokens = null;
  for (const o of ops) {
    if (o.op === "meta-set") metadata[o.key] = decodeValue(o.value);
    else if (o.op === "meta-del") metadata[o.key] = null;
    else if (o.op === "vocab-dup" || o.op === "vocab-set") {
      tokens ??= file.metadata.get("tokenizer.ggml.tokens").value.slice();
      if (o.op === "vocab-dup") tokens[o.a] = tokens[o.b];
      else tokens[o.index] = o.value;
      metadata["tokenizer.ggml.tokens"] = { type: ARR, itemType: STR, value: tokens };
    } else if (o.op === "tensor-poke") {
      const prev = tensors[o.name]?.data;
      tensors[o.name] = {
        ...tensors[o.name],
        data: (old) => {
          const c = (prev ? prev(old) : old).slice();
          const at = Math.min(o.index * 4, Math.max(0, c.length - 4));
          c.set(f32Bytes(decodeNumber(o.value)).subarray(0, Math.min(4, c.length)), at);
          return c;
        },
      };
    } else if (o.op === "tensor-rename") tensors[o.name] = { ...tensors[o.name], name: o.to };
    else if (o.op === "tensor-drop") tensors[o.name] = null;
  }
  await rewriteGguf(src, dst, { metadata, tensors });
  const raw = ops.filter((o) => o.op === "tensor-field" || o.op === "flip" || o.op === "truncate");
  if (raw.length > 0) {
    const bytes = readFileSync(dst);
    let length = bytes.length;
    for (const o of raw) {
      if (o.op === "tensor-field") patchTensorField(bytes, o.name, o.field, o.index, o.value);
      else if (o.op === "flip" && o.offset < bytes.length) bytes[o.offset] ^= o.xor;
      else if (o.op === "truncate") length = Math.min(length, o.length);
    }
    writeFileSync(dst, bytes.subarray(0, length));
  }
}

// ---- PEFT checkpoints (adapter_config.json + safetensors or a PyTorch zip/pickle)
const CONFIG_VALUES = [0, -1, 1, 8, 1e6, 1e308, -1e308, 2 ** 53, 0.5, "8", "", null, true, [], {}, [1, 2], { q_proj: 4 }];
const NASTY_KEYS = ["(.*.*)*X", "(a|aa)+$", "((.+)+)+q_proj", "(?=q)q_proj", "q_proj", "layers\\.\\d{1,3}\\..*", "[", "(", "\\", "a{1000}", "x".repeat(2000), "^model\\.layers\\.0\\.self_attn\\.q_proj$", "\u001b[31m"];
const CONFIG_KEYS = ["r", "lora_alpha", "use_rslora", "target_modules", "rank_pattern", "alpha_pattern", "fan_in_fan_out", "peft_type", "bias", "modules_to_save", "use_dora", "base_model_name_or_path"];

/** Plans 1-3 operations on a PEFT folder (`format`: "safetensors" or "bin"). */
export function planPeft(rng, dir, format) {
  const tensors = openWeightFile(join(dir, format === "bin" ? "adapter_model.bin" : "adapter_model.safetensors"));
  const ops = [];
  const n = rng.chance(0.7) ? 1 : 2 + rng.int(2);
  for (let i = 0; i < n; i++) {
    const r = rng.int(100);
    const t = rng.int(tensors.length);
    if (r < 25) {
      const key = rng.pick(CONFIG_KEYS);
      let value = rng.pick(CONFIG_VALUES);
      if ((key === "rank_pattern" || key === "alpha_pattern") && rng.chance(0.7)) value = { [rng.pick(NASTY_KEYS)]: rng.pick([4, 8, 16, 1e6, -1, 0]) };
      if (key === "target_modules" && rng.chance(0.5)) value = rng.pick([["q_proj", "v_proj"], ["embed_tokens"], "(.*.*)*X", ".*", ["q_proj"]]);
      ops.push({ op: "config-set", key, value: encodeNumber(value) });
    } else if (r < 30) ops.push({ op: "config-raw", text: rng.pick(["", "{", "[]", "null", '{"r": 8, "lora_alpha": 16, "r": 9}', "[".repeat(100_000)]) });
    else if (r < 55) {
      // a view of the weights: shape, strides, offset, storage size
      const field = rng.pick(["shape", "stride", "offset", "numel", "dtype", "name"]);
      const values = {
        shape: [[1e6, 64], [0, 64], [64], [8, 64, 1], [2 ** 31, 2 ** 31], [-1, 64], [8, 65]],
        stride: [
          [0, 1],
          [1, 0],
          [0, 0],
          [64, 1],
          [1, 8],
          [-1, 1],
          [2 ** 40, 1],
        ],
        offset: [0, 1, 63, 1e9, -1],
        numel: [0, 1, 511, 2 ** 31, 2 ** 50],
        dtype: ["F16", "BF16", "F32"],
        name: [
          "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight",
          "base_model.model.model.layers.9.self_attn.q_proj.lora_A.weight",
          "base_model.model.lm_head.lora_A.weight",
          "model.layers.0.mlp.gate_proj.lora_B.weight",
          "\u001b[31m",
        ],
      };
      ops.push({ op: "tensor-view", index: t, field, value: encodeNumber(rng.pick(values[field])) });
    } else if (r < 62) ops.push({ op: "tensor-poke", index: t, element: rng.int(64), value: encodeNumber(rng.pick([NaN, Infinity, -Infinity, 3e38, 1e10])) });
    else if (r < 72 && format === "bin") ops.push({ op: "zip-size", entry: rng.pick(["data.pkl", `data/${t}`]), size: rng.pick([0, 1, 100, 2 ** 32 - 1]) });
    else if (r < 78 && format === "bin") ops.push({ op: "zip-bomb", index: t, bytes: rng.pick([1 << 20, 16 << 20, 64 << 20]), honest: rng.chance(0.3) });
    else if (r < 82 && format === "bin") ops.push({ op: "zip-method", entry: rng.pick(["data.pkl", `data/${t}`]), method: rng.pick([1, 8, 12, 99]) });
    else if (r < 92) ops.push({ op: "flip", offset: rng.int(format === "bin" ? 2048 : 1024), xor: 1 + rng.int(255) });
    else ops.push({ op: "truncate", fraction: rng.next() });
  }
  return ops;
}

/** Writes the mutant `ops` of PEFT folder `src` into folder `dst` (same format). */
export async function applyPeft(src, dst, format, ops) {
  mkdirSync(dst, { recursive: true });
  for (const f of readdirSync(src)) await copyFile(join(src, f), join(dst, f));
  const cfgPath = join(dst, "adapter_config.json");
  const weights = join(dst, format === "bin" ? "adapter_model.bin" : "adapter_model.safetensors");
  const cfg = JSON.parse(readFileSync(cfgPath, "utf8"));
  let rawConfig = null;
  for (const o of ops) {
    if (o.op === "config-set") cfg[o.key] = decodeNumber(o.value);
    else if (o.op === "config-raw") rawConfig = o.text;
  }
  writeFileSync(cfgPath, rawConfig ?? JSON.stringify(cfg));
  const viewOps = ops.filter((o) => ["tensor-view", "tensor-poke", "zip-size", "zip-bomb", "zip-method"].includes(o.op));
  if (viewOps.length > 0) {
    const tensors = openWeightFile(weights).map((t, i) => ({
      name: t.name,
      key: String(i),
      dtype: t.dtype,
      shape: [...t.shape],
      stride: contiguous(t.shape),
      numel: t.shape.reduce((a, b) => a * b, 1),
      offset: 0,
      data: Buffer.from(t.readBytes()),
    }));
    const entries = new Map();
    for (const o of viewOps) {
      const t = tensors[Math.min(o.index ?? 0, tensors.length - 1)];
      if (o.op === "tensor-view") t[o.field] = decodeNumber(o.value);
      else if (o.op === "tensor-poke") {
        const at = Math.min(o.element * 4, t.data.length - 4);
        if (at >= 0) t.data.writeFloatLE(decodeNumber(o.value), at);
      } else entries.set(o.op === "zip-bomb" ? `data/${tensors.indexOf(t)}` : o.entry, o);
    }
    if (format === "safetensors") {
      // safetensors cannot express views: shapes and dtypes go into the header as given
      const header = {};
      const bodies = [];
      let off = 0;
      for (const t of tensors) {
        header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [off, off + t.data.length] };
        bodies.push(t.data);
        off += t.data.length;
      }
      const h = Buffer.from(JSON.stringify(header));
      const len = Buffer.alloc(8);
      len.writeBigUInt64LE(BigInt(h.length));
      writeFileSync(weights, Buffer.concat([len, h, ...bodies]));
    } else {
      const files = [
        { name: "archive/data.pkl", body: stateDictPickle(tensors) },
        { name: "archive/byteorder", body: Buffer.from("little") },
      ];
      tensors.forEach((t, i) => files.push({ name: `archive/data/${i}`, body: t.data }));
      for (const f of files) {
        const o = entries.get(f.name.slice("archive/".length));
        if (!o) continue;
        if (o.op === "zip-size") f.size = o.size;
        else if (o.op === "zip-method") f.method = o.method;
        else if (o.op === "zip-bomb") {
          const declared = f.body.length;
          f.body = deflateRawSync(Buffer.alloc(o.bytes), { level: 9 });
          f.deflated = true;
          f.size = o.honest ? o.bytes : declared;
        }
      }
      writeFileSync(weights, zipArchive(files));
    }
  }
  const raw = ops.filter((o) => o.op === "flip" || o.op === "truncate");
  if (raw.length > 0) {
    const bytes = readFileSync(weights);
    let length = bytes.length;
    for (const o of raw) {
      if (o.op === "flip" && o.offset < bytes.length) bytes[o.offset] ^= o.xor;
      else if (o.op === "truncate") length = Math.floor(bytes.length * o.fraction);
    }
    writeFileSync(weights, bytes.subarray(0, length));
  }
}

// ---- batch inputs (CSV and JSONL)
/** Plans a hostile batch input: a format, a row count and operations on rows. */
export function planBatch(rng) {
  const format = rng.pick(["csv", "jsonl", "json"]);
  const rows = 4 + rng.int(8);
  const ops = [];
  const n = 1 + rng.int(3);
  for (let i = 0; i < n; i++) {
    const row = rng.int(rows);
    const r = rng.int(100);
    if (r < 20) ops.push({ op: "deep", row, depth: rng.pick([65, 1000, 100_000]) });
    else if (r < 35) ops.push({ op: "huge", row, bytes: rng.pick([10_000, 100_000, 2_000_000]) });
    else if (r < 50) ops.push({ op: "bytes", row, bytes: rng.pick([[0], [0xff, 0xfe], [0xc3], [0xe2, 0x82], [0x1b, 0x5b, 0x32, 0x4a], [0x0d], [0x22], [0x2c, 0x22, 0x22]]) });
    else if (r < 65)
      ops.push({ op: "value", row, column: rng.pick(["target", "liked", "instruction", "input", "user"]), value: encodeNumber(rng.pick([null, 1e308, -0, true, [], {}, [[["x"]]], "", "\u0000", { title: 1 }])) });
    else if (r < 75) ops.push({ op: "columns", row, count: rng.pick([100, 10_000]) });
    else if (r < 82) ops.push({ op: "bom" });
    else if (r < 90) ops.push({ op: "cut", fraction: rng.next() });
    else ops.push({ op: "blank", row });
  }
  return { format, rows, ops };
}

/** Writes the batch input of a plan to `path` (extension from the format). */
export function applyBatch(plan, path) {
  const base = Array.from({ length: plan.rows }, (_, i) => ({ user: `u${i % 3}`, liked: ["Heat (1995)", "Fargo (1996)"], disliked: ["Jumanji (1995)"], target: `Casino (${1990 + i})` }));
  const rowText = [];
  const extra = new Map();
  for (const o of plan.ops) if (o.row !== undefined) extra.set(o.row, [...(extra.get(o.row) ?? []), o]);
  base.forEach((row, i) => {
    const values = { ...row };
    let tail = Buffer.alloc(0);
    let deep = null;
    for (const o of extra.get(i) ?? []) {
      if (o.op === "value") values[o.column] = decodeNumber(o.value);
      else if (o.op === "huge") values.target = "y".repeat(o.bytes);
      else if (o.op === "columns") for (let k = 0; k < o.count; k++) values[`c${k}`] = "v";
      else if (o.op === "bytes") tail = Buffer.from(o.bytes);
      else if (o.op === "deep") deep = o.depth;
      else if (o.op === "blank") values.target = "";
    }
    let text;
    if (plan.format === "csv") {
      const cell = (v) => {
        const s = Array.isArray(v) ? v.join(";") : v === null ? "" : typeof v === "object" ? JSON.stringify(v) : String(v);
        return /[",\n\r]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
      };
      text = Buffer.concat([Buffer.from(["user", "liked", "disliked", "target"].map((c) => cell(values[c])).join(",")), tail]);
    } else {
      let json = JSON.stringify(values);
      if (deep) json = json.replace(/}$/, `,"meta":${"[".repeat(deep)}${"]".repeat(deep)}}`);
      text = Buffer.concat([Buffer.from(json), tail]);
    }
    rowText.push(text);
  });
  let body;
  if (plan.format === "csv") body = Buffer.concat([Buffer.from("user,liked,disliked,target\n"), ...rowText.flatMap((t) => [t, Buffer.from("\n")])]);
  else if (plan.format === "jsonl") body = Buffer.concat(rowText.flatMap((t) => [t, Buffer.from("\n")]));
  else body = Buffer.concat([Buffer.from("["), ...rowText.flatMap((t, i) => (i === 0 ? [t] : [Buffer.from(",\n"), t])), Buffer.from("]")]);
  if (plan.ops.some((o) => o.op === "bom")) body = Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), body]);
  const cut = plan.ops.find((o) => o.op === "cut");
  if (cut) body = body.subarray(0, Math.floor(body.length * cut.fraction));
  writeFileSync(path, body);
}

// ---- HTTP request bodies
const HTTP_VALUES = [null, 0, -1, 1e308, -1e308, true, "", "x", [], {}, [null], { name: 1 }, "\u0000", "\u001b[2J", "a".repeat(100_000), [[[[[]]]]]];

/** Plans a hostile request: a route, a base body and operations on it. */
export function planHttp(rng) {
  const route = rng.pick(["score", "score", "rank", "adapters", "adapters-delete", "url"]);
  const ops = [];
  const n = 1 + rng.int(3);
  for (let i = 0; i < n; i++) {
    const r = rng.int(100);
    if (r < 40)
      ops.push({
        op: "set",
        path: rng.pick([
          "adapter",
          "scoring",
          "items",
          "items.0",
          "items.0.target",
          "items.0.liked",
          "items.0.domain",
          "items.0.instruction",
          "user",
          "candidates",
          "candidates.0",
          "name",
          "path",
          "scale",
          "share",
          "extra",
        ]),
        value: encodeNumber(rng.pick(HTTP_VALUES)),
      });
    else if (r < 50) ops.push({ op: "deep", depth: rng.pick([100, 10_000, 200_000]) });
    else if (r < 60) ops.push({ op: "many", count: rng.pick([257, 5000]) });
    else if (r < 70) ops.push({ op: "raw", text: rng.pick(["", "{", "nul\u0000l", "[1,2", '{"items":[{"instruction":"\\ud800","input":"x"}]}', "\xff\xfe"]) });
    else if (r < 80) ops.push({ op: "content-type", value: rng.pick(["text/plain", "application/json; charset=latin1", "multipart/form-data", ""]) });
    else if (r < 90) ops.push({ op: "path", value: rng.pick(["../tiny.gguf", "/etc/passwd", "small-lora.gguf\u0000", "a".repeat(5000), "%2e%2e/x", "mutant.gguf"]) });
    else ops.push({ op: "url", value: rng.pick([`/v1/adapters/${"a".repeat(101)}`, "/v1/adapters/%E0%A4%A", "/v1/chat/x", "/v1/score?x=%ZZ", "/%00", "/v1/../v1/score"]) });
  }
  return { route, ops };
}

function setPath(obj, path, value) {
  const parts = path.split(".");
  let o = obj;
  for (let i = 0; i < parts.length - 1; i++) {
    if (o[parts[i]] === null || typeof o[parts[i]] !== "object") o[parts[i]] = {};
    o = o[parts[i]];
  }
  o[parts[parts.length - 1]] = value;
}

/** The request of a plan: { method, url, headers, body }. */
export function applyHttp(plan) {
  const item = { domain: "movie", liked: ["Heat (1995)"], disliked: [], target: "Casino (1995)" };
  let method = "POST";
  let url = "/v1/score";
  let body = { items: [item, { instruction: "Given the user's preference, answer Yes or No.", input: "User Preference: Heat\nWhether the user will like the target movie Casino?" }] };
  if (plan.route === "rank") {
    url = "/v1/rank";
    body = { domain: "movie", liked: ["Heat (1995)"], disliked: [], candidates: ["Casino (1995)", "Fargo (1996)"] };
  } else if (plan.route === "adapters") {
    url = "/v1/adapters";
    body = { name: "fz", path: "small-lora.gguf" };
  } else if (plan.route === "adapters-delete") {
    method = "DELETE";
    url = "/v1/adapters/nope";
    body = undefined;
  } else if (plan.route === "url") {
    method = "GET";
    url = "/v1/adapters";
    body = undefined;
  }
  const headers = { "content-type": "application/json" };
  let text = body === undefined ? undefined : null;
  for (const o of plan.ops) {
    if (o.op === "set" && body !== undefined) setPath(body, o.path, decodeNumber(o.value));
    else if (o.op === "deep" && body !== undefined) text = JSON.stringify(body).replace(/}$/, `,"deep":${"[".repeat(o.depth)}${"]".repeat(o.depth)}}`);
    else if (o.op === "many" && body !== undefined) body.items = Array.from({ length: o.count }, () => item);
    else if (o.op === "raw") text = o.text;
    else if (o.op === "content-type") headers["content-type"] = o.value;
    else if (o.op === "path" && body !== undefined) body.path = o.value;
    else if (o.op === "url") url = o.value;
  }
  if (text === null) text = JSON.stringify(body);
  return { method, url, headers, body: text };
}

export { rm };
