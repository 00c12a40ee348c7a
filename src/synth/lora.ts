/**
 * Synthetic LoRA adapters in llama.cpp's GGUF adapter format (what
 * convert_lora_to_gguf.py writes): `general.type = "adapter"`,
 * `adapter.type = "lora"`, `adapter.lora.alpha` (F32), the base model's
 * `general.architecture`, and for each adapted weight `W` (ggml dims
 * [n_in, n_out]) the tensors `W.lora_a` with dims [n_in, r] and `W.lora_b` with
 * dims [r, n_out]. llama.cpp computes `y = W x + s · B (A x)` with
 * `s = user_scale · alpha / r`.
 *
 * Unlike a fresh PEFT adapter (B = 0), B is random, so the adapter changes
 * logits measurably.
 */
import { getMetadataNumber, getMetadataString, openGgufSync, readTensorF64 } from "../gguf/reader.js";
import { GgmlType } from "../gguf/types.js";
import { gv, kv, writeGguf, type GgufTensorSpec } from "../gguf/writer.js";
import { LLAMA_PRESETS, linearDims, linearStd, resolveSpec, SYNTH_VERSION, SYNTH_VERSION_KEY, SYNTH_SPEC_KEY, type LlamaLinear, type LlamaModelSpec, type LlamaPresetName } from "./llama.js";
import { Rng } from "./random.js";

/** Ways to make an adapter that llama.cpp must refuse, for error tests. */
export type LoraMismatch =
  /** lora_a of the first target gets 16 extra input rows: "has incorrect shape". */
  | "shape"
  /** general.architecture "qwen2": "model arch and LoRA arch mismatch". */
  | "architecture"
  /** adapts a block the model does not have: "does not exist in base model". */
  | "layer";

/** Options of {@link generateLora}. */
export interface LoraOptions {
  /** Rank r. */
  r: number;
  /** adapter.lora.alpha. */
  alpha: number;
  /** Which linear weights of every block to adapt. */
  targets: LlamaLinear[];
  seed: number;
  /**
   * Size of the update relative to the base weight: at user scale 1, for
   * unit-variance inputs, `std(s·B A x) ≈ strength · std(W x)`. Default 0.5.
   */
  strength?: number;
  /** Storage type of lora_a/lora_b. Default F32. */
  type?: "F32" | "F16";
  /** Adapt only these block indices (default: all). */
  layers?: number[];
  /** Write a deliberately invalid adapter. */
  mismatch?: LoraMismatch;
}

interface BaseShape {
  nLayer: number;
  dims: (layer: number, w: LlamaLinear) => [number, number];
  std: (layer: number, w: LlamaLinear) => number;
}

function shapeFromSpec(spec: LlamaModelSpec): BaseShape {
  return { nLayer: spec.nLayer, dims: (_l, w) => linearDims(spec, w), std: (_l, w) => linearStd(spec, w) };
}

function shapeFromGguf(path: string, targets: LlamaLinear[]): BaseShape {
  const f = openGgufSync(path);
  const arch = getMetadataString(f, "general.architecture");
  if (arch !== "llama") throw new Error(`${path}: base model architecture is ${arch}, expected llama`);
  const nLayer = getMetadataNumber(f, "llama.block_count");
  const stds = new Map<string, number>();
  const dims = (l: number, w: LlamaLinear): [number, number] => {
    const t = f.tensorsByName.get(`blk.${l}.${w}.weight`);
    if (!t || t.dims.length !== 2) throw new Error(`${path}: no 2-D tensor blk.${l}.${w}.weight`);
    return [t.dims[0], t.dims[1]];
  };
  const std = (l: number, w: LlamaLinear): number => {
    const name = `blk.${l}.${w}.weight`;
    let s = stds.get(name);
    if (s === undefined) {
      const data = readTensorF64(f, name);
      let sum = 0;
      for (const v of data) sum += v * v;
      s = Math.sqrt(sum / data.length);
      stds.set(name, s);
    }
    return s;
  };
  for (const w of targets) dims(0, w);
  return { nLayer, dims, std };
}

/**
 * Writes a LoRA adapter for a LLaMA model to `path` (atomically).
 *
 * @param base the base model: a preset name, a spec, or the path of a LLaMA GGUF (shapes and weight scales are read from it).
 */
export async function generateLora(path: string, base: LlamaModelSpec | LlamaPresetName | string, opts: LoraOptions): Promise<void> {
  const { r, alpha, targets, seed } = opts;
  if (!Number.isInteger(r) || r < 1) throw new Error(`LoRA rank must be a positive integer, got ${r}`);
  if (!(alpha > 0)) throw new Error(`LoRA alpha must be positive, got ${alpha}`);
  if (targets.length === 0) throw new Error("LoRA needs at least one target");
  const strength = opts.strength ?? 0.5;
  const isPath = typeof base === "string" && !Object.hasOwn(LLAMA_PRESETS, base);
  const shape = isPath ? shapeFromGguf(base, targets) : shapeFromSpec(resolveSpec(base as LlamaModelSpec | LlamaPresetName));
  const layers = opts.layers ?? Array.from({ length: shape.nLayer }, (_, i) => i);
  for (const l of layers) {
    if (!Number.isInteger(l) || l < 0 || l >= shape.nLayer) throw new Error(`LoRA layer ${l} is outside the model's ${shape.nLayer} blocks`);
  }
  const type = opts.type === "F16" ? GgmlType.F16 : GgmlType.F32;
  const tensors: GgufTensorSpec[] = [];
  const scaleEff = alpha / r;
  let first = true;
  for (const l of layers) {
    for (const w of targets) {
      let [nIn, nOut] = shape.dims(l, w);
      const stdW = shape.std(l, w);
      const block = opts.mismatch === "layer" && first ? shape.nLayer + 7 : l;
      if (opts.mismatch === "shape" && first) nIn += 16;
      first = false;
      const name = `blk.${block}.${w}.weight`;
      // A ~ N(0, 1/n_in) keeps A x at unit scale; B is scaled so that s·B·A·x ≈ strength · W·x.
      const stdA = 1 / Math.sqrt(nIn);
      const stdB = (strength * Math.sqrt(nIn) * stdW) / (scaleEff * Math.sqrt(r));
      tensors.push({ name: `${name}.lora_a`, dims: [nIn, r], type, data: () => new Rng(seed, `${name}.lora_a`).normalArray(nIn * r, stdA) });
      tensors.push({ name: `${name}.lora_b`, dims: [r, nOut], type, data: () => new Rng(seed, `${name}.lora_b`).normalArray(r * nOut, stdB) });
    }
  }
  const metadata = [
    kv("general.architecture", gv.str(opts.mismatch === "architecture" ? "qwen2" : "llama")),
    kv("general.type", gv.str("adapter")),
    kv("general.name", gv.str(`tallrec-synth-lora-r${r}`)),
    kv("adapter.type", gv.str("lora")),
    kv("adapter.lora.alpha", gv.f32(alpha)),
    kv(SYNTH_VERSION_KEY, gv.u32(SYNTH_VERSION)),
    kv(SYNTH_SPEC_KEY, gv.str(JSON.stringify({ base: typeof base === "string" ? base : base.name, ...opts }))),
  ];
  await writeGguf(path, { metadata, tensors });
}
