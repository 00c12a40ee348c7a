/**
 * Synthetic LLaMA-architecture models with the real LLaMA vocabulary and
 * seeded random weights, written as GGUF exactly as llama.cpp's
 * convert_hf_to_gguf.py lays out a LLaMA checkpoint (same metadata keys,
 * tensor names, shapes and types). Used by tests, benchmarks and `tallrec demo`.
 */
import { GgmlType } from "../gguf/types.js";
import { gv, kv, writeGguf, type GgufTensorSpec, type GgufWritableType } from "../gguf/writer.js";
import { Rng } from "./random.js";
import { loadLlamaVocab, vocabMetadata, type LlamaVocab } from "./vocab.js";

/** Version stamp of the generator: bump when generated files would change. */
export const SYNTH_VERSION = 1;
/** Metadata key holding {@link SYNTH_VERSION}. */
export const SYNTH_VERSION_KEY = "tallrec.synth.version";
/** Metadata key holding the JSON of the spec a file was generated from. */
export const SYNTH_SPEC_KEY = "tallrec.synth.spec";

/** Standard deviations of the random weights (see {@link defaultInit}). */
export interface LlamaInit {
  /** token_embd entries ~ N(0, embd²). */
  embd: number;
  /** attn_q and attn_k entries ~ N(0, (qk / sqrt(n_embd))²): sets how peaked attention is. */
  qk: number;
  /** attn_v, attn_output, ffn_gate, ffn_up entries ~ N(0, (proj / sqrt(n_in))²). */
  proj: number;
  /** ffn_down entries ~ N(0, (proj / sqrt(n_ff))²) use `proj` too; output entries ~ N(0, (head / sqrt(n_embd))²). */
  head: number;
  /** Norm weights ~ 1 + normStd · N(0, 1) (non-unit, like trained checkpoints). */
  normStd: number;
}

/** Shape and numerics of a synthetic LLaMA model. */
export interface LlamaModelSpec {
  /** general.name. */
  name: string;
  nEmbd: number;
  nLayer: number;
  nHead: number;
  /** Key/value heads; fewer than nHead means grouped-query attention. */
  nHeadKv: number;
  nFf: number;
  /** llama.context_length (training context). */
  nCtxTrain: number;
  ropeFreqBase: number;
  rmsEps: number;
  /** Storage type of the 2-D matrices (norms always F32). */
  matrixType: "F32" | "F16" | "BF16" | "Q8_0";
  seed: number;
  init: LlamaInit;
}

/** Default weight scales: logits O(1..10), attention neither uniform nor one-hot. */
export const defaultInit: LlamaInit = { embd: 1, qk: 1.5, proj: 1, head: 3, normStd: 0.3 };

/** Preset names accepted wherever a spec is. */
export type LlamaPresetName = "tiny" | "tiny-f16" | "bench";

/** The `tiny` preset; `tiny-f16` is the same with F16 matrices. */
const TINY: LlamaModelSpec = {
  name: "tallrec-synth-tiny",
  nEmbd: 64,
  nLayer: 2,
  nHead: 4,
  nHeadKv: 2,
  nFf: 172,
  nCtxTrain: 2048,
  ropeFreqBase: 10000,
  rmsEps: 1e-5,
  matrixType: "F32",
  seed: 1234,
  init: defaultInit,
};

/**
 * Presets (the 32000×n_embd embedding and output matrices dominate the size):
 * - `tiny`: n_embd 64, 2 layers, 4 heads / 2 KV heads (head dim 16), n_ff 172, F32, about 16.8 MB;
 * - `tiny-f16`: the same shapes and weights stored as F16, about 8.6 MB;
 * - `bench`: n_embd 1024, 8 layers, 16 heads / 4 KV heads (head dim 64), n_ff 2816, F16,
 *   about 155M parameters, about 311 MB.
 */
export const LLAMA_PRESETS: Readonly<Record<LlamaPresetName, LlamaModelSpec>> = {
  tiny: TINY,
  "tiny-f16": { ...TINY, name: "tallrec-synth-tiny-f16", matrixType: "F16" },
  bench: {
    name: "tallrec-synth-bench",
    nEmbd: 1024,
    nLayer: 8,
    nHead: 16,
    nHeadKv: 4,
    nFf: 2816,
    nCtxTrain: 2048,
    ropeFreqBase: 10000,
    rmsEps: 1e-5,
    matrixType: "F16",
    seed: 4321,
    init: defaultInit,
  },
};

/** Resolves a preset name (or returns the spec as is). */
export function resolveSpec(spec: LlamaModelSpec | LlamaPresetName): LlamaModelSpec {
  if (typeof spec !== "string") return spec;
  const s = LLAMA_PRESETS[spec];
  if (!s) throw new Error(`unknown model preset ${JSON.stringify(spec)} (known: ${Object.keys(LLAMA_PRESETS).join(", ")})`);
  return s;
}

/** Per-layer linear weights of a LLaMA block, by GGUF tensor base name. */
export type LlamaLinear = "attn_q" | "attn_k" | "attn_v" | "attn_output" | "ffn_gate" | "ffn_up" | "ffn_down";

/** `[n_in, n_out]` (ggml dims) of a block's linear weight. */
export function linearDims(spec: LlamaModelSpec, w: LlamaLinear): [number, number] {
  const hd = spec.nEmbd / spec.nHead;
  switch (w) {
    case "attn_q":
      return [spec.nEmbd, spec.nHead * hd];
    case "attn_k":
    case "attn_v":
      return [spec.nEmbd, spec.nHeadKv * hd];
    case "attn_output":
      return [spec.nHead * hd, spec.nEmbd];
    case "ffn_gate":
    case "ffn_up":
      return [spec.nEmbd, spec.nFf];
    case "ffn_down":
      return [spec.nFf, spec.nEmbd];
  }
}

/** Standard deviation of the random entries of a block's linear weight. */
export function linearStd(spec: LlamaModelSpec, w: LlamaLinear): number {
  const [nIn] = linearDims(spec, w);
  return (w === "attn_q" || w === "attn_k" ? spec.init.qk : spec.init.proj) / Math.sqrt(nIn);
}

const MATRIX_TYPES: Record<LlamaModelSpec["matrixType"], GgufWritableType> = {
  F32: GgmlType.F32,
  F16: GgmlType.F16,
  BF16: GgmlType.BF16,
  Q8_0: GgmlType.Q8_0,
};
/** general.file_type values (`enum llama_ftype`). */
const FILE_TYPES: Record<LlamaModelSpec["matrixType"], number> = { F32: 0, F16: 1, Q8_0: 7, BF16: 32 };

function validate(spec: LlamaModelSpec): void {
  const ints: Array<keyof LlamaModelSpec> = ["nEmbd", "nLayer", "nHead", "nHeadKv", "nFf", "nCtxTrain"];
  for (const k of ints) {
    const v = spec[k];
    if (typeof v !== "number" || !Number.isInteger(v) || v < 1) throw new Error(`model spec ${k} must be a positive integer, got ${String(v)}`);
  }
  if (spec.nEmbd % spec.nHead !== 0) throw new Error(`n_embd ${spec.nEmbd} is not a multiple of n_head ${spec.nHead}`);
  if ((spec.nEmbd / spec.nHead) % 2 !== 0) throw new Error(`head dimension ${spec.nEmbd / spec.nHead} must be even (RoPE)`);
  if (spec.nHead % spec.nHeadKv !== 0) throw new Error(`n_head ${spec.nHead} is not a multiple of n_head_kv ${spec.nHeadKv}`);
  if (spec.matrixType === "Q8_0" && (spec.nEmbd % 32 !== 0 || spec.nFf % 32 !== 0)) {
    throw new Error("Q8_0 matrices need n_embd and n_ff to be multiples of 32");
  }
}

/** The GGUF metadata of a synthetic model (architecture, hyperparameters, tokenizer, version stamp). */
export function llamaMetadata(spec: LlamaModelSpec, vocab: LlamaVocab) {
  const hd = spec.nEmbd / spec.nHead;
  return [
    kv("general.architecture", gv.str("llama")),
    kv("general.type", gv.str("model")),
    kv("general.name", gv.str(spec.name)),
    kv("llama.vocab_size", gv.u32(vocab.tokens.length)),
    kv("llama.context_length", gv.u32(spec.nCtxTrain)),
    kv("llama.embedding_length", gv.u32(spec.nEmbd)),
    kv("llama.block_count", gv.u32(spec.nLayer)),
    kv("llama.feed_forward_length", gv.u32(spec.nFf)),
    kv("llama.rope.dimension_count", gv.u32(hd)),
    kv("llama.attention.head_count", gv.u32(spec.nHead)),
    kv("llama.attention.head_count_kv", gv.u32(spec.nHeadKv)),
    kv("llama.attention.layer_norm_rms_epsilon", gv.f32(spec.rmsEps)),
    kv("llama.rope.freq_base", gv.f32(spec.ropeFreqBase)),
    kv("general.file_type", gv.u32(FILE_TYPES[spec.matrixType])),
    ...vocabMetadata(vocab),
    kv("general.quantization_version", gv.u32(2)),
    kv(SYNTH_VERSION_KEY, gv.u32(SYNTH_VERSION)),
    kv(SYNTH_SPEC_KEY, gv.str(JSON.stringify(spec))),
  ];
}

/** Tensor descriptions with lazy, seeded data (each tensor has its own random stream keyed by name). */
export function llamaTensors(spec: LlamaModelSpec, nVocab: number): GgufTensorSpec[] {
  const mt = MATRIX_TYPES[spec.matrixType];
  const out: GgufTensorSpec[] = [];
  const matrix = (name: string, dims: [number, number], std: number): void => {
    out.push({ name, dims, type: mt, data: () => new Rng(spec.seed, name).normalArray(dims[0] * dims[1], std) });
  };
  const norm = (name: string): void => {
    out.push({ name, dims: [spec.nEmbd], type: GgmlType.F32, data: () => new Rng(spec.seed, name).normalArray(spec.nEmbd, spec.init.normStd, 1) });
  };
  matrix("token_embd.weight", [spec.nEmbd, nVocab], spec.init.embd);
  const linears: LlamaLinear[] = ["attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"];
  for (let l = 0; l < spec.nLayer; l++) {
    norm(`blk.${l}.attn_norm.weight`);
    for (const w of linears.slice(0, 4)) matrix(`blk.${l}.${w}.weight`, linearDims(spec, w), linearStd(spec, w));
    norm(`blk.${l}.ffn_norm.weight`);
    for (const w of linears.slice(4)) matrix(`blk.${l}.${w}.weight`, linearDims(spec, w), linearStd(spec, w));
  }
  norm("output_norm.weight");
  matrix("output.weight", [spec.nEmbd, nVocab], spec.init.head / Math.sqrt(spec.nEmbd));
  return out;
}

/**
 * Writes a synthetic LLaMA model to `path` (atomically: a temporary file renamed when complete).
 * Weights are generated one tensor at a time, so even the `bench` preset needs
 * only one matrix in memory.
 *
 * @param spec a preset name or a full spec.
 */
export async function generateLlamaModel(path: string, spec: LlamaModelSpec | LlamaPresetName): Promise<void> {
  const s = resolveSpec(spec);
  validate(s);
  const vocab = await loadLlamaVocab();
  await writeGguf(path, { metadata: llamaMetadata(s, vocab), tensors: llamaTensors(s, vocab.tokens.length) });
}
