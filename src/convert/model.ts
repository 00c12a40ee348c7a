/**
 * `convert-model`: a Hugging Face LlamaForCausalLM checkpoint (config.json, safetensors or
 * PyTorch weights, sharded or not, SentencePiece or tokenizer.json) to a GGUF model with the
 * tensor names, shapes, metadata and q/k row permutation of llama.cpp's convert_hf_to_gguf.py.
 */
import { existsSync } from "node:fs";
import { basename, join, resolve } from "node:path";

import { GgmlType, GgufValueType, type GgufMetadataEntry } from "../gguf/types.js";
import { gv, kv, writeGguf, type GgufTensorSpec } from "../gguf/writer.js";
import { openModelWeights } from "./checkpoint.js";
import { ConvertError } from "./errors.js";
import { readJsonFile } from "./fileio.js";
import { permuteQkRows } from "./permute.js";
import { DTYPE_BYTES, isFloatDType, readTensorAsF32, shapeText, type SourceTensor } from "./tensor.js";
import { loadHfTokenizer, type GgufVocab } from "./tokenizer.js";

/** Output tensor types of {@link convertHfModel}: "auto" keeps the checkpoint's float type. */
export type ModelOutType = "f32" | "f16" | "bf16" | "auto";

/** Options of {@link convertHfModel}. */
export interface ConvertModelOptions {
  /** Type of the 2-D weights (norms stay F32). Default "auto": the type of the checkpoint's embedding. */
  outtype?: ModelOutType;
  /** general.name (default: the last part of config.json's `_name_or_path`, else the directory's name). */
  name?: string;
  /** Progress and notes. */
  log?: (message: string) => void;
}

/** What {@link convertHfModel} wrote. */
export interface ConvertModelResult {
  path: string;
  outtype: "f32" | "f16" | "bf16";
  tensors: number;
  parameters: number;
  /** The tokenizer file the vocabulary came from. */
  tokenizer: string;
}

/** LLaMA hyperparameters from config.json. */
export interface LlamaHparams {
  nEmbd: number;
  nFf: number;
  nHead: number;
  nHeadKv: number;
  nLayer: number;
  nCtx?: number;
  rmsEps: number;
  ropeTheta?: number;
  vocabSize?: number;
  tieEmbeddings: boolean;
  /** `_name_or_path`, when config.json has it. */
  nameOrPath?: string;
  ropeScaling?: { type: "linear"; factor: number };
}

type Json = Record<string, unknown>;

/**
 * Reads and checks the config.json of a LLaMA checkpoint.
 *
 * @throws {ConvertError} for another architecture, missing or inconsistent sizes, or an
 *   unsupported rope scaling.
 */
export function readLlamaConfig(dir: string): LlamaHparams {
  const path = join(dir, "config.json");
  if (!existsSync(path)) throw new ConvertError(dir, "no config.json: not a Hugging Face checkpoint directory");
  let c = readJsonFile(path) as Json;
  if ("text_config" in c && typeof c.text_config === "object" && c.text_config) c = { ...c, ...(c.text_config as Json) };
  const archs = Array.isArray(c.architectures) ? (c.architectures as unknown[]) : [];
  const isLlama = archs.some((a) => a === "LlamaForCausalLM" || a === "LLaMAForCausalLM") || (archs.length === 0 && c.model_type === "llama");
  if (!isLlama) {
    throw new ConvertError(path, `architecture ${JSON.stringify(archs[0] ?? c.model_type ?? "unknown")} is not supported: only LlamaForCausalLM checkpoints can be converted`, "unsupported");
  }
  const int = (keys: string[], required: boolean): number | undefined => {
    for (const k of keys) {
      const v = c[k];
      if (v === undefined || v === null) continue;
      if (typeof v !== "number" || !Number.isInteger(v)) throw new ConvertError(path, `${k} must be an integer, got ${JSON.stringify(v)}`);
      return v;
    }
    if (required) throw new ConvertError(path, `missing ${keys[0]}`);
    return undefined;
  };
  const pos = (keys: string[]): number => {
    const v = int(keys, true)!;
    if (v < 1) throw new ConvertError(path, `${keys[0]} must be positive, got ${v}`);
    return v;
  };
  const nEmbd = pos(["hidden_size", "n_embd", "dim"]);
  const nHead = pos(["num_attention_heads", "n_head", "n_heads"]);
  const nHeadKv = int(["num_key_value_heads", "n_kv_heads"], false) ?? nHead;
  const hp: LlamaHparams = {
    nEmbd,
    nFf: pos(["intermediate_size", "n_inner", "hidden_dim"]),
    nHead,
    nHeadKv,
    nLayer: pos(["num_hidden_layers", "n_layers", "n_layer", "num_layers"]),
    nCtx: int(["max_position_embeddings", "n_ctx", "n_positions", "max_length", "max_sequence_length", "model_max_length"], false),
    rmsEps: typeof c.rms_norm_eps === "number" ? c.rms_norm_eps : typeof c.norm_eps === "number" ? c.norm_eps : 1e-6,
    ropeTheta: typeof c.rope_theta === "number" ? c.rope_theta : undefined,
    vocabSize: int(["vocab_size"], false),
    tieEmbeddings: c.tie_word_embeddings === true,
    nameOrPath: typeof c._name_or_path === "string" && c._name_or_path !== "" ? c._name_or_path : undefined,
  };
  if (nEmbd % nHead !== 0 || (nEmbd / nHead) % 2 !== 0) throw new ConvertError(path, `hidden_size ${nEmbd} does not split into ${nHead} heads of even size`);
  if (nHeadKv < 1 || nHead % nHeadKv !== 0) throw new ConvertError(path, `num_attention_heads ${nHead} is not a multiple of num_key_value_heads ${nHeadKv}`);
  if (typeof c.head_dim === "number" && c.head_dim !== nEmbd / nHead) {
    throw new ConvertError(path, `head_dim ${c.head_dim} differs from hidden_size / num_attention_heads (${nEmbd / nHead}): not supported`, "unsupported");
  }
  const rs = (c.rope_scaling ?? c.rope_parameters) as Json | null | undefined;
  if (rs && typeof rs === "object") {
    const type = rs.rope_type ?? rs.type;
    if (type === "linear" && typeof rs.factor === "number") hp.ropeScaling = { type: "linear", factor: rs.factor };
    else if (type !== undefined && type !== "default") {
      throw new ConvertError(path, `rope scaling ${JSON.stringify(type)} is not supported (only linear); use llama.cpp's converter for this model`, "unsupported");
    }
    if (typeof rs.rope_theta === "number" && hp.ropeTheta === undefined) hp.ropeTheta = rs.rope_theta;
  }
  return hp;
}

/** HF name → GGUF base name for the per-layer tensors. */
const LAYER_TENSORS: ReadonlyArray<[hf: string, gguf: string]> = [
  ["input_layernorm", "attn_norm"],
  ["self_attn.q_proj", "attn_q"],
  ["self_attn.k_proj", "attn_k"],
  ["self_attn.v_proj", "attn_v"],
  ["self_attn.o_proj", "attn_output"],
  ["post_attention_layernorm", "ffn_norm"],
  ["mlp.gate_proj", "ffn_gate"],
  ["mlp.up_proj", "ffn_up"],
  ["mlp.down_proj", "ffn_down"],
];

interface PlanItem {
  gguf: string;
  src: SourceTensor;
  /** Expected HF shape (PyTorch order). */
  shape: number[];
  /** Heads for the q/k row permutation. */
  permuteHeads?: number;
}

function plan(hp: LlamaHparams, tensors: Map<string, SourceTensor>, dir: string, nVocab: number): PlanItem[] {
  const hd = hp.nEmbd / hp.nHead;
  const used = new Set<string>();
  const items: PlanItem[] = [];
  const take = (hf: string, gguf: string, shape: number[], permuteHeads?: number): void => {
    const src = tensors.get(hf);
    if (!src) throw new ConvertError(dir, `missing tensor ${hf}`);
    if (src.shape.length !== shape.length || src.shape.some((d, i) => d !== shape[i])) {
      throw new ConvertError(src.file, `tensor ${hf} has shape ${shapeText(src.shape)}, expected ${shapeText(shape)} from config.json`);
    }
    if (!isFloatDType(src.dtype)) throw new ConvertError(src.file, `tensor ${hf} has dtype ${src.dtype}; only F32, F16 and BF16 are supported`, "unsupported");
    used.add(hf);
    items.push({ gguf, src, shape, permuteHeads });
  };
  take("model.embed_tokens.weight", "token_embd.weight", [nVocab, hp.nEmbd]);
  for (let l = 0; l < hp.nLayer; l++) {
    for (const [hf, gguf] of LAYER_TENSORS) {
      const name = `model.layers.${l}.${hf}.weight`;
      const shapes: Record<string, number[]> = {
        attn_norm: [hp.nEmbd],
        ffn_norm: [hp.nEmbd],
        attn_q: [hp.nHead * hd, hp.nEmbd],
        attn_k: [hp.nHeadKv * hd, hp.nEmbd],
        attn_v: [hp.nHeadKv * hd, hp.nEmbd],
        attn_output: [hp.nEmbd, hp.nHead * hd],
        ffn_gate: [hp.nFf, hp.nEmbd],
        ffn_up: [hp.nFf, hp.nEmbd],
        ffn_down: [hp.nEmbd, hp.nFf],
      };
      const heads = gguf === "attn_q" ? hp.nHead : gguf === "attn_k" ? hp.nHeadKv : undefined;
      take(name, `blk.${l}.${gguf}.weight`, shapes[gguf], heads);
    }
  }
  take("model.norm.weight", "output_norm.weight", [hp.nEmbd]);
  if (tensors.has("lm_head.weight")) take("lm_head.weight", "output.weight", [nVocab, hp.nEmbd]);
  else if (!hp.tieEmbeddings) throw new ConvertError(dir, "missing tensor lm_head.weight (and tie_word_embeddings is not set)");
  const extra = [...tensors.keys()].filter((n) => !used.has(n) && !n.endsWith(".rotary_emb.inv_freq"));
  if (extra.length > 0) {
    throw new ConvertError(
      dir,
      `unexpected tensor${extra.length > 1 ? "s" : ""} ${extra.slice(0, 5).join(", ")}${extra.length > 5 ? `, ... (${extra.length} in all)` : ""}: not a plain LlamaForCausalLM with ${hp.nLayer} layers`,
    );
  }
  return items;
}

function vocabMetadata(v: GgufVocab): GgufMetadataEntry[] {
  const out = [
    kv("tokenizer.ggml.model", gv.str("llama")),
    kv("tokenizer.ggml.pre", gv.str("default")),
    kv("tokenizer.ggml.tokens", gv.strArray(v.tokens)),
    kv("tokenizer.ggml.scores", gv.numArray(GgufValueType.FLOAT32, v.scores)),
    kv("tokenizer.ggml.token_type", gv.numArray(GgufValueType.INT32, v.tokenTypes)),
  ];
  if (v.bosId !== undefined) out.push(kv("tokenizer.ggml.bos_token_id", gv.u32(v.bosId)));
  if (v.eosId !== undefined) out.push(kv("tokenizer.ggml.eos_token_id", gv.u32(v.eosId)));
  if (v.unkId !== undefined) out.push(kv("tokenizer.ggml.unknown_token_id", gv.u32(v.unkId)));
  if (v.padId !== undefined) out.push(kv("tokenizer.ggml.padding_token_id", gv.u32(v.padId)));
  out.push(kv("tokenizer.ggml.add_bos_token", gv.bool(v.addBos)), kv("tokenizer.ggml.add_eos_token", gv.bool(v.addEos)), kv("tokenizer.ggml.add_space_prefix", gv.bool(v.addSpacePrefix)));
  return out;
}

const OUT_TYPES = { f32: { ggml: GgmlType.F32, dtype: "F32", ftype: 0 }, f16: { ggml: GgmlType.F16, dtype: "F16", ftype: 1 }, bf16: { ggml: GgmlType.BF16, dtype: "BF16", ftype: 32 } } as const;

/**
 * Converts a Hugging Face LLaMA checkpoint directory to a GGUF model, streaming one tensor at a
 * time. The output appears at `out` only when complete.
 *
 * @throws {ConvertError} for anything the checkpoint has that a llama.cpp LLaMA cannot take
 *   (another architecture, unexpected or missing tensors, wrong shapes, unsupported dtypes or
 *   rope scaling), or for truncated and corrupt files.
 */
export async function convertHfModel(dir: string, out: string, opts: ConvertModelOptions = {}): Promise<ConvertModelResult> {
  const log = opts.log ?? (() => {});
  const hp = readLlamaConfig(dir);
  const weights = openModelWeights(dir);
  const embd = weights.tensors.get("model.embed_tokens.weight");
  if (!embd) throw new ConvertError(dir, "missing tensor model.embed_tokens.weight");
  const nVocab = embd.shape[0];
  if (hp.vocabSize !== undefined && hp.vocabSize > 0 && hp.vocabSize !== nVocab) {
    throw new ConvertError(join(dir, "config.json"), `vocab_size ${hp.vocabSize} differs from the embedding's ${nVocab} rows`);
  }
  const items = plan(hp, weights.tensors, dir, nVocab);
  const vocab = loadHfTokenizer(dir, nVocab);
  for (const n of vocab.notes) log(`note: ${n}`);
  const requested = opts.outtype ?? "auto";
  if (!["f32", "f16", "bf16", "auto"].includes(requested)) throw new ConvertError(out, `unknown outtype ${JSON.stringify(requested)} (f32, f16, bf16 or auto)`);
  const outtype = requested === "auto" ? (embd.dtype === "F16" ? "f16" : embd.dtype === "BF16" ? "bf16" : "f32") : requested;
  const ot = OUT_TYPES[outtype];
  const hd = hp.nEmbd / hp.nHead;

  const metadata: GgufMetadataEntry[] = [
    kv("general.architecture", gv.str("llama")),
    kv("general.type", gv.str("model")),
    kv("general.name", gv.str(opts.name ?? basename(hp.nameOrPath ?? resolve(dir)))),
    kv("llama.block_count", gv.u32(hp.nLayer)),
  ];
  if (hp.nCtx !== undefined) metadata.push(kv("llama.context_length", gv.u32(hp.nCtx)));
  metadata.push(
    kv("llama.embedding_length", gv.u32(hp.nEmbd)),
    kv("llama.feed_forward_length", gv.u32(hp.nFf)),
    kv("llama.attention.head_count", gv.u32(hp.nHead)),
    kv("llama.attention.head_count_kv", gv.u32(hp.nHeadKv)),
  );
  if (hp.ropeTheta !== undefined) metadata.push(kv("llama.rope.freq_base", gv.f32(hp.ropeTheta)));
  metadata.push(kv("llama.attention.layer_norm_rms_epsilon", gv.f32(hp.rmsEps)), kv("general.file_type", gv.u32(ot.ftype)), kv("llama.vocab_size", gv.u32(nVocab)), kv("llama.rope.dimension_count", gv.u32(hd)));
  if (hp.ropeScaling) {
    metadata.push(kv("llama.rope.scaling.type", gv.str("linear")), kv("llama.rope.scaling.factor", gv.f32(hp.ropeScaling.factor)));
  }
  metadata.push(kv("general.quantization_version", gv.u32(2)), ...vocabMetadata(vocab));

  let parameters = 0;
  const specs: GgufTensorSpec[] = items.map((it) => {
    const dims = [...it.shape].reverse();
    parameters += dims.reduce((a, b) => a * b, 1);
    const is1D = it.shape.length === 1;
    const rowsOf = (bytes: Uint8Array, elem: number): Uint8Array => (it.permuteHeads ? permuteQkRows(bytes, it.shape[0], it.shape[1] * elem, it.permuteHeads, "to-gguf") : bytes);
    if (is1D || it.src.dtype !== ot.dtype) {
      // converted through float32 (exact from F16/BF16; rounded to nearest even on the way down)
      return {
        name: it.gguf,
        dims,
        type: is1D ? GgmlType.F32 : ot.ggml,
        data: () => {
          const f = readTensorAsF32(it.src);
          return it.permuteHeads ? new Float32Array(rowsOf(new Uint8Array(f.buffer, f.byteOffset, f.byteLength), 4).buffer) : f;
        },
      };
    }
    return { name: it.gguf, dims, type: ot.ggml, raw: true, data: () => rowsOf(it.src.readBytes(), DTYPE_BYTES[it.src.dtype]) };
  });
  log(`converting ${items.length} tensors (${(parameters / 1e6).toFixed(1)}M parameters) to ${outtype.toUpperCase()}, vocabulary from ${basename(vocab.source)}`);
  await writeGguf(out, { metadata, tensors: specs });
  return { path: out, outtype, tensors: specs.length, parameters, tokenizer: vocab.source };
}
