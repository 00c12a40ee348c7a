/**
 * What llama.cpp asserts on, checked ahead. llama.cpp (as bundled with node-llama-cpp 3.21.1)
 * aborts the whole process, instead of failing the load, on some values a GGUF can hold: a block
 * count of 0 or above 512, duplicate vocabulary strings, metadata read with the wrong type through
 * gguf_get_val_* (the adapter loader's general.type/adapter.lora.alpha), expert counts that break
 * its invariants, a value head size that differs from the key head size, a tensor whose type its
 * operation has no kernel for (an I32 weight multiplies into a segfault). These checks run on
 * tallrec's own reading of the header before llama.cpp sees a file, and name the problem.
 *
 * Sites (llama.cpp of the bundled source): ggml/src/gguf.cpp get_val (type and count asserts);
 * src/llama-model.cpp load_hparams (block count, experts, n_layer_nextn, rope scaling type);
 * src/llama-vocab.cpp load (duplicate tokens, special ids, byte tokens); src/models/llama.cpp
 * (head sizes); src/llama-adapter.cpp (adapter metadata read with gguf_get_val_str/f32);
 * ggml-cpu binary ops and mat-mul kernels (tensor types).
 */
import { printable } from "../printable.js";
import type { GgufFile, GgufTensorInfo } from "./reader.js";
import { GgmlType, ggmlTypeName, GgufError, GgufValueType, ggufValueTypeName, type GgufValue } from "./types.js";
import { TallrecError } from "../errors.js";

/** llama.cpp's LLAMA_MAX_LAYERS. */
export const LLAMA_MAX_LAYERS = 512;
/** llama.cpp's LLAMA_MAX_EXPERTS. */
export const LLAMA_MAX_EXPERTS = 1024;
/**
 * Largest |alpha / r| (the scale llama.cpp applies at user scale 1) and largest |user scale| that
 * tallrec accepts: TALLRec trains with 2, PEFT configurations rarely exceed 64.
 */
export const MAX_LORA_SCALE = 1000;
/** Largest |weight| in an adapter: the half-precision range, which llama.cpp's GPU paths compute in. */
export const MAX_LORA_WEIGHT = 65504;

/**
 * Tensor types with a matrix-product (and row lookup) kernel in ggml's CPU backend: the types a
 * model's matrices may have. Integer types, F64 and the activation-only Q8_1/Q8_K have none.
 */
export const MATRIX_TYPES: ReadonlySet<number> = new Set<number>([
  GgmlType.F32,
  GgmlType.F16,
  GgmlType.BF16,
  GgmlType.Q4_0,
  GgmlType.Q4_1,
  GgmlType.Q5_0,
  GgmlType.Q5_1,
  GgmlType.Q8_0,
  GgmlType.Q2_K,
  GgmlType.Q3_K,
  GgmlType.Q4_K,
  GgmlType.Q5_K,
  GgmlType.Q6_K,
  GgmlType.IQ2_XXS,
  GgmlType.IQ2_XS,
  GgmlType.IQ3_XXS,
  GgmlType.IQ1_S,
  GgmlType.IQ4_NL,
  GgmlType.IQ3_S,
  GgmlType.IQ2_S,
  GgmlType.IQ4_XS,
  GgmlType.IQ1_M,
  GgmlType.TQ1_0,
  GgmlType.TQ2_0,
  GgmlType.MXFP4,
  GgmlType.NVFP4,
  GgmlType.Q1_0,
  GgmlType.Q2_0,
]);

/** Types an adapter's lora_a/lora_b may have (what llama.cpp's convert_lora_to_gguf.py writes; all readable here for the finiteness check). */
export const ADAPTER_TYPES: ReadonlySet<number> = new Set<number>([GgmlType.F32, GgmlType.F16, GgmlType.BF16, GgmlType.Q8_0]);

/** llama_rope_scaling_type_from_string's names. */
const ROPE_SCALING_TYPES = ["none", "linear", "yarn", "longrope"];
/** Tokenizers tallrec accepts: SentencePiece (LLaMA 1/2, Mistral) and BPE (Llama 3). */
const TOKENIZER_MODELS = ["llama", "gpt2"];
const SPECIAL_ID_KEYS = [
  "bos_token_id",
  "eos_token_id",
  "eot_token_id",
  "eom_token_id",
  "unknown_token_id",
  "seperator_token_id",
  "padding_token_id",
  "cls_token_id",
  "mask_token_id",
  "fim_pre_token_id",
  "fim_suf_token_id",
  "fim_mid_token_id",
  "fim_pad_token_id",
  "fim_rep_token_id",
  "fim_sep_token_id",
  "prefix_token_id",
  "suffix_token_id",
  "middle_token_id",
];
const TOKENIZER_BOOLS = ["add_bos_token", "add_eos_token", "add_sep_token", "add_space_prefix", "remove_extra_whitespaces", "normalizer.lowercase", "normalizer.strip_accents"];
/** LLAMA_TOKEN_TYPE_BYTE: the token stands for one byte and must read "<0xHH>". */
const TOKEN_TYPE_BYTE = 6;

/** A value's type for messages: "UINT32", "ARRAY of STRING". */
export function describeType(v: GgufValue): string {
  return v.type === GgufValueType.ARRAY ? `ARRAY of ${ggufValueTypeName(v.itemType)}` : ggufValueTypeName(v.type);
}

class Checker {
  constructor(readonly file: GgufFile) {}

  fail(message: string): never {
    throw new GgufError(this.file.path, message);
  }

  /** A scalar of exactly `type`; undefined when absent and not required. */
  scalar<T extends number | string | boolean>(key: string, type: number, required: boolean): T | undefined {
    const v = this.file.metadata.get(key);
    if (v === undefined) {
      if (required) this.fail(`missing metadata ${key}`);
      return undefined;
    }
    if (v.type !== type) this.fail(`metadata ${key} is ${describeType(v)}, expected ${ggufValueTypeName(type)}`);
    return v.value as T;
  }

  u32(key: string, required: boolean, min = 0, max = 0xffffffff): number | undefined {
    const v = this.scalar<number>(key, GgufValueType.UINT32, required);
    if (v !== undefined && (v < min || v > max)) this.fail(`metadata ${key} is ${v}, outside ${min}..${max}`);
    return v;
  }

  f32(key: string, required: boolean, ok: (v: number) => boolean, what: string): number | undefined {
    const v = this.scalar<number>(key, GgufValueType.FLOAT32, required);
    if (v !== undefined && !ok(v)) this.fail(`metadata ${key} is ${v}: it must be ${what}`);
    return v;
  }

  /** A per-layer count: a UINT32, or an array of nLayer UINT32/INT32 (llama.cpp's get_key_or_arr). */
  perLayer(key: string, nLayer: number, required: boolean, min: number): number[] | undefined {
    const v = this.file.metadata.get(key);
    if (v === undefined) {
      if (required) this.fail(`missing metadata ${key}`);
      return undefined;
    }
    let values: number[];
    if (v.type === GgufValueType.UINT32) values = new Array<number>(nLayer).fill(v.value);
    else if (v.type === GgufValueType.ARRAY && (v.itemType === GgufValueType.UINT32 || v.itemType === GgufValueType.INT32)) {
      if (v.value.length !== nLayer) this.fail(`metadata ${key} has ${v.value.length} values for ${nLayer} blocks`);
      values = v.value as number[];
    } else this.fail(`metadata ${key} is ${describeType(v)}, expected UINT32 or an array of ${nLayer} UINT32`);
    values.forEach((x, l) => {
      if (!Number.isInteger(x) || x < min || x > 0xffffffff) this.fail(`metadata ${key} is ${x} for block ${l}: must be at least ${min}`);
    });
    return values;
  }

  typeIs(key: string, type: number): void {
    this.scalar(key, type, false);
  }
}

/** Escaped, quoted name from a file, for messages. */
export function q(name: string): string {
  return JSON.stringify(printable(name));
}

/**
 * Checks a LLaMA model GGUF's metadata, vocabulary and tensor types against what llama.cpp needs
 * to load and run it without aborting.
 *
 * @throws {GgufError} naming the first problem.
 */
export function checkLlamaModel(file: GgufFile): void {
  const c = new Checker(file);
  const arch = c.scalar<string>("general.architecture", GgufValueType.STRING, true)!;
  if (arch !== "llama") {
    c.fail(`architecture ${q(arch)} is not supported: tallrec scores LLaMA-architecture models (LLaMA 1/2/3 and Mistral GGUFs say "llama")`);
  }
  c.typeIs("general.name", GgufValueType.STRING);
  c.typeIs("general.type", GgufValueType.STRING);
  const split = file.metadata.get("split.count");
  if (split !== undefined) {
    if (split.type !== GgufValueType.UINT16) c.fail(`metadata split.count is ${describeType(split)}, expected UINT16`);
    if ((split.value as number) > 1) c.fail(`the model is split into ${split.value} files; merge them into one GGUF (llama-gguf-split --merge)`);
  }
  const k = (s: string) => `${arch}.${s}`;
  const nLayer = c.u32(k("block_count"), true)!;
  if (nLayer < 1 || nLayer > LLAMA_MAX_LAYERS) c.fail(`metadata ${k("block_count")} is ${nLayer}: it must be 1..${LLAMA_MAX_LAYERS}`);
  c.u32(k("context_length"), true, 1);
  const nEmbd = c.u32(k("embedding_length"), true, 1)!;
  c.u32(k("embedding_length_out"), false);
  c.u32(k("vocab_size"), false, 1);
  if (c.scalar<boolean>(k("attention.causal"), GgufValueType.BOOL, false) === false) c.fail(`metadata ${k("attention.causal")} is false: scoring needs a causal model`);
  c.u32(k("pooling_type"), false, 0, 4);
  c.u32(k("nextn_predict_layers"), false, 0, nLayer);

  // experts (llama_model_base::load_hparams asserts these)
  const nExpert = c.u32(k("expert_count"), false, 0, LLAMA_MAX_EXPERTS) ?? 0;
  const used = c.perLayer(k("expert_used_count"), nLayer, false, 0) ?? [0];
  const usedMax = Math.max(...used);
  const groups = c.u32(k("expert_group_count"), false) ?? 0;
  const groupUsed = c.u32(k("expert_group_used_count"), false) ?? 0;
  if (usedMax > nExpert) c.fail(`metadata ${k("expert_used_count")} (${usedMax}) exceeds ${k("expert_count")} (${nExpert})`);
  if (nExpert > 0) {
    if (usedMax === 0) c.fail(`metadata ${k("expert_used_count")} must be at least 1 with ${nExpert} experts`);
    if (groups >= nExpert) c.fail(`metadata ${k("expert_group_count")} (${groups}) must be below ${k("expert_count")} (${nExpert})`);
    if (groups > 1 && (nExpert % groups !== 0 || groupUsed === 0 || groupUsed >= groups))
      c.fail(`metadata ${k("expert_group_count")} ${groups} / ${k("expert_group_used_count")} ${groupUsed} do not fit ${nExpert} experts`);
  } else if (groups !== 0) c.fail(`metadata ${k("expert_group_count")} is ${groups} without experts`);

  // attention shape: llama.cpp divides by the head counts and asserts equal key/value/rope head sizes
  c.perLayer(k("feed_forward_length"), nLayer, true, 1);
  const heads = c.perLayer(k("attention.head_count"), nLayer, true, 1)!;
  const headsKv = c.perLayer(k("attention.head_count_kv"), nLayer, false, 1) ?? heads;
  heads.forEach((h, l) => {
    if (h % headsKv[l] !== 0) c.fail(`block ${l}: ${h} attention heads are not a multiple of ${headsKv[l]} key/value heads`);
  });
  if (nEmbd % heads[0] !== 0) c.fail(`metadata ${k("embedding_length")} ${nEmbd} is not a multiple of ${heads[0]} heads`);
  const headDim = nEmbd / heads[0];
  if (headDim % 2 !== 0) c.fail(`the head size ${headDim} is odd (RoPE rotates pairs)`);
  for (const key of ["attention.key_length", "attention.value_length", "rope.dimension_count"]) {
    const v = c.u32(k(key), false);
    if (v !== undefined && v !== headDim) c.fail(`metadata ${k(key)} is ${v}, but a LLaMA head has ${nEmbd} / ${heads[0]} = ${headDim} dimensions`);
  }
  c.f32(k("attention.layer_norm_rms_epsilon"), true, (v) => Number.isFinite(v) && v >= 0 && v < 1, "a finite number in [0, 1)");
  c.f32(k("rope.freq_base"), false, (v) => Number.isFinite(v) && v > 0, "a finite positive number");
  const scaling = c.scalar<string>(k("rope.scaling.type"), GgufValueType.STRING, false);
  if (scaling !== undefined && !ROPE_SCALING_TYPES.includes(scaling)) c.fail(`metadata ${k("rope.scaling.type")} is ${q(scaling)}, not one of ${ROPE_SCALING_TYPES.join(", ")}`);
  for (const key of ["rope.scaling.factor", "rope.scale_linear"]) c.f32(k(key), false, (v) => Number.isFinite(v) && v >= 0, "a finite number >= 0");
  for (const key of ["rope.scaling.attn_factor", "rope.scaling.alpha"]) c.f32(k(key), false, Number.isFinite, "finite");
  c.u32(k("rope.scaling.original_context_length"), false);
  c.typeIs(k("rope.scaling.finetuned"), GgufValueType.BOOL);

  checkVocabulary(c);
  checkModelTensors(c);
}

function checkVocabulary(c: Checker): void {
  const file = c.file;
  const model = c.scalar<string>("tokenizer.ggml.model", GgufValueType.STRING, true)!;
  if (!TOKENIZER_MODELS.includes(model)) c.fail(`tokenizer.ggml.model is ${q(model)}: tallrec needs a SentencePiece ("llama") or BPE ("gpt2") vocabulary`);
  c.typeIs("tokenizer.ggml.pre", GgufValueType.STRING);
  c.typeIs("tokenizer.chat_template", GgufValueType.STRING);
  c.u32("tokenizer.ggml.token_type_count", false);
  for (const b of TOKENIZER_BOOLS) c.typeIs(`tokenizer.ggml.${b}`, GgufValueType.BOOL);
  const list = file.metadata.get("tokenizer.ggml.tokens");
  if (!list) c.fail("missing metadata tokenizer.ggml.tokens (the vocabulary)");
  if (list.type !== GgufValueType.ARRAY || list.itemType !== GgufValueType.STRING) c.fail(`metadata tokenizer.ggml.tokens is ${describeType(list)}, expected ARRAY of STRING`);
  const tokens = list.value as string[];
  const n = tokens.length;
  if (n < 1 || n > 0x7fffffff) c.fail(`the vocabulary has ${n} tokens`);
  // llama.cpp maps each string to one id and asserts that no two ids share a string (empty strings become "[EMPTY_<id>]")
  const seen = new Map<string, number>();
  tokens.forEach((t, i) => {
    const key = t === "" ? `[EMPTY_${i}]` : t;
    const prev = seen.get(key);
    if (prev !== undefined) c.fail(`the vocabulary has the string ${q(key)} twice (tokens ${prev} and ${i})`);
    seen.set(key, i);
  });
  const scores = file.metadata.get("tokenizer.ggml.scores");
  if (scores !== undefined) {
    if (scores.type !== GgufValueType.ARRAY || (scores.itemType !== GgufValueType.FLOAT32 && scores.itemType !== GgufValueType.INT32))
      c.fail(`metadata tokenizer.ggml.scores is ${describeType(scores)}, expected ARRAY of FLOAT32`);
    if (scores.value.length < n) c.fail(`tokenizer.ggml.scores has ${scores.value.length} values for ${n} tokens`);
  }
  const types = file.metadata.get("tokenizer.ggml.token_type");
  if (types !== undefined) {
    if (types.type !== GgufValueType.ARRAY || types.itemType !== GgufValueType.INT32) c.fail(`metadata tokenizer.ggml.token_type is ${describeType(types)}, expected ARRAY of INT32`);
    const tt = types.value as number[];
    if (tt.length < n) c.fail(`tokenizer.ggml.token_type has ${tt.length} values for ${n} tokens`);
    for (let i = 0; i < n; i++) {
      if (tt[i] < 0 || tt[i] > TOKEN_TYPE_BYTE) c.fail(`token ${i} has type ${tt[i]} (token types are 0..6)`);
      if (tt[i] === TOKEN_TYPE_BYTE && !/^<0x[0-9A-Fa-f]{2}>$/.test(tokens[i])) c.fail(`token ${i} ${q(tokens[i])} is typed as a byte but does not read <0xHH>`);
    }
  }
  if (model === "gpt2") {
    const merges = file.metadata.get("tokenizer.ggml.merges");
    if (!merges || merges.type !== GgufValueType.ARRAY || merges.itemType !== GgufValueType.STRING) c.fail("a BPE vocabulary needs tokenizer.ggml.merges, an ARRAY of STRING");
  }
  const suppress = file.metadata.get("tokenizer.ggml.suppress_tokens");
  if (suppress !== undefined && (suppress.type !== GgufValueType.ARRAY || suppress.itemType !== GgufValueType.INT32))
    c.fail(`metadata tokenizer.ggml.suppress_tokens is ${describeType(suppress)}, expected ARRAY of INT32`);
  for (const key of SPECIAL_ID_KEYS) {
    const id = c.u32(`tokenizer.ggml.${key}`, false);
    if (id !== undefined && id >= n) c.fail(`tokenizer.ggml.${key} is ${id}, outside the vocabulary of ${n} tokens`);
  }
  // the default BOS/EOS ids must exist when the file names none (prompts start with BOS)
  const defaults = model === "llama" ? { bos_token_id: 1, eos_token_id: 2 } : { bos_token_id: 11, eos_token_id: 11 };
  for (const [key, id] of Object.entries(defaults)) {
    if (!file.metadata.has(`tokenizer.ggml.${key}`) && id >= n) c.fail(`the vocabulary of ${n} tokens has no tokenizer.ggml.${key} and no token ${id} (the default)`);
  }
}

/** Roles whose tensor llama.cpp adds or multiplies element-wise into F32 activations: F32 only. */
function isVectorRole(name: string): boolean {
  return /(?:_norm|_norm_\w+)\.weight$/.test(name) || name.endsWith(".bias") || /^(?:blk\.\d+\.)?rope_(?:freqs|factors_long|factors_short)\.weight$/.test(name);
}

function checkModelTensors(c: Checker): void {
  for (const t of c.file.tensors) {
    checkDims(c, t);
    if (isVectorRole(t.name)) {
      if (t.type !== GgmlType.F32) c.fail(`tensor ${q(t.name)} is ${ggmlTypeName(t.type)}, but norm weights and biases must be F32`);
    } else if (!MATRIX_TYPES.has(t.type)) {
      c.fail(`tensor ${q(t.name)} is ${ggmlTypeName(t.type)}, a type llama.cpp cannot multiply with (weights must be F32, F16, BF16 or a quantized type)`);
    }
  }
}

function checkDims(c: Checker, t: GgufTensorInfo): void {
  if (t.dims.length === 0 || t.dims.some((d) => d < 1)) c.fail(`tensor ${q(t.name)} has shape [${t.dims.join(", ")}]: every dimension must be at least 1`);
}

/** What {@link checkLoraAdapter} found. */
export interface LoraContent {
  alpha: number | undefined;
  /** Smallest and largest rank over the pairs. */
  minRank: number;
  maxRank: number;
}

/**
 * Checks a LoRA adapter's own content (no model needed): the metadata llama.cpp reads with
 * type-asserting getters, tensor names, types and shapes, alpha against the rank, and, when
 * `readWeights` is given, that every weight is finite and within ±{@link MAX_LORA_WEIGHT}.
 *
 * @throws {GgufError} naming the first problem.
 */
export function checkLoraAdapter(file: GgufFile, readWeights?: (name: string) => Float32Array): LoraContent {
  const c = new Checker(file);
  // llama_adapter_lora_init reads these with gguf_get_val_str / gguf_get_val_f32, which abort on another type
  const type = c.scalar<string>("general.type", GgufValueType.STRING, true)!;
  if (type !== "adapter") c.fail(`not a LoRA adapter (general.type is ${q(type)})`);
  c.scalar<string>("general.architecture", GgufValueType.STRING, true);
  const adapterType = c.scalar<string>("adapter.type", GgufValueType.STRING, true)!;
  if (adapterType !== "lora") c.fail(`adapter.type is ${q(adapterType)}; only "lora" is supported`);
  c.typeIs("general.name", GgufValueType.STRING);
  const alphaValue = file.metadata.get("adapter.lora.alpha");
  let alpha: number | undefined;
  if (alphaValue !== undefined) {
    if (alphaValue.type !== GgufValueType.FLOAT32) c.fail(`metadata adapter.lora.alpha is ${describeType(alphaValue)}, expected FLOAT32`);
    alpha = alphaValue.value as number;
    if (!Number.isFinite(alpha)) c.fail(`adapter.lora.alpha is ${alpha}: it must be a finite number`);
  }
  if (file.metadata.has("adapter.alora.invocation_tokens")) c.fail("activated LoRA adapters (adapter.alora.invocation_tokens) are not supported: TALLRec adapters apply to every token");

  let minRank = Infinity;
  let maxRank = 0;
  for (const t of file.tensors) {
    const isA = t.name.endsWith(".lora_a");
    if (!isA && !t.name.endsWith(".lora_b")) c.fail(`unexpected tensor ${q(t.name)} (adapters hold only .lora_a/.lora_b tensors)`);
    checkDims(c, t);
    if (t.dims.length !== 2) c.fail(`tensor ${q(t.name)} has ${t.dims.length} dimensions; LoRA tensors are matrices`);
    if (!ADAPTER_TYPES.has(t.type)) c.fail(`tensor ${q(t.name)} is ${ggmlTypeName(t.type)}; LoRA tensors must be F32, F16, BF16 or Q8_0`);
    if (!isA) {
      minRank = Math.min(minRank, t.dims[0]);
      maxRank = Math.max(maxRank, t.dims[0]);
    }
  }
  if (maxRank === 0) minRank = 0;
  if (alpha !== undefined && alpha !== 0 && minRank > 0 && Math.abs(alpha) / minRank > MAX_LORA_SCALE) {
    c.fail(`adapter.lora.alpha ${alpha} with rank ${minRank} scales the update by ${Math.abs(alpha) / minRank}, beyond the sane bound ${MAX_LORA_SCALE}`);
  }
  if (readWeights) {
    for (const t of file.tensors) {
      const w = readWeights(t.name);
      for (let i = 0; i < w.length; i++) {
        const v = w[i];
        if (!(Math.abs(v) <= MAX_LORA_WEIGHT)) {
          c.fail(`tensor ${q(t.name)} holds ${v} at element ${i}: LoRA weights must be finite and within ±${MAX_LORA_WEIGHT}`);
        }
      }
    }
  }
  return { alpha, minRank, maxRank };
}

/** Checks a user-given adapter scale: finite and within ±{@link MAX_LORA_SCALE}. */
export function checkLoraScale(scale: unknown, what: string): number {
  if (typeof scale !== "number" || !Number.isFinite(scale) || Math.abs(scale) > MAX_LORA_SCALE) {
    throw new TallrecError("invalid_input", `${what} must be a finite number within ±${MAX_LORA_SCALE}, not ${String(scale)}`);
  }
  return scale;
}
