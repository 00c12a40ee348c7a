/**
 * Loading the native addon: which of the built variants (build/variants.json, written by
 * native/build.mjs) to use, CUDA or CPU, and the typed surface of the addon.
 *
 * Errors: everything the addon throws, and every promise of it that rejects, is a
 * {@link NativeError}: an Error (a TypeError or RangeError for a bad argument) whose `code` is one
 * of {@link NATIVE_ERROR_CODES}, so `codeOf(err)` (src/errors.ts) reads it directly.
 */
import { existsSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

import { TallrecError, type ErrorCode } from "../errors.js";

/**
 * The codes the addon sets on its errors (native/src/log.h, namespace codes):
 * - invalid_input: an argument of the wrong type or out of range (TypeError / RangeError), an
 *   adapter of another model, embed() on a context not created for embeddings
 * - empty: an empty prompt (generate) or text (embed), a RangeError
 * - too_long: a prompt or text longer than the context
 * - not_found: a model, adapter or quantizer input file that does not exist
 * - invalid_file: a file llama.cpp cannot load (not GGUF, truncated, an adapter that does not fit)
 * - backend: llama.cpp failed (a failed llama_decode, out of memory, context creation)
 * - busy: a call on a context while another one runs on it
 * - aborted: the call was stopped by the context's abort()
 * - closed: an object used after dispose()
 * - internal: anything else
 */
export const NATIVE_ERROR_CODES = ["invalid_input", "empty", "too_long", "not_found", "invalid_file", "backend", "busy", "aborted", "closed", "internal"] as const satisfies readonly ErrorCode[];

export type NativeErrorCode = (typeof NATIVE_ERROR_CODES)[number];

/** What the addon throws and rejects with (see {@link NATIVE_ERROR_CODES}). */
export interface NativeError extends Error {
  code: NativeErrorCode;
}

export type GpuMode = "auto" | "cuda" | "cpu";
export type Backend = "cuda" | "cpu";

export interface NativeModelInfo {
  path: string;
  description: string;
  nVocab: number;
  nCtxTrain: number;
  nEmbd: number;
  nLayer: number;
  nHead: number;
  nHeadKv: number;
  nParams: number;
  size: number;
  bos: number;
  eos: number;
  eot: number;
  addBos: boolean;
  addEos: boolean;
}

export interface NativeModel {
  tokenize(text: string, addSpecial?: boolean, parseSpecial?: boolean): Int32Array;
  tokenizeBatch(texts: string[], addSpecial?: boolean, parseSpecial?: boolean): Promise<Int32Array[]>;
  detokenize(tokens: Int32Array, removeSpecial?: boolean, unparseSpecial?: boolean): string;
  tokenPiece(token: number, special?: boolean): Buffer;
  info(): NativeModelInfo;
  meta(): Record<string, string>;
  chatTemplate(): string | null;
  applyChatTemplate(messages: Array<{ role: string; content: string }>, addAssistant?: boolean, template?: string): string | null;
  dispose(): void;
}

export interface NativeLora {
  meta(): Record<string, string>;
  dispose(): void;
}

export interface NativeContextOptions {
  nCtx?: number;
  nBatch?: number;
  nUbatch?: number;
  nSeqMax?: number;
  threads?: number;
  threadsBatch?: number;
  flashAttn?: "off" | "on" | "auto";
  embeddings?: boolean;
  kvUnified?: boolean;
  offloadKqv?: boolean;
  kvType?: "f16" | "f32";
  /** CPU threadpool polling level 0..100 (-1: llama.cpp's default per-graph threads). */
  poll?: number;
  /** Each decode on as many threads as other processes leave cores free (needs poll >= 0; Linux). */
  adaptThreads?: boolean;
}

/** The token layout of a scoring call, as plan.ts makes it and native/src/scorer.cpp runs it. */
export interface PlannedTokens {
  tokens: Int32Array;
  pos: Int32Array;
  /** Output slot of each token (-1: no logits). */
  out: Int32Array;
  seqOffsets: Int32Array;
  seqIds: Int32Array;
  steps: Int32Array;
  nOutputs: number;
}

export interface NativeRunPlan extends PlannedTokens {
  adapters: NativeLora[];
  scales: Float32Array;
  targets: Int32Array;
  lse: boolean;
}

export interface NativeRunResult {
  values: Float32Array;
  lse: Float64Array | null;
  decodeCalls: number;
  tokensDecoded: number;
}

/** How generation samples and stops (the engine's GenerateOptions document the defaults). */
export interface SamplingOptions {
  /** Most tokens to generate (default 256). */
  maxTokens?: number;
  /** 0 = greedy (default 0.7). */
  temperature?: number;
  topK?: number;
  topP?: number;
  minP?: number;
  repeatPenalty?: number;
  /** Sampling seed (default 0: reproducible). */
  seed?: number;
  /** Generation stops before any of these strings (default: the fallback template's markers). */
  stop?: string[];
}

export interface NativeGenerateOptions extends SamplingOptions {
  tokens: Int32Array;
  repeatLastN?: number;
  adapters?: NativeLora[];
  scales?: Float32Array;
}

export interface NativeGenerateResult {
  text: string;
  tokens: Int32Array;
  stopReason: "eos" | "stop" | "length" | "context" | "abort";
  promptTokens: number;
}

export interface NativeContext {
  run(plan: NativeRunPlan): Promise<NativeRunResult>;
  generate(options: NativeGenerateOptions, onText?: (piece: string) => void): Promise<NativeGenerateResult>;
  embed(texts: Int32Array[]): Promise<Float32Array>;
  abort(): void;
  info(): {
    nCtx: number;
    nBatch: number;
    nUbatch: number;
    nSeqMax: number;
    /** KV cells of one sequence's stream (nCtx in a unified KV cache). */
    nCtxSeq: number;
    busy: boolean;
    /** Threads a decode uses now (at most the context's threads). */
    threads: number;
    adaptThreads: boolean;
    /** Cores other processes used lately (smoothed), -1 before the first estimate. */
    otherCores: number;
  };
  dispose(): void;
}

export interface NativeDevice {
  name: string;
  description: string;
  type: "cpu" | "gpu" | "igpu" | "accel" | "other";
  memoryFree: number;
  memoryTotal: number;
}

/** The addon. Every method throws, or rejects, with a {@link NativeError} (an Error with `code`). */
export interface NativeBinding {
  Model: { load(path: string, options?: { gpuLayers?: number; useMmap?: boolean; vocabOnly?: boolean }): Promise<NativeModel> };
  Lora: { load(model: NativeModel, path: string): Promise<NativeLora> };
  Context: { create(model: NativeModel, options?: NativeContextOptions): Promise<NativeContext> };
  init(backendDir?: string): void;
  devices(): NativeDevice[];
  systemInfo(): string;
  setLogger(fn: ((level: number, text: string) => void) | null, minLevel?: number): void;
  maxSequences: number;
  linkage: "source" | "prebuilt";
  /** llama.cpp's quantizer (llama_model_quantize): input GGUF to output GGUF of `type` (e.g. "Q8_0", "Q4_K_M"). */
  quantize(input: string, output: string, type: string, threads?: number): Promise<void>;
  /** The type names quantize() accepts. */
  quantizeTypes(): string[];
}

/** llama.cpp log levels (ggml_log_level). */
export const LogLevel = { DEBUG: 1, INFO: 2, WARN: 3, ERROR: 4 } as const;

interface VariantRecord {
  name: string;
  backend: Backend;
  backendDir?: string;
}

export interface LoadedBinding {
  binding: NativeBinding;
  variant: string;
  backend: Backend;
  /** GPU devices llama.cpp sees through this variant. */
  devices: NativeDevice[];
  /** Why a CUDA variant was not used, when it was not. */
  fallbackReason?: string;
}

const packageRoot = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const require = createRequire(import.meta.url);
const loaded = new Map<string, NativeBinding>();

function readVariants(): VariantRecord[] {
  // TALLREC_VARIANT=<name> picks one built variant (build/<name>/), e.g. to compare cpu-prebuilt
  const chosen = process.env.TALLREC_VARIANT;
  if (chosen) {
    const rec = join(packageRoot, "build", chosen, "variant.json");
    if (!existsSync(rec)) throw new TallrecError("invalid_input", `TALLREC_VARIANT=${chosen}: no such built variant (${rec} is missing)`);
    return [JSON.parse(readFileSync(rec, "utf8")) as VariantRecord];
  }
  const file = join(packageRoot, "build", "variants.json");
  if (!existsSync(file)) {
    throw new TallrecError("unavailable", `the native addon is not built (${file} is missing): run "npm install" (or "npm run build:native") in ${packageRoot}`);
  }
  return (JSON.parse(readFileSync(file, "utf8")) as { variants: VariantRecord[] }).variants;
}

function requireVariant(v: VariantRecord): NativeBinding {
  let b = loaded.get(v.name);
  if (!b) {
    b = require(join(packageRoot, "build", v.name, "Release", "tallrec.node")) as NativeBinding;
    b.init(v.backendDir);
    loaded.set(v.name, b);
  }
  return b;
}

/** True when an NVIDIA driver is present (cheap check before loading any CUDA variant). */
function nvidiaDriverPresent(): boolean {
  return existsSync("/proc/driver/nvidia/version") || existsSync("/dev/nvidia0") || existsSync("/dev/nvidiactl");
}

/**
 * Loads the addon variant for `gpu`: "auto" tries the CUDA variants first and falls back to the CPU
 * one with `fallbackReason` set (never throwing for a missing GPU); "cuda" means CUDA or nothing: it
 * throws, saying why, when no CUDA variant is usable (as node-llama-cpp and PyTorch do when a GPU
 * that was asked for is missing); "cpu" loads the CPU one. Its own errors are TallrecErrors: "backend"
 * (CUDA asked for but not usable), "unavailable" (the addon is not built), "invalid_input" (a
 * TALLREC_VARIANT that was not built).
 */
export function loadBinding(gpu: GpuMode = "auto"): LoadedBinding {
  const variants = readVariants();
  const reasons: string[] = [];
  if (gpu !== "cpu") {
    const cuda = variants.filter((v) => v.backend === "cuda");
    if (cuda.length === 0) reasons.push("no CUDA variant of the addon was built");
    else if (!nvidiaDriverPresent()) reasons.push("no NVIDIA driver found");
    else {
      for (const v of cuda) {
        try {
          const b = requireVariant(v);
          const gpus = b.devices().filter((d) => d.type === "gpu");
          if (gpus.length > 0) return { binding: b, variant: v.name, backend: "cuda", devices: gpus };
          reasons.push(`${v.name}: llama.cpp found no CUDA device (is libcudart/libcublas 13 installed?)`);
        } catch (err) {
          reasons.push(`${v.name}: ${(err as Error).message.split("\n")[0]}`);
        }
      }
    }
  }
  if (gpu === "cuda") {
    throw new TallrecError("backend", `gpu "cuda" was asked for, but CUDA is not usable here: ${reasons.join("; ")} (gpu "auto" falls back to the CPU instead)`);
  }
  const cpu = variants.find((v) => v.backend === "cpu");
  if (!cpu) throw new TallrecError("unavailable", "no CPU variant of the native addon was built: run npm install");
  const binding = requireVariant(cpu);
  return {
    binding,
    variant: cpu.name,
    backend: "cpu",
    devices: [],
    fallbackReason: gpu === "cpu" ? undefined : `using the CPU: ${reasons.join("; ")}`,
  };
}
