/**
 * The options of {@link Engine.load}, and their checks: a bad option is a TallrecError with code
 * `invalid_input` naming it, before any file is opened.
 */
import { availableParallelism } from "node:os";

import { TallrecError } from "../errors.js";
import type { GpuMode } from "./native.js";
import type { SchedulerBounds } from "./scheduler.js";
import { checkLoraScale } from "./validate.js";

export interface AdapterSpec {
  /** The name calls select it by. */
  name: string;
  /** A GGUF LoRA adapter (see models/README.md to convert a PEFT adapter). */
  path: string;
  /** Default scale when selected by name (1 = as trained). */
  scale?: number;
}

export type LogFunction = (level: "debug" | "info" | "warn" | "error", message: string) => void;

export interface EngineOptions {
  /** Path of a LLaMA GGUF model. */
  model: string;
  /** LoRA adapters to load onto the model. */
  adapters?: AdapterSpec[];
  /** Adapter used when a call names none (default: the only adapter, when exactly one is loaded). */
  defaultAdapter?: string | null;
  /** "auto" (default): CUDA when a usable GPU is found, else the CPU (`info.fallbackReason` says why); "cuda": CUDA or a load error saying why it is not usable; "cpu". */
  gpu?: GpuMode;
  /** Layers to offload on CUDA (default: all). */
  gpuLayers?: number;
  /** CPU threads (default: $TALLREC_THREADS, else every core). */
  threads?: number;
  /** KV cells of the context: the most tokens resident at once (default 4096). */
  contextSize?: number;
  /** Most tokens per llama_decode call (default: contextSize). */
  batchSize?: number;
  /** Physical micro-batch (default 512). */
  ubatchSize?: number;
  /** Most prompts in flight in one round (default 64, at most 256). */
  sequences?: number;
  /**
   * Most KV cells one round of prompts spans (default: from the model's shape, see roundBudget in
   * plan.ts; small models run faster with small rounds, large ones use the whole context).
   */
  roundTokens?: number;
  /**
   * How prompts sit in the KV cache. "unified": one cache, prompts of a round share their common
   * prefixes cell for cell (a trie), every token attends over the round's cells (other prompts'
   * masked). "streams": a second context whose `streams` sequences each have a stream of their own
   * (contextSize / streams cells, padded to 256): the call's common prefix is decoded once and
   * copied, and a token attends only over its own prompt. "auto" (default): per call, whichever a
   * cost model (src/engine/cost.ts) says is cheaper; the streams context is created the first time
   * it is chosen (as much KV memory again). A prompt longer than a stream is always scored unified.
   */
  kvLayout?: "unified" | "streams" | "auto";
  /** Streams of the "streams" layout (default 8; at most 256 and `batchSize`). */
  streams?: number;
  /** Flash attention (default off: scores then do not depend on how prompts are batched). */
  flashAttention?: boolean;
  /** KV cache precision (default "f16", llama.cpp's default; "f32" is exact to float rounding, at twice the memory). */
  kvType?: "f16" | "f32";
  /** Answer tokens: ids or the text whose first token after "### Response:\n" is the answer. Default "Yes" / "No". */
  answerTokens?: { yes?: number | string; no?: number | string };
  /** llama.cpp's log: false (default) quiet, true to stderr, or a function. */
  verbose?: boolean | LogFunction;
  /** Memory-map the model (default true). */
  useMmap?: boolean;
  /**
   * CPU threads: a threadpool is kept for the context, its threads waiting for work between
   * operations by sleeping (0, default) up to spinning (100); -1 uses llama.cpp's own (a new
   * threadpool per graph), which measured 2.7x slower per single-prompt call here.
   */
  threadPoll?: number;
  /**
   * Decode on as many of `threads` as other processes leave cores free, measured every quarter
   * second (default true; Linux only, elsewhere always `threads`). Beside one busy process on 2
   * cores, 1 thread decodes faster than 2: see BENCHMARKS.md, "Under CPU contention".
   */
  adaptThreads?: boolean;
  /** KV cells of the generation context, created on the first generate() (default 2048). */
  generationContextSize?: number;
  /**
   * Bounds of the engine's scheduler, which every caller's prompts go through (merged into
   * batches, fairly): most prompts per batch (default 256), longest wait of a queued call for others
   * to join its batch (default 0 ms: an idle engine starts at once; calls that arrive while a batch
   * runs join the next one), most prompts queued (default: no bound). A server applies its own
   * limits (see `tallrec serve --max-batch`).
   */
  scheduler?: SchedulerBounds;
}

/** TALLREC_THREADS, else every core. */
export function defaultThreads(): number {
  const env = Number(process.env.TALLREC_THREADS);
  return Number.isInteger(env) && env > 0 ? env : availableParallelism();
}

export function positiveInt(name: string, v: unknown, fallback: number): number {
  if (v === undefined) return fallback;
  if (typeof v !== "number" || !Number.isInteger(v) || v < 1) throw new TallrecError("invalid_input", `${name} must be a positive integer, not ${JSON.stringify(v)}`);
  return v;
}

/** The options with their defaults, checked. */
export interface ResolvedOptions {
  gpu: GpuMode;
  nCtx: number;
  nBatch: number;
  nUbatch: number;
  nSeqMax: number;
  threads: number;
  kvType: "f16" | "f32";
  flashAttention: boolean;
  threadPoll: number;
  adaptThreads: boolean;
  kvLayout: "unified" | "streams" | "auto";
  streams: number;
  generationContextSize: number;
  adapters: AdapterSpec[];
}

/** Checks every option (throws `invalid_input` naming the first bad one) and fills in defaults. */
export function resolveOptions(options: EngineOptions): ResolvedOptions {
  const bad = (message: string) => new TallrecError("invalid_input", message);
  if (!options || typeof options !== "object") throw bad("Engine.load needs an options object with a model path");
  if (typeof options.model !== "string" || options.model === "") throw bad("options.model must be the path of a GGUF model");
  const gpu = options.gpu ?? "auto";
  if (!["auto", "cuda", "cpu"].includes(gpu)) throw bad(`gpu must be "auto", "cuda" or "cpu", not ${JSON.stringify(gpu)}`);
  const nCtx = positiveInt("contextSize", options.contextSize, 4096);
  const nBatch = positiveInt("batchSize", options.batchSize, nCtx);
  const nUbatch = positiveInt("ubatchSize", options.ubatchSize, Math.min(512, nBatch));
  const nSeqMax = positiveInt("sequences", options.sequences, Math.min(64, nBatch));
  const threads = positiveInt("threads", options.threads, defaultThreads());
  if (options.roundTokens !== undefined) positiveInt("roundTokens", options.roundTokens, 0);
  if (options.kvType !== undefined && options.kvType !== "f16" && options.kvType !== "f32") throw bad(`kvType must be "f16" or "f32", not ${JSON.stringify(options.kvType)}`);
  if (options.flashAttention !== undefined && typeof options.flashAttention !== "boolean") throw bad(`flashAttention must be true or false, not ${JSON.stringify(options.flashAttention)}`);
  if (options.threadPoll !== undefined && (!Number.isInteger(options.threadPoll) || options.threadPoll < -1 || options.threadPoll > 100)) {
    throw bad(`threadPoll must be an integer from -1 to 100, not ${JSON.stringify(options.threadPoll)}`);
  }
  if (options.adaptThreads !== undefined && typeof options.adaptThreads !== "boolean") throw bad(`adaptThreads must be true or false, not ${JSON.stringify(options.adaptThreads)}`);
  const kvLayout = options.kvLayout ?? "auto";
  if (!["unified", "streams", "auto"].includes(kvLayout)) throw bad(`kvLayout must be "unified", "streams" or "auto", not ${JSON.stringify(options.kvLayout)}`);
  const streams = positiveInt("streams", options.streams, Math.min(8, nBatch));
  if (streams > 256 || streams > nBatch) throw bad(`streams must be at most 256 and batchSize (${nBatch}), not ${streams}`);
  const generationContextSize = positiveInt("generationContextSize", options.generationContextSize, 2048);
  const specs = options.adapters ?? [];
  if (!Array.isArray(specs)) throw bad("adapters must be an array of { name, path, scale? }");
  const names = new Set<string>();
  for (const [i, a] of specs.entries()) {
    if (!a || typeof a.name !== "string" || !a.name || typeof a.path !== "string" || !a.path) throw bad(`adapters[${i}] must be { name, path, scale? } with non-empty strings`);
    if (names.has(a.name)) throw bad(`adapter name ${JSON.stringify(a.name)} is used twice`);
    if (a.scale !== undefined) checkLoraScale(a.scale, `adapters[${i}].scale`);
    names.add(a.name);
  }
  if (options.defaultAdapter !== undefined && options.defaultAdapter !== null && !names.has(options.defaultAdapter)) {
    throw bad(`defaultAdapter ${JSON.stringify(options.defaultAdapter)} is not among the adapters`);
  }
  return {
    gpu,
    nCtx,
    nBatch,
    nUbatch,
    nSeqMax,
    threads,
    kvType: options.kvType ?? "f16",
    flashAttention: options.flashAttention ?? false,
    threadPoll: options.threadPoll ?? 0,
    adaptThreads: options.adaptThreads ?? true,
    kvLayout,
    streams,
    generationContextSize,
    adapters: specs,
  };
}
