/**
 * The synthetic test models in Hugging Face layout: the same tiny LLaMA as
 * {@link generateLlamaModel} writes to GGUF, as a LlamaForCausalLM checkpoint directory
 * (config.json, safetensors or PyTorch weights, optionally sharded, tokenizer.model /
 * tokenizer.json / tokenizer_config.json), and the same LoRA adapters as {@link generateLora} as
 * PEFT adapter directories (adapter_config.json plus adapter_model.safetensors or
 * adapter_model.bin).
 *
 * Hugging Face stores q_proj/k_proj rows unpermuted (rotate-half rope), so the writers apply the
 * inverse of llama.cpp's q/k row permutation to the GGUF generator's weights (for adapters, to
 * lora_B of q/k): converting the result back with `convert-model` / `convert-lora` reproduces
 * the generator's GGUF tensors exactly. A [out, in] matrix in PyTorch order has the same bytes
 * as the ggml [in, out] tensor.
 */
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { permuteQkRows } from "../convert/permute.js";
import { writeSafetensors, type SafetensorsEntry } from "../convert/safetensors.js";
import { encodeSentencePieceModel } from "../convert/sentencepiece.js";
import { writeTorchCheckpoint } from "../convert/torch.js";
import { f32ToBf16Bits, f32ToF16Bits } from "../gguf/float.js";
import { getMetadataNumber, getMetadataString, openGgufSync, readTensorF32 } from "../gguf/reader.js";
import { llamaTensors, resolveSpec, type LlamaLinear, type LlamaModelSpec, type LlamaPresetName } from "./llama.js";
import { generateLora, type LoraOptions } from "./lora.js";
import { loadLlamaTokenizer, loadLlamaVocab, type LlamaVocab } from "./vocab.js";

/** Float storage types of Hugging Face tensors. */
export type HfDType = "F32" | "F16" | "BF16";

/** Options of {@link writeHfLlamaModel}. */
export interface HfModelOptions {
  /** Weight files: safetensors (default) or PyTorch `.bin`. */
  format?: "safetensors" | "bin";
  /** Number of weight files; more than 1 writes a `*.index.json` weight map. Default 1. */
  shards?: number;
  /** dtype of the 2-D weights (default: F16 for F16 presets, BF16 for BF16, else F32). Norms are always F32. */
  dtype?: HfDType;
  /** Tokenizer files: "sentencepiece" (tokenizer.model), "json" (tokenizer.json) or "both" (default). */
  tokenizer?: "sentencepiece" | "json" | "both";
}

/** Options of {@link writePeftAdapter}. */
export interface PeftAdapterOptions {
  /** adapter_model.safetensors (default) or adapter_model.bin. */
  format?: "safetensors" | "bin";
  /** dtype of lora_A/lora_B (default F32). */
  dtype?: HfDType;
  /** Write `use_rslora: true` (PEFT then scales by alpha/sqrt(r) instead of alpha/r; the weights are the same). */
  useRslora?: boolean;
  /** Extra or overriding adapter_config.json fields (for tests of bad configs). */
  config?: Record<string, unknown>;
}

/** GGUF base name → Hugging Face module path inside a layer. */
export const HF_LINEAR_NAMES: Readonly<Record<LlamaLinear, string>> = {
  attn_q: "self_attn.q_proj",
  attn_k: "self_attn.k_proj",
  attn_v: "self_attn.v_proj",
  attn_output: "self_attn.o_proj",
  ffn_gate: "mlp.gate_proj",
  ffn_up: "mlp.up_proj",
  ffn_down: "mlp.down_proj",
};

/** GGUF tensor name → Hugging Face LlamaForCausalLM tensor name. */
export function hfTensorName(gguf: string): string {
  if (gguf === "token_embd.weight") return "model.embed_tokens.weight";
  if (gguf === "output_norm.weight") return "model.norm.weight";
  if (gguf === "output.weight") return "lm_head.weight";
  const m = /^blk\.(\d+)\.(\w+)\.weight$/.exec(gguf);
  if (!m) throw new Error(`no Hugging Face name for ${gguf}`);
  const part = m[2] === "attn_norm" ? "input_layernorm" : m[2] === "ffn_norm" ? "post_attention_layernorm" : HF_LINEAR_NAMES[m[2] as LlamaLinear];
  if (!part) throw new Error(`no Hugging Face name for ${gguf}`);
  return `model.layers.${m[1]}.${part}.weight`;
}

function encode(values: Float32Array, dtype: HfDType): Uint8Array {
  if (dtype === "F32") return new Uint8Array(values.buffer.slice(values.byteOffset, values.byteOffset + values.byteLength));
  const out = new Uint16Array(values.length);
  const conv = dtype === "F16" ? f32ToF16Bits : f32ToBf16Bits;
  for (let i = 0; i < values.length; i++) out[i] = conv(values[i]);
  return new Uint8Array(out.buffer);
}

const TORCH_DTYPE: Record<HfDType, string> = { F32: "float32", F16: "float16", BF16: "bfloat16" };

async function writeWeights(dir: string, prefix: "model" | "adapter_model", entries: SafetensorsEntry[], format: "safetensors" | "bin", shards: number): Promise<void> {
  const ext = format === "safetensors" ? "safetensors" : "bin";
  const base = format === "safetensors" ? prefix : prefix === "model" ? "pytorch_model" : prefix;
  const write = (path: string, list: SafetensorsEntry[]) => (format === "safetensors" ? writeSafetensors(path, list, { format: "pt" }) : writeTorchCheckpoint(path, list));
  if (shards <= 1) {
    await write(join(dir, `${base}.${ext}`), entries);
    return;
  }
  const per = Math.ceil(entries.length / shards);
  const weightMap: Record<string, string> = {};
  let total = 0;
  for (let s = 0; s < shards; s++) {
    const file = `${base}-${String(s + 1).padStart(5, "0")}-of-${String(shards).padStart(5, "0")}.${ext}`;
    const list = entries.slice(s * per, (s + 1) * per);
    for (const e of list) {
      weightMap[e.name] = file;
      total += e.data.length;
    }
    await write(join(dir, file), list);
  }
  await writeFile(join(dir, `${base}.${ext}.index.json`), JSON.stringify({ metadata: { total_size: total }, weight_map: weightMap }, null, 2));
}

/** tokenizer.json for the LLaMA vocabulary (a SentencePiece-style BPE with byte fallback, as Hugging Face's LlamaTokenizerFast). */
async function tokenizerJson(vocab: LlamaVocab): Promise<string> {
  const tok = await loadLlamaTokenizer();
  const special = (id: number) => ({ id, content: vocab.tokens[id], single_word: false, lstrip: false, rstrip: false, normalized: false, special: true });
  const v: Record<string, number> = {};
  vocab.tokens.forEach((t, i) => (v[t] = i));
  return JSON.stringify({
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: [special(vocab.unkId), special(vocab.bosId), special(vocab.eosId)],
    normalizer: {
      type: "Sequence",
      normalizers: [
        { type: "Prepend", prepend: "\u2581" },
        { type: "Replace", pattern: { String: " " }, content: "\u2581" },
      ],
    },
    pre_tokenizer: null,
    post_processor: {
      type: "TemplateProcessing",
      single: [{ SpecialToken: { id: "<s>", type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }],
      pair: [{ SpecialToken: { id: "<s>", type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }, { SpecialToken: { id: "<s>", type_id: 1 } }, { Sequence: { id: "B", type_id: 1 } }],
      special_tokens: { "<s>": { id: "<s>", ids: [vocab.bosId], tokens: ["<s>"] } },
    },
    decoder: {
      type: "Sequence",
      decoders: [{ type: "Replace", pattern: { String: "\u2581" }, content: " " }, { type: "ByteFallback" }, { type: "Fuse" }, { type: "Strip", content: " ", start: 1, stop: 0 }],
    },
    model: {
      type: "BPE",
      dropout: null,
      unk_token: vocab.tokens[vocab.unkId],
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: true,
      byte_fallback: true,
      vocab: v,
      merges: [...tok.merges.keys()],
    },
  });
}

/** Writes the tokenizer files of the LLaMA vocabulary into `dir`. */
export async function writeHfTokenizer(dir: string, which: "sentencepiece" | "json" | "both" = "both"): Promise<void> {
  const vocab = await loadLlamaVocab();
  if (which !== "json") {
    const model = encodeSentencePieceModel({
      pieces: vocab.tokens.map((piece, i) => ({ piece, score: vocab.scores[i], type: vocab.tokenTypes[i] })),
      modelType: 2,
      byteFallback: true,
      unkId: vocab.unkId,
      bosId: vocab.bosId,
      eosId: vocab.eosId,
      padId: -1,
      addDummyPrefix: vocab.addSpacePrefix,
      removeExtraWhitespaces: false,
    });
    await writeFile(join(dir, "tokenizer.model"), model);
  }
  if (which !== "sentencepiece") await writeFile(join(dir, "tokenizer.json"), await tokenizerJson(vocab));
  const [unk, bos, eos] = [vocab.unkId, vocab.bosId, vocab.eosId].map((i) => vocab.tokens[i]);
  await writeFile(
    join(dir, "tokenizer_config.json"),
    JSON.stringify(
      {
        add_bos_token: vocab.addBos,
        add_eos_token: vocab.addEos,
        bos_token: bos,
        eos_token: eos,
        unk_token: unk,
        pad_token: null,
        clean_up_tokenization_spaces: false,
        legacy: true,
        model_max_length: 2048,
        sp_model_kwargs: {},
        tokenizer_class: "LlamaTokenizer",
      },
      null,
      2,
    ),
  );
  await writeFile(join(dir, "special_tokens_map.json"), JSON.stringify({ bos_token: bos, eos_token: eos, unk_token: unk }, null, 2));
}

/**
 * Writes a synthetic LLaMA (same weights as {@link generateLlamaModel} with the same spec) as a
 * Hugging Face LlamaForCausalLM checkpoint directory. The tensors are held in memory (fine for
 * the tiny presets).
 */
export async function writeHfLlamaModel(dir: string, spec: LlamaModelSpec | LlamaPresetName, opts: HfModelOptions = {}): Promise<void> {
  const s = resolveSpec(spec);
  const dtype: HfDType = opts.dtype ?? (s.matrixType === "F16" ? "F16" : s.matrixType === "BF16" ? "BF16" : "F32");
  const vocab = await loadLlamaVocab();
  await mkdir(dir, { recursive: true });
  const entries: SafetensorsEntry[] = [];
  for (const t of llamaTensors(s, vocab.tokens.length)) {
    if (t.raw) throw new Error(`unexpected raw tensor ${t.name}`);
    let values = typeof t.data === "function" ? await t.data() : t.data;
    const [nIn, nOut] = t.dims.length === 2 ? t.dims : [t.dims[0], 1];
    const heads = /\.attn_q\.weight$/.test(t.name) ? s.nHead : /\.attn_k\.weight$/.test(t.name) ? s.nHeadKv : 0;
    if (heads) values = new Float32Array(permuteQkRows(new Uint8Array(values.buffer, values.byteOffset, values.byteLength), nOut, nIn * 4, heads, "to-hf").buffer);
    const is1D = t.dims.length === 1;
    entries.push({ name: hfTensorName(t.name), dtype: is1D ? "F32" : dtype, shape: is1D ? [nIn] : [nOut, nIn], data: encode(values, is1D ? "F32" : dtype) });
  }
  await writeWeights(dir, "model", entries, opts.format ?? "safetensors", opts.shards ?? 1);
  const config = {
    architectures: ["LlamaForCausalLM"],
    model_type: "llama",
    hidden_size: s.nEmbd,
    intermediate_size: s.nFf,
    num_attention_heads: s.nHead,
    num_key_value_heads: s.nHeadKv,
    num_hidden_layers: s.nLayer,
    max_position_embeddings: s.nCtxTrain,
    rms_norm_eps: s.rmsEps,
    rope_theta: s.ropeFreqBase,
    rope_scaling: null,
    vocab_size: vocab.tokens.length,
    bos_token_id: vocab.bosId,
    eos_token_id: vocab.eosId,
    hidden_act: "silu",
    attention_bias: false,
    tie_word_embeddings: false,
    torch_dtype: TORCH_DTYPE[dtype],
    _name_or_path: s.name,
  };
  await writeFile(join(dir, "config.json"), JSON.stringify(config, null, 2));
  await writeHfTokenizer(dir, opts.tokenizer ?? "both");
}

const PEFT_MODULES: Readonly<Record<LlamaLinear, string>> = {
  attn_q: "q_proj",
  attn_k: "k_proj",
  attn_v: "v_proj",
  attn_output: "o_proj",
  ffn_gate: "gate_proj",
  ffn_up: "up_proj",
  ffn_down: "down_proj",
};

/**
 * Writes a GGUF LoRA adapter as a PEFT adapter directory: lora_A = lora_a, lora_B = lora_b with
 * q/k rows in Hugging Face order, `lora_alpha` = adapter.lora.alpha, `r` = the rank.
 *
 * @param heads the base model's head counts (for the q/k row order).
 */
export async function ggufLoraToPeft(ggufAdapter: string, dir: string, heads: { nHead: number; nHeadKv: number; baseName?: string }, opts: PeftAdapterOptions = {}): Promise<void> {
  const f = openGgufSync(ggufAdapter);
  const alpha = getMetadataNumber(f, "adapter.lora.alpha");
  const dtype = opts.dtype ?? "F32";
  const entries: SafetensorsEntry[] = [];
  const targets = new Set<string>();
  let rank = 0;
  for (const t of f.tensors) {
    const m = /^blk\.(\d+)\.(\w+)\.weight\.lora_([ab])$/.exec(t.name);
    if (!m) throw new Error(`${ggufAdapter}: unexpected tensor ${t.name}`);
    const module = PEFT_MODULES[m[2] as LlamaLinear];
    if (!module) throw new Error(`${ggufAdapter}: no PEFT module for ${m[2]}`);
    targets.add(module);
    let values = readTensorF32(f, t.name);
    const [d0, d1] = t.dims; // lora_a [in, r] -> (r, in); lora_b [r, out] -> (out, r)
    if (m[3] === "a") rank = d1;
    const nh = m[2] === "attn_q" ? heads.nHead : m[2] === "attn_k" ? heads.nHeadKv : 0;
    if (m[3] === "b" && nh) values = new Float32Array(permuteQkRows(new Uint8Array(values.buffer, values.byteOffset, values.byteLength), d1, d0 * 4, nh, "to-hf").buffer);
    const part = HF_LINEAR_NAMES[m[2] as LlamaLinear];
    entries.push({ name: `base_model.model.model.layers.${m[1]}.${part}.lora_${m[3].toUpperCase()}.weight`, dtype, shape: [d1, d0], data: encode(values, dtype) });
  }
  await mkdir(dir, { recursive: true });
  await writeWeights(dir, "adapter_model", entries, opts.format ?? "safetensors", 1);
  const order = Object.values(PEFT_MODULES).filter((m) => targets.has(m));
  const config = {
    alpha_pattern: {},
    auto_mapping: null,
    base_model_name_or_path: heads.baseName ?? getMetadataString(f, "general.name", "llama"),
    bias: "none",
    fan_in_fan_out: false,
    inference_mode: true,
    init_lora_weights: true,
    layers_pattern: null,
    layers_to_transform: null,
    lora_alpha: alpha,
    lora_dropout: 0.05,
    modules_to_save: null,
    peft_type: "LORA",
    r: rank,
    rank_pattern: {},
    revision: null,
    target_modules: order,
    task_type: "CAUSAL_LM",
    use_rslora: opts.useRslora ?? false,
    use_dora: false,
    ...opts.config,
  };
  await writeFile(join(dir, "adapter_config.json"), JSON.stringify(config, null, 2));
}

/**
 * Writes the LoRA adapter {@link generateLora} makes for `base` with `lora` as a PEFT adapter
 * directory (see {@link ggufLoraToPeft}).
 */
export async function writePeftAdapter(dir: string, base: LlamaModelSpec | LlamaPresetName, lora: LoraOptions, opts: PeftAdapterOptions = {}): Promise<void> {
  const s = resolveSpec(base);
  const tmp = await mkdtemp(join(tmpdir(), "tallrec-peft-"));
  try {
    const path = join(tmp, "adapter.gguf");
    await generateLora(path, base, lora);
    await ggufLoraToPeft(path, dir, { nHead: s.nHead, nHeadKv: s.nHeadKv, baseName: s.name }, opts);
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}
