/**
 * `convert-lora`: a PEFT LoRA adapter for a Hugging Face LLaMA (adapter_config.json plus
 * adapter_model.safetensors or adapter_model.bin) to a llama.cpp GGUF LoRA adapter for a given
 * base GGUF model.
 *
 * Mapping: `base_model.model.model.layers.N.self_attn.q_proj.lora_A.weight` (PyTorch shape
 * (r, in)) becomes `blk.N.attn_q.weight.lora_a` (ggml [in, r], the same bytes) and `lora_B`
 * (out, r) becomes `.lora_b` (ggml [r, out]); lora_B of q_proj/k_proj gets llama.cpp's q/k row
 * permutation (head counts from the base GGUF), since P·(B·A) = (P·B)·A.
 *
 * Scale: PEFT adds `s·B·A` with `s = alpha/r` (`alpha/sqrt(r)` with use_rslora); llama.cpp adds
 * `user_scale · alpha_gguf / r` with r read from each lora_b. The converter writes
 * `adapter.lora.alpha = alpha` (plain) or `alpha·sqrt(r)` (rslora), so llama.cpp's scale at
 * user scale 1 equals PEFT's. Per-module `rank_pattern` / `alpha_pattern` entries that one
 * alpha cannot express are folded into lora_B.
 */
import { existsSync, statSync } from "node:fs";
import { basename, join, resolve } from "node:path";

import { getMetadataNumber, getMetadataString, openGgufSync, type GgufFile } from "../gguf/reader.js";
import { MAX_LORA_SCALE, MAX_LORA_WEIGHT } from "../gguf/checks.js";
import { GgmlType, GgufError } from "../gguf/types.js";
import { gv, kv, writeGguf, type GgufTensorSpec } from "../gguf/writer.js";
import { openWeightFile } from "./checkpoint.js";
import { ConvertError } from "./errors.js";
import { readJsonObject } from "./fileio.js";
import { compilePatternKey, PatternError, type PatternKey } from "./pattern.js";
import { permuteQkRows } from "./permute.js";
import { printable } from "../printable.js";
import { readTensorAsF32, shapeText, type SourceTensor } from "./tensor.js";

/** PEFT module name → GGUF tensor base name in a LLaMA block. */
export const PEFT_TO_GGUF: Readonly<Record<string, string>> = {
  q_proj: "attn_q",
  k_proj: "attn_k",
  v_proj: "attn_v",
  o_proj: "attn_output",
  gate_proj: "ffn_gate",
  up_proj: "ffn_up",
  down_proj: "ffn_down",
};
const MODULE_PARENT: Readonly<Record<string, string>> = {
  q_proj: "self_attn",
  k_proj: "self_attn",
  v_proj: "self_attn",
  o_proj: "self_attn",
  gate_proj: "mlp",
  up_proj: "mlp",
  down_proj: "mlp",
};

/** The parts of adapter_config.json the converter uses, checked. */
export interface PeftLoraConfig {
  r: number;
  alpha: number;
  useRslora: boolean;
  /** A list of module names, a regular expression (string), or undefined when absent. */
  targetModules?: string[] | string;
  fanInFanOut: boolean;
  rankPattern: Record<string, number>;
  alphaPattern: Record<string, number>;
  baseModel?: string;
}

/** Options of {@link convertPeftLora}. */
export interface ConvertLoraOptions {
  /** The base GGUF model the adapter is for (architecture, head counts and shapes are checked against it). */
  base: string;
  /** Type of lora_a/lora_b in the output (default "f32", exact for F32/F16/BF16 adapters). */
  outtype?: "f32" | "f16";
  /** general.name (default: the adapter directory's name). */
  name?: string;
  /** Notes (e.g. folded per-module scales). */
  log?: (message: string) => void;
}

/** What {@link convertPeftLora} wrote. */
export interface ConvertLoraResult {
  path: string;
  /** The weights file read. */
  source: string;
  /** adapter.lora.alpha as written. */
  alpha: number;
  /** Ranks found (one unless rank_pattern is used). */
  ranks: number[];
  /** PEFT's scale for the configured r: alpha/r or alpha/sqrt(r). */
  scale: number;
  /** GGUF base names adapted, e.g. ["attn_q", "attn_v"]. */
  targets: string[];
  /** Blocks with at least one adapted weight. */
  layers: number[];
  /** lora_a + lora_b tensors written. */
  tensors: number;
}

type Json = Record<string, unknown>;

/**
 * Reads and checks adapter_config.json.
 *
 * @throws {ConvertError} for a missing or invalid file, another PEFT type, DoRA, a bias other
 *   than "none", or modules_to_save (none of which a llama.cpp LoRA can hold).
 */
export function readPeftConfig(dir: string): PeftLoraConfig {
  const path = join(dir, "adapter_config.json");
  if (!existsSync(path)) throw new ConvertError(dir, "no adapter_config.json: not a PEFT adapter directory");
  const c = readJsonObject(path);
  if (c.peft_type !== undefined && c.peft_type !== "LORA") throw new ConvertError(path, `peft_type ${JSON.stringify(c.peft_type)} is not supported (only LORA)`, "unsupported");
  const r = c.r;
  if (typeof r !== "number" || !Number.isInteger(r) || r < 1) throw new ConvertError(path, `r must be a positive integer, got ${JSON.stringify(r)}`);
  const alpha = c.lora_alpha;
  if (typeof alpha !== "number" || !(alpha > 0)) throw new ConvertError(path, `lora_alpha must be a positive number, got ${JSON.stringify(alpha)}`);
  if (c.bias !== undefined && c.bias !== null && c.bias !== "none") {
    throw new ConvertError(path, `bias ${JSON.stringify(c.bias)} is not supported: llama.cpp LoRA adapters hold no bias terms (train with bias="none")`, "unsupported");
  }
  if (c.lora_bias === true) throw new ConvertError(path, "lora_bias is not supported: llama.cpp LoRA adapters hold no bias terms", "unsupported");
  if (c.use_dora === true) throw new ConvertError(path, "DoRA adapters (use_dora) are not supported by llama.cpp", "unsupported");
  const mts = c.modules_to_save;
  if (mts !== undefined && mts !== null && !(Array.isArray(mts) && mts.length === 0)) {
    throw new ConvertError(path, `modules_to_save ${JSON.stringify(mts)} is not supported: those are fully trained copies of whole modules, which a LoRA GGUF cannot hold`, "unsupported");
  }
  const tm = c.target_modules;
  if (tm !== undefined && tm !== null && typeof tm !== "string" && !(Array.isArray(tm) && tm.every((x) => typeof x === "string"))) {
    throw new ConvertError(path, `target_modules must be a list of names or a regular expression, got ${JSON.stringify(tm)}`);
  }
  const pattern = (key: string): Record<string, number> => {
    const v = c[key];
    if (v === undefined || v === null) return {};
    if (typeof v !== "object" || Array.isArray(v) || !Object.values(v as Json).every((x) => typeof x === "number" && x > 0)) {
      throw new ConvertError(path, `${key} must map module names to positive numbers`);
    }
    return v as Record<string, number>;
  };
  return {
    r,
    alpha,
    useRslora: c.use_rslora === true,
    targetModules: (tm ?? undefined) as string[] | string | undefined,
    fanInFanOut: c.fan_in_fan_out === true,
    rankPattern: pattern("rank_pattern"),
    alphaPattern: pattern("alpha_pattern"),
    baseModel: typeof c.base_model_name_or_path === "string" ? c.base_model_name_or_path : undefined,
  };
}

/**
 * PEFT's lookup of rank_pattern / alpha_pattern: the first key `k` with `(.*\.)?k$` matching the
 * module's full name, matched without backtracking (see pattern.ts: a key cannot stall the converter).
 */
function patternValue(pattern: readonly PatternKey[], values: Record<string, number>, moduleKey: string, fallback: number): number {
  for (const k of pattern) if (k.matches(moduleKey)) return values[k.key];
  return fallback;
}

function compilePattern(path: string, field: string, pattern: Record<string, number>): PatternKey[] {
  return Object.keys(pattern).map((k) => {
    try {
      return compilePatternKey(k);
    } catch (e) {
      if (e instanceof PatternError) throw new ConvertError(path, `${field} key ${JSON.stringify(printable(k))} cannot be matched: ${e.message}`, "invalid_file", { cause: e });
      throw e;
    }
  });
}

const LORA_NAME = /^(?:base_model\.model\.)?(?:model\.)?layers\.(\d+)\.(self_attn|mlp)\.(\w+)\.lora_(A|B)(?:\.[\w-]+)?\.weight$/;

interface Pair {
  layer: number;
  module: string;
  a?: SourceTensor;
  b?: SourceTensor;
}

/** Why a tensor name cannot be converted, or undefined when it is a LoRA A/B of a LLaMA projection. */
function classify(name: string): { pair?: { layer: number; module: string; ab: "A" | "B" }; error?: string } {
  if (name.includes("modules_to_save")) return { error: `tensor ${name} is a modules_to_save copy, which a LoRA GGUF cannot hold` };
  if (/lora_embedding_[AB]/.test(name)) return { error: `tensor ${name} is a LoRA on the token embedding, which this converter does not support` };
  if (name.includes("lora_magnitude_vector")) return { error: `tensor ${name} belongs to a DoRA adapter, which llama.cpp does not support` };
  if (/\.bias$/.test(name)) return { error: `tensor ${name} is a bias, which llama.cpp LoRA adapters cannot hold (train with bias="none")` };
  const m = LORA_NAME.exec(name);
  if (!m) {
    if (/lora_[AB]/.test(name)) return { error: `tensor ${name} targets a module a LLaMA base does not have (only the q/k/v/o/gate/up/down projections of model.layers.N can be adapted)` };
    return { error: `unexpected tensor ${name} (not a lora_A/lora_B weight)` };
  }
  const [, layer, parent, module, ab] = m;
  if (!(module in PEFT_TO_GGUF) || MODULE_PARENT[module] !== parent) {
    return { error: `tensor ${name} targets ${parent}.${module}, which a LLaMA base does not have (known: ${Object.keys(PEFT_TO_GGUF).join(", ")})` };
  }
  return { pair: { layer: Number(layer), module, ab: ab as "A" | "B" } };
}

/** Finds the weights file of an adapter directory (safetensors preferred, as PEFT does). */
function adapterWeightsPath(dir: string): string {
  for (const f of ["adapter_model.safetensors", "adapter_model.bin"]) {
    const p = join(dir, f);
    if (existsSync(p)) return p;
  }
  throw new ConvertError(dir, "no adapter weights: expected adapter_model.safetensors or adapter_model.bin");
}

function emptyAdapterMessage(file: string): string {
  return (
    `the adapter holds no tensors (the file is ${statSync(file).size} bytes): PEFT saved an empty state dict. ` +
    "This is what TALLRec's finetune_rec.py (copied from alpaca-lora) produces with newer peft versions: its " +
    "`model.state_dict = ... get_peft_model_state_dict(...)` override makes save_pretrained filter the weights twice, " +
    "leaving nothing. Remove that override (or use the peft version the script was written for) and save the adapter again; " +
    "there is nothing to convert in this file"
  );
}

/** The base model facts the converter needs. */
interface BaseInfo {
  file: GgufFile;
  nHead: number;
  nHeadKv: number;
  nLayer: number;
}

function openBase(path: string): BaseInfo {
  let file: GgufFile;
  try {
    file = openGgufSync(path);
  } catch (e) {
    if (e instanceof GgufError) throw new ConvertError(path, e.message.replace(`${path}: `, ""), "invalid_file", { cause: e });
    throw e;
  }
  if (getMetadataString(file, "general.type", "model") === "adapter") throw new ConvertError(path, "this is a LoRA adapter, not a base model");
  const arch = getMetadataString(file, "general.architecture", "");
  if (arch !== "llama") throw new ConvertError(path, `the base model's architecture is ${JSON.stringify(arch || "missing")}; PEFT LLaMA adapters need a llama base`);
  const nHead = getMetadataNumber(file, "llama.attention.head_count");
  return {
    file,
    nHead,
    nHeadKv: getMetadataNumber(file, "llama.attention.head_count_kv", nHead),
    nLayer: getMetadataNumber(file, "llama.block_count"),
  };
}

/**
 * Converts a PEFT LoRA adapter directory to a llama.cpp GGUF adapter for the base model
 * `opts.base`. Everything is checked before the output is written; the output appears only when
 * complete.
 *
 * @throws {ConvertError} for an empty adapter (TALLRec's 443-byte adapter_model.bin), an
 *   unsupported config (bias, modules_to_save, DoRA, non-LoRA PEFT types), tensors for modules or
 *   layers the base lacks, shape mismatches, a base of another architecture, truncated files, or
 *   a pickle that uses anything but the tensor-rebuild functions.
 */
export async function convertPeftLora(dir: string, out: string, opts: ConvertLoraOptions): Promise<ConvertLoraResult> {
  const log = opts.log ?? (() => {});
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new ConvertError(dir, "not a directory (expected a PEFT adapter directory with adapter_config.json)");
  const cfg = readPeftConfig(dir);
  const source = adapterWeightsPath(dir);
  const tensors = openWeightFile(source);
  if (tensors.length === 0) throw new ConvertError(source, emptyAdapterMessage(source));
  const base = openBase(opts.base);
  const outtype = opts.outtype ?? "f32";
  if (outtype !== "f32" && outtype !== "f16") throw new ConvertError(out, `unknown outtype ${JSON.stringify(outtype)} (f32 or f16)`);
  if (cfg.fanInFanOut) log("note: fan_in_fan_out is set, but PEFT turns it off for nn.Linear layers (all of LLaMA's); the tensors are read as (r, in) and (out, r) and their shapes checked");

  // pair lora_A / lora_B per (layer, module)
  const pairs = new Map<string, Pair>();
  for (const t of tensors) {
    const c = classify(t.name);
    if (c.error) throw new ConvertError(source, c.error);
    const { layer, module, ab } = c.pair!;
    const key = `${layer}.${module}`;
    let p = pairs.get(key);
    if (!p) pairs.set(key, (p = { layer, module }));
    if ((ab === "A" ? p.a : p.b) !== undefined) throw new ConvertError(source, `two lora_${ab} tensors for layer ${layer} ${module}`);
    if (ab === "A") p.a = t;
    else p.b = t;
  }
  // target_modules (a list) must name only projections a LLaMA has, and cover what the weights adapt
  if (Array.isArray(cfg.targetModules)) {
    const listed = new Set<string>();
    for (const m of cfg.targetModules) {
      const last = m.split(".").pop()!;
      if (!(last in PEFT_TO_GGUF)) {
        throw new ConvertError(join(dir, "adapter_config.json"), `target module ${JSON.stringify(m)} is not in a LLaMA base (LLaMA's linear layers: ${Object.keys(PEFT_TO_GGUF).join(", ")})`);
      }
      listed.add(last);
    }
    for (const p of pairs.values()) {
      if (!listed.has(p.module)) {
        throw new ConvertError(source, `holds weights for ${p.module}, which adapter_config.json's target_modules (${cfg.targetModules.join(", ")}) does not list`);
      }
    }
  }
  const configPath = join(dir, "adapter_config.json");
  const rankKeys = compilePattern(configPath, "rank_pattern", cfg.rankPattern);
  const alphaKeys = compilePattern(configPath, "alpha_pattern", cfg.alphaPattern);
  const sorted = [...pairs.values()].sort((x, y) => x.layer - y.layer || Object.keys(PEFT_TO_GGUF).indexOf(x.module) - Object.keys(PEFT_TO_GGUF).indexOf(y.module));
  const alphaGguf = cfg.useRslora ? cfg.alpha * Math.sqrt(cfg.r) : cfg.alpha;
  if (!Number.isFinite(Math.fround(alphaGguf)) || alphaGguf / cfg.r > MAX_LORA_SCALE) {
    throw new ConvertError(join(dir, "adapter_config.json"), `lora_alpha ${cfg.alpha} with r = ${cfg.r} scales the update by ${alphaGguf / cfg.r}, beyond the sane bound ${MAX_LORA_SCALE}`);
  }
  /** The weights as llama.cpp will read them: finite and within the bound tallrec's loader enforces. */
  const sane = (v: Float32Array, name: string): Float32Array => {
    for (let i = 0; i < v.length; i++) {
      if (!(Math.abs(v[i]) <= MAX_LORA_WEIGHT)) throw new ConvertError(source, `${name} holds ${v[i]} at element ${i}: LoRA weights must be finite and within ±${MAX_LORA_WEIGHT}`);
    }
    return v;
  };
  const ranks = new Set<number>();
  const specs: GgufTensorSpec[] = [];
  const type = outtype === "f16" ? GgmlType.F16 : GgmlType.F32;
  let folded = 0;
  for (const p of sorted) {
    const what = `layer ${p.layer} ${p.module}`;
    if (!p.a || !p.b) throw new ConvertError(source, `${what} has ${p.a ? "lora_A but no lora_B" : "lora_B but no lora_A"}`);
    const gguf = PEFT_TO_GGUF[p.module];
    const baseName = `blk.${p.layer}.${gguf}.weight`;
    const info = base.file.tensorsByName.get(baseName);
    if (!info) {
      throw new ConvertError(source, `${what} targets ${baseName}, which the base model ${opts.base} does not have (it has ${base.nLayer} blocks)`);
    }
    const [nIn, nOut] = info.dims;
    const { a, b } = p;
    if (a.shape.length !== 2 || b.shape.length !== 2) throw new ConvertError(source, `${what}: lora_A ${shapeText(a.shape)} and lora_B ${shapeText(b.shape)} must be matrices`);
    const r = a.shape[0];
    // a rank above the smaller side adds nothing a full matrix could not; it bounds the output by the base's size
    // (a few KB of pickle can declare a huge rank through zero-stride views)
    if (r < 1 || r > Math.min(nIn, nOut)) {
      throw new ConvertError(source, `${what}: rank ${r} is outside 1..${Math.min(nIn, nOut)} (the smaller side of ${baseName}, ${nOut} x ${nIn})`);
    }
    if (a.shape[1] !== nIn || b.shape[0] !== nOut || b.shape[1] !== r) {
      throw new ConvertError(
        source,
        `shape mismatch for ${what}: lora_A ${shapeText(a.shape)} and lora_B ${shapeText(b.shape)} do not fit the base weight ${baseName} ` +
          `(out ${nOut}, in ${nIn}: expected lora_A [r, ${nIn}] and lora_B [${nOut}, r])`,
      );
    }
    const moduleKey = `model.layers.${p.layer}.${MODULE_PARENT[p.module]}.${p.module}`;
    const rCfg = patternValue(rankKeys, cfg.rankPattern, moduleKey, cfg.r);
    if (r !== rCfg) throw new ConvertError(source, `${what} has rank ${r}, but adapter_config.json says r = ${rCfg}`);
    ranks.add(r);
    const alphaM = patternValue(alphaKeys, cfg.alphaPattern, moduleKey, cfg.alpha);
    const peftScale = alphaM / (cfg.useRslora ? Math.sqrt(r) : r);
    const fold = peftScale / (alphaGguf / r);
    if (Math.abs(fold - 1) > 1e-12) folded++;
    const heads = gguf === "attn_q" ? base.nHead : gguf === "attn_k" ? base.nHeadKv : 0;
    if (heads && (nOut % heads !== 0 || (nOut / heads) % 2 !== 0)) throw new ConvertError(opts.base, `${baseName}: ${nOut} rows do not split into ${heads} heads`);
    if (!(Math.abs(peftScale) <= MAX_LORA_SCALE)) throw new ConvertError(join(dir, "adapter_config.json"), `${what}: the scale ${peftScale} (alpha_pattern/rank_pattern) is beyond the sane bound ${MAX_LORA_SCALE}`);
    specs.push({ name: `${baseName}.lora_a`, dims: [nIn, r], type, data: () => sane(readTensorAsF32(a), printable(a.name)) });
    specs.push({
      name: `${baseName}.lora_b`,
      dims: [r, nOut],
      type,
      data: () => {
        let v = readTensorAsF32(b);
        if (heads) v = new Float32Array(permuteQkRows(new Uint8Array(v.buffer, v.byteOffset, v.byteLength), nOut, r * 4, heads, "to-gguf").buffer);
        if (Math.abs(fold - 1) > 1e-12) {
          for (let i = 0; i < v.length; i++) v[i] *= fold;
        }
        return sane(v, printable(b.name));
      },
    });
  }
  if (folded > 0) log(`note: ${folded} module(s) have a rank_pattern/alpha_pattern scale one adapter.lora.alpha cannot express; folded into their lora_B`);
  const targets = [...new Set(sorted.map((p) => PEFT_TO_GGUF[p.module]))];
  const layers = [...new Set(sorted.map((p) => p.layer))];
  const metadata = [
    kv("general.architecture", gv.str("llama")),
    kv("general.type", gv.str("adapter")),
    kv("general.name", gv.str(opts.name ?? basename(resolve(dir)))),
    kv("adapter.type", gv.str("lora")),
    kv("adapter.lora.alpha", gv.f32(alphaGguf)),
  ];
  await writeGguf(out, { metadata, tensors: specs });
  return {
    path: out,
    source,
    alpha: alphaGguf,
    ranks: [...ranks].sort((x, y) => x - y),
    scale: cfg.alpha / (cfg.useRslora ? Math.sqrt(cfg.r) : cfg.r),
    targets,
    layers,
    tensors: specs.length,
  };
}
