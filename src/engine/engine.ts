/**
 * The engine: a LLaMA GGUF model with TALLRec LoRA adapters on CUDA or the CPU, scoring
 * user–item prompts in batches (see plan.ts for how a batch is laid out in the KV memory).
 *
 * ```ts
 * const engine = await Engine.load({ model: "models/llama-7b.gguf", adapters: [{ name: "movie", path: "models/movie.gguf" }] });
 * const [r] = await engine.score([{ instruction, input }], { adapter: "movie" });
 * console.log(r.pYes);
 * await engine.close();
 * ```
 */
import { availableParallelism } from "node:os";

import { loadBinding, LogLevel, type Backend, type GpuMode, type NativeBinding, type NativeContext, type NativeLora, type NativeModel, type NativeModelInfo } from "./native.js";
import { checkGenerateOptions, FALLBACK_STOP, formatChat, normalize, type ChatMessage, type GenerateOptions, type GenerateResult } from "./generation.js";
import { planScoring, roundBudget, type Plan } from "./plan.js";
import { promptText, renderPrompt, type PromptInput } from "./prompt.js";
import { assertScoringRule, probabilityYes, type ScoringRule } from "./scoring.js";
import type { GgufFile } from "../gguf/index.js";
import { checkAdapterFile, checkLoraScale, checkModelFile, type AdapterSummary, type ModelSummary } from "./validate.js";

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
  /** KV cells of the generation context, created on the first generate() (default 2048). */
  generationContextSize?: number;
}

/** Which adapters a call uses: a name, names, explicit scales, or null for the base model alone. */
export type AdapterSelection = string | null | ReadonlyArray<string | { name: string; scale?: number }>;

export interface ScoreOptions {
  /** Adapter(s) for this call (default: the engine's default adapter). */
  adapter?: AdapterSelection;
  /** Scoring rule (default "softmax"). */
  scoring?: ScoringRule;
  /** Share common prefixes between prompts (default true). */
  share?: boolean;
  /** Cancels the call: queued work never runs, running work stops at the next decode. */
  signal?: AbortSignal;
}

/** A prompt: a TALLRec row, structured fields, a full prompt text, or its tokens (BOS included). */
export type ScoreInput = PromptInput | string | { tokens: Int32Array | number[] };

export interface Score {
  pYes: number;
  logitYes: number;
  logitNo: number;
  /** Prompt length in tokens. */
  tokens: number;
  /** Log-sum-exp of the full logit row (present with scoring "tallrec-compat"). */
  logSumExp?: number;
  error?: undefined;
}

export interface ScoreFailure {
  error: string;
  tokens?: number;
}

export type ScoreResult = Score | ScoreFailure;

export interface ScoreStats {
  prompts: number;
  promptTokens: number;
  decodedTokens: number;
  reusedTokens: number;
  decodeCalls: number;
  milliseconds: number;
}

export interface EngineInfo {
  backend: Backend;
  /** The addon build in use (build/<variant>/): "cpu", "cpu-avx2", "cuda", "cuda-prebuilt", ... */
  variant: string;
  /** llama.cpp's CPU feature line for this build, e.g. "CPU : SSE3 = 1 | AVX = 1 | AVX2 = 1 | ..." */
  cpuFeatures: string;
  fallbackReason?: string;
  model: NativeModelInfo & { architecture: string };
  adapters: Array<{ name: string; path: string; scale: number; rank: number; alpha?: number; targets: number }>;
  answerTokens: { yes: number; no: number };
  context: {
    nCtx: number;
    nBatch: number;
    nUbatch: number;
    nSeqMax: number;
    threads: number;
    roundTokens: number;
    /** KV cache precision: "f32" with F32 weights is the exact mode (see the README's table). */
    kvType: "f16" | "f32";
    flashAttention: boolean;
  };
}

interface LoadedAdapter {
  id: number;
  name: string;
  path: string;
  scale: number;
  native: NativeLora;
  summary: AdapterSummary;
}

/** A simple FIFO lock: one native call on a context at a time. */
class Lock {
  private tail: Promise<void> = Promise.resolve();
  async run<T>(fn: () => Promise<T>): Promise<T> {
    const prev = this.tail;
    let release!: () => void;
    this.tail = new Promise<void>((r) => (release = r));
    await prev;
    try {
      return await fn();
    } finally {
      release();
    }
  }
}

/** Most tokens planned into one native call (bounds memory and latency of one call). */
const MAX_TOKENS_PER_CALL = 1 << 18;

let adapterIds = 0;

function logLevelName(level: number): "debug" | "info" | "warn" | "error" {
  return level >= LogLevel.ERROR ? "error" : level === LogLevel.WARN ? "warn" : level === LogLevel.INFO ? "info" : "debug";
}

/** TALLREC_THREADS, else every core. */
export function defaultThreads(): number {
  const env = Number(process.env.TALLREC_THREADS);
  return Number.isInteger(env) && env > 0 ? env : availableParallelism();
}

function positiveInt(name: string, v: unknown, fallback: number): number {
  if (v === undefined) return fallback;
  if (typeof v !== "number" || !Number.isInteger(v) || v < 1) throw new TypeError(`${name} must be a positive integer, not ${JSON.stringify(v)}`);
  return v;
}

export class Engine {
  private readonly adapters = new Map<string, LoadedAdapter>();
  private readonly lock = new Lock();
  /** Generation and embedding contexts, created on first use, each with its own queue. */
  private generation: { lock: Lock; context: Promise<NativeContext> } | null = null;
  private embedding: { lock: Lock; context: Promise<NativeContext> } | null = null;
  private generationContextSize = 2048;
  private threadPoll = 0;
  private kvType: "f16" | "f32" = "f16";
  private flashAttention = false;
  private resident: { key: string; tokens: Int32Array } = { key: "", tokens: new Int32Array(0) };
  private closed = false;
  private lastStats: ScoreStats | null = null;
  /** Bytes of text the vocabulary's longest token stands for (see boundedText). */
  private longestTokenBytes: number | undefined;

  private constructor(
    private readonly binding: NativeBinding,
    private readonly native: { model: NativeModel; context: NativeContext },
    private readonly modelSummary: ModelSummary,
    readonly backend: Backend,
    readonly variant: string,
    readonly fallbackReason: string | undefined,
    readonly answerTokens: { yes: number; no: number },
    private defaultAdapter: string | null,
    private readonly threads: number,
    private readonly roundTokens: number,
  ) {}

  /** Loads the model, the adapters and a context. */
  static async load(options: EngineOptions): Promise<Engine> {
    if (!options || typeof options !== "object") throw new TypeError("Engine.load needs an options object with a model path");
    if (typeof options.model !== "string" || options.model === "") throw new TypeError("options.model must be the path of a GGUF model");
    const gpu = options.gpu ?? "auto";
    if (!["auto", "cuda", "cpu"].includes(gpu)) throw new TypeError(`gpu must be "auto", "cuda" or "cpu", not ${JSON.stringify(gpu)}`);
    const nCtx = positiveInt("contextSize", options.contextSize, 4096);
    const nBatch = positiveInt("batchSize", options.batchSize, nCtx);
    const nUbatch = positiveInt("ubatchSize", options.ubatchSize, Math.min(512, nBatch));
    const nSeqMax = positiveInt("sequences", options.sequences, Math.min(64, nBatch));
    const threads = positiveInt("threads", options.threads, defaultThreads());
    if (options.roundTokens !== undefined) positiveInt("roundTokens", options.roundTokens, 0);
    if (options.kvType !== undefined && options.kvType !== "f16" && options.kvType !== "f32") throw new TypeError(`kvType must be "f16" or "f32", not ${JSON.stringify(options.kvType)}`);
    if (options.flashAttention !== undefined && typeof options.flashAttention !== "boolean") throw new TypeError(`flashAttention must be true or false, not ${JSON.stringify(options.flashAttention)}`);
    if (options.threadPoll !== undefined && (!Number.isInteger(options.threadPoll) || options.threadPoll < -1 || options.threadPoll > 100)) {
      throw new TypeError(`threadPoll must be an integer from -1 to 100, not ${JSON.stringify(options.threadPoll)}`);
    }
    const specs = options.adapters ?? [];
    if (!Array.isArray(specs)) throw new TypeError("adapters must be an array of { name, path, scale? }");
    const names = new Set<string>();
    for (const [i, a] of specs.entries()) {
      if (!a || typeof a.name !== "string" || !a.name || typeof a.path !== "string" || !a.path) {
        throw new TypeError(`adapters[${i}] must be { name, path, scale? } with non-empty strings`);
      }
      if (names.has(a.name)) throw new TypeError(`adapter name ${JSON.stringify(a.name)} is used twice`);
      if (a.scale !== undefined) checkLoraScale(a.scale, `adapters[${i}].scale`);
      names.add(a.name);
    }

    const modelSummary = checkModelFile(options.model);
    const adapterSummaries = specs.map((a) => checkAdapterFile(a.path, modelSummary));

    const loaded = loadBinding(gpu);
    const { binding } = loaded;
    const log = options.verbose;
    if (log === true) binding.setLogger((_level, text) => process.stderr.write(text), LogLevel.INFO);
    else if (typeof log === "function") binding.setLogger((level, text) => log(logLevelName(level), text.trimEnd()), LogLevel.DEBUG);
    else binding.setLogger(null);

    const model = await binding.Model.load(options.model, {
      gpuLayers: loaded.backend === "cuda" ? (options.gpuLayers ?? -1) : 0,
      useMmap: options.useMmap ?? true,
    });
    let context: NativeContext | undefined;
    const loras: NativeLora[] = [];
    try {
      for (const a of specs) loras.push(await binding.Lora.load(model, a.path));
      context = await binding.Context.create(model, {
        nCtx,
        nBatch,
        nUbatch,
        nSeqMax,
        threads,
        threadsBatch: threads,
        flashAttn: options.flashAttention ? "on" : "off",
        kvType: options.kvType ?? "f16",
        poll: options.threadPoll ?? 0,
      });
      const answerTokens = {
        yes: resolveAnswerToken(model, options.answerTokens?.yes ?? "Yes", "yes"),
        no: resolveAnswerToken(model, options.answerTokens?.no ?? "No", "no"),
      };
      if (answerTokens.yes === answerTokens.no) throw new Error(`the yes and no answers resolve to the same token ${answerTokens.yes}`);
      let defaultAdapter = options.defaultAdapter ?? (specs.length === 1 ? specs[0].name : null);
      if (defaultAdapter !== null && !names.has(defaultAdapter)) throw new TypeError(`defaultAdapter ${JSON.stringify(defaultAdapter)} is not among the adapters`);
      const info = model.info();
      const nFf = modelSummary.file.metadata.get(`${modelSummary.architecture}.feed_forward_length`)?.value;
      const roundTokens =
        options.roundTokens ??
        roundBudget({ nEmbd: info.nEmbd, nLayer: info.nLayer, nHead: info.nHead, nHeadKv: info.nHeadKv, nFf: typeof nFf === "number" ? nFf : 4 * info.nEmbd }, context.info().nCtx);
      const engine = new Engine(binding, { model, context }, modelSummary, loaded.backend, loaded.variant, loaded.fallbackReason, answerTokens, defaultAdapter, threads, roundTokens);
      engine.generationContextSize = positiveInt("generationContextSize", options.generationContextSize, 2048);
      engine.threadPoll = options.threadPoll ?? 0;
      engine.kvType = options.kvType ?? "f16";
      engine.flashAttention = options.flashAttention ?? false;
      specs.forEach((a, i) => engine.adapters.set(a.name, { id: ++adapterIds, name: a.name, path: a.path, scale: a.scale ?? 1, native: loras[i], summary: adapterSummaries[i] }));
      return engine;
    } catch (err) {
      context?.dispose();
      for (const l of loras) l.dispose();
      model.dispose();
      throw err;
    }
  }

  /** What is loaded and how the context is sized. */
  get info(): EngineInfo {
    this.assertOpen();
    const c = this.native.context.info();
    return {
      backend: this.backend,
      variant: this.variant,
      cpuFeatures: this.binding.systemInfo().trim(),
      fallbackReason: this.fallbackReason,
      model: { ...this.native.model.info(), architecture: this.modelSummary.architecture },
      adapters: [...this.adapters.values()].map((a) => ({
        name: a.name,
        path: a.path,
        scale: a.scale,
        rank: a.summary.rank,
        alpha: a.summary.alpha,
        targets: a.summary.targets.length,
      })),
      answerTokens: { ...this.answerTokens },
      context: { nCtx: c.nCtx, nBatch: c.nBatch, nUbatch: c.nUbatch, nSeqMax: c.nSeqMax, threads: this.threads, roundTokens: this.roundTokens, kvType: this.kvType, flashAttention: this.flashAttention },
    };
  }

  /** Statistics of the last score() call. */
  get stats(): ScoreStats | null {
    return this.lastStats;
  }

  /** Tokenizes text as the scorer does (BOS added unless special is false). */
  tokenize(text: string, options: { special?: boolean } = {}): Int32Array {
    this.assertOpen();
    if (typeof text !== "string") throw new TypeError("text must be a string");
    return this.native.model.tokenize(text, options.special ?? true, false);
  }

  detokenize(tokens: Int32Array | number[]): string {
    this.assertOpen();
    return this.native.model.detokenize(Int32Array.from(tokens), false, false);
  }

  /** Loads another adapter at run time. */
  async loadAdapter(spec: AdapterSpec): Promise<void> {
    this.assertOpen();
    if (!spec || typeof spec.name !== "string" || !spec.name || typeof spec.path !== "string") throw new TypeError("loadAdapter needs { name, path, scale? }");
    if (this.adapters.has(spec.name)) throw new Error(`an adapter named ${JSON.stringify(spec.name)} is already loaded`);
    if (spec.scale !== undefined) checkLoraScale(spec.scale, "scale");
    const summary = checkAdapterFile(spec.path, this.modelSummary);
    const native = await this.binding.Lora.load(this.native.model, spec.path);
    this.adapters.set(spec.name, { id: ++adapterIds, name: spec.name, path: spec.path, scale: spec.scale ?? 1, native, summary });
  }

  /** Unloads an adapter (after the calls already queued have run). */
  async unloadAdapter(name: string): Promise<void> {
    this.assertOpen();
    const a = this.adapters.get(name);
    if (!a) throw new Error(`no adapter named ${JSON.stringify(name)}`);
    this.adapters.delete(name);
    if (this.defaultAdapter === name) this.defaultAdapter = null;
    await this.lock.run(async () => a.native.dispose());
  }

  /** Adapter names, in load order. */
  adapterNames(): string[] {
    return [...this.adapters.keys()];
  }

  private resolveAdapters(selection: AdapterSelection | undefined): { list: LoadedAdapter[]; scales: number[]; key: string } {
    const pick = (name: string, scale?: number) => {
      const a = this.adapters.get(name);
      if (!a) throw new Error(`unknown adapter ${JSON.stringify(name)} (loaded: ${this.adapterNames().map((n) => JSON.stringify(n)).join(", ") || "none"})`);
      if (scale !== undefined) checkLoraScale(scale, `adapter scale for ${name}`);
      return { a, scale: scale ?? a.scale };
    };
    let chosen: Array<{ a: LoadedAdapter; scale: number }>;
    if (selection === undefined) {
      chosen = this.defaultAdapter === null ? [] : [pick(this.defaultAdapter)];
      if (this.defaultAdapter === null && this.adapters.size > 1) {
        throw new Error(`several adapters are loaded (${this.adapterNames().join(", ")}): choose one with { adapter }, or null for the base model`);
      }
    } else if (selection === null) chosen = [];
    else if (typeof selection === "string") chosen = [pick(selection)];
    else if (Array.isArray(selection)) chosen = selection.map((s) => (typeof s === "string" ? pick(s) : pick(s?.name, s?.scale)));
    else throw new TypeError("adapter must be a name, an array of names or { name, scale }, or null");
    return {
      list: chosen.map((c) => c.a),
      scales: chosen.map((c) => c.scale),
      key: chosen.map((c) => `${c.a.id}:${c.scale}`).join(","),
    };
  }

  /**
   * Scores prompts: for each, the logits of the answer tokens at the first answer position and
   * pYes under the scoring rule. Results come back in input order; an item that cannot be scored
   * (malformed, or longer than the context) gets `{ error }` and the others are scored.
   */
  async score(inputs: readonly ScoreInput[], options: ScoreOptions = {}): Promise<ScoreResult[]> {
    this.assertOpen();
    if (!Array.isArray(inputs)) throw new TypeError("score() takes an array of prompts");
    if (inputs.length === 0) throw new RangeError("score() needs at least one prompt (the batch is empty)");
    if (options === null || typeof options !== "object") throw new TypeError("options must be an object");
    const rule = options.scoring ?? "softmax";
    assertScoringRule(rule);
    const adapters = this.resolveAdapters(options.adapter);
    options.signal?.throwIfAborted();
    const t0 = performance.now();

    const results: ScoreResult[] = new Array(inputs.length);
    const tokens = await this.tokenizeInputs(inputs, results);
    const nCtx = this.native.context.info().nCtx;
    const todo: number[] = [];
    for (let i = 0; i < inputs.length; i++) {
      if (results[i]) continue;
      const n = tokens[i]!.length;
      if (n === 0) results[i] = { error: "the prompt is empty", tokens: 0 };
      else if (n > nCtx) results[i] = { error: `the prompt has ${n} tokens but the context holds ${nCtx} (raise contextSize)`, tokens: n };
      else todo.push(i);
    }

    const stats: ScoreStats = { prompts: inputs.length, promptTokens: 0, decodedTokens: 0, reusedTokens: 0, decodeCalls: 0, milliseconds: 0 };
    // chunks of bounded size, one native call each; other callers may run between chunks
    for (let start = 0; start < todo.length; ) {
      let end = start;
      let sum = 0;
      while (end < todo.length && (end === start || sum + tokens[todo[end]]!.length <= MAX_TOKENS_PER_CALL)) sum += tokens[todo[end++]]!.length;
      const chunk = todo.slice(start, end);
      await this.lock.run(() => this.runChunk(chunk, tokens, adapters, rule, options, results, stats));
      start = end;
    }
    stats.milliseconds = performance.now() - t0;
    this.lastStats = stats;
    return results;
  }

  private async tokenizeInputs(inputs: readonly ScoreInput[], results: ScoreResult[]): Promise<Array<Int32Array | undefined>> {
    const tokens: Array<Int32Array | undefined> = new Array(inputs.length);
    const texts: string[] = [];
    const textIndex: number[] = [];
    const nVocab = this.native.model.info().nVocab;
    const nCtx = this.native.context.info().nCtx;
    inputs.forEach((input, i) => {
      try {
        if (typeof input === "string") {
          texts.push(this.boundedText(input, nCtx));
          textIndex.push(i);
        } else if (input && typeof input === "object" && "tokens" in input) {
          const t = Int32Array.from(input.tokens as ArrayLike<number>);
          for (const id of t) if (!Number.isInteger(id) || id < 0 || id >= nVocab) throw new Error(`token id ${id} is outside the vocabulary (0..${nVocab - 1})`);
          tokens[i] = t;
        } else {
          texts.push(this.boundedText(promptText(checkPromptInput(input)), nCtx));
          textIndex.push(i);
        }
      } catch (err) {
        results[i] = { error: `item ${i}: ${(err as Error).message}`, ...(err instanceof PromptTooLong ? { tokens: err.tokens } : {}) };
      }
    });
    if (texts.length > 0) {
      const tok = await this.native.model.tokenizeBatch(texts, true, false);
      textIndex.forEach((idx, k) => (tokens[idx] = tok[k]));
    }
    return tokens;
  }

  /**
   * `text`, unless it certainly holds more than `nCtx` tokens: more bytes than nCtx of the
   * vocabulary's longest tokens. Refused before tokenizing, since llama.cpp's tokenizer takes
   * quadratic time on some long inputs (a 2 MB field took minutes).
   */
  private boundedText(text: string, nCtx: number): string {
    this.longestTokenBytes ??= longestTokenBytes(this.modelSummary.file);
    const limit = nCtx * this.longestTokenBytes;
    if (text.length > limit || Buffer.byteLength(text) > limit) {
      const bytes = Buffer.byteLength(text);
      const atLeast = Math.ceil(bytes / this.longestTokenBytes);
      throw new PromptTooLong(atLeast, `the prompt has at least ${atLeast} tokens (${bytes} bytes) but the context holds ${nCtx} (raise contextSize)`);
    }
    return text;
  }

  private async runChunk(
    chunk: number[],
    tokens: Array<Int32Array | undefined>,
    adapters: { list: LoadedAdapter[]; scales: number[]; key: string },
    rule: ScoringRule,
    options: ScoreOptions,
    results: ScoreResult[],
    stats: ScoreStats,
  ): Promise<void> {
    this.assertOpen();
    options.signal?.throwIfAborted();
    for (const a of adapters.list) if (this.adapters.get(a.name) !== a) throw new Error(`adapter ${JSON.stringify(a.name)} was unloaded`);
    const ctxInfo = this.native.context.info();
    const share = options.share ?? true;
    const resident = share && this.resident.key === adapters.key ? this.resident.tokens : new Int32Array(0);
    const plan: Plan = planScoring(
      chunk.map((i) => tokens[i]!),
      { nCtx: ctxInfo.nCtx, nBatch: ctxInfo.nBatch, nSeqMax: ctxInfo.nSeqMax, roundCells: this.roundTokens },
      { share, resident },
    );
    const onAbort = () => this.native.context.abort();
    options.signal?.addEventListener("abort", onAbort, { once: true });
    // until the call succeeds the KV memory is unknown: nothing resident
    this.resident = { key: "", tokens: new Int32Array(0) };
    let out;
    try {
      out = await this.native.context.run({
        adapters: adapters.list.map((a) => a.native),
        scales: Float32Array.from(adapters.scales),
        tokens: plan.tokens,
        pos: plan.pos,
        out: plan.out,
        seqOffsets: plan.seqOffsets,
        seqIds: plan.seqIds,
        steps: plan.steps,
        nOutputs: plan.nOutputs,
        targets: Int32Array.of(this.answerTokens.yes, this.answerTokens.no),
        lse: rule === "tallrec-compat",
      });
    } finally {
      options.signal?.removeEventListener("abort", onAbort);
    }
    this.resident = { key: adapters.key, tokens: plan.residentAfter };
    chunk.forEach((idx, k) => {
      const slot = plan.outputOf[k];
      const logitYes = out.values[slot * 2];
      const logitNo = out.values[slot * 2 + 1];
      const lse = out.lse ? out.lse[slot] : undefined;
      const pYes = probabilityYes(rule, logitYes, logitNo, lse);
      if (!Number.isFinite(logitYes) || !Number.isFinite(logitNo) || !Number.isFinite(pYes) || (lse !== undefined && !Number.isFinite(lse))) {
        // an overflow in the model or an adapter: an error, never a null score
        results[idx] = { error: `the model computed non-finite logits (yes ${logitYes}, no ${logitNo}${lse !== undefined ? `, log-sum-exp ${lse}` : ""}): the weights or the adapter scale overflow`, tokens: tokens[idx]!.length };
        return;
      }
      const r: Score = { pYes, logitYes, logitNo, tokens: tokens[idx]!.length };
      if (lse !== undefined) r.logSumExp = lse;
      results[idx] = r;
    });
    stats.promptTokens += plan.stats.promptTokens;
    stats.decodedTokens += plan.stats.decodedTokens;
    stats.reusedTokens += plan.stats.reusedTokens;
    stats.decodeCalls += out.decodeCalls;
  }

  /** Frees the context, adapters and model (after queued calls finish). */
  /**
   * Generates text from a prompt or a conversation (formatted with the model's chat template, or
   * TALLRec's Alpaca-style layout when the GGUF has none), streaming it to `onText`. Uses the base
   * model unless `adapter` says otherwise.
   */
  async generate(prompt: string | readonly ChatMessage[], options: GenerateOptions & { adapter?: AdapterSelection } = {}): Promise<GenerateResult> {
    this.assertOpen();
    checkGenerateOptions(options);
    let text: string;
    let stop = options.stop;
    if (typeof prompt === "string") text = prompt;
    else {
      const chat = formatChat(this.native.model, prompt);
      text = chat.text;
      if (chat.template === "fallback") stop ??= FALLBACK_STOP;
    }
    const adapters = this.resolveAdapters(options.adapter ?? null);
    const tokens = this.native.model.tokenize(this.boundedText(text, this.generationContextSize), true, false);
    options.signal?.throwIfAborted();
    this.generation ??= {
      lock: new Lock(),
      context: this.binding.Context.create(this.native.model, { nCtx: this.generationContextSize, nBatch: 512, nUbatch: 512, nSeqMax: 1, threads: this.threads, poll: this.threadPoll }),
    };
    const gen = this.generation;
    const context = await gen.context;
    return gen.lock.run(async () => {
      this.assertOpen();
      options.signal?.throwIfAborted();
      const onAbort = () => context.abort();
      options.signal?.addEventListener("abort", onAbort, { once: true });
      try {
        const r = await context.generate(
          {
            tokens,
            maxTokens: options.maxTokens ?? 256,
            temperature: options.temperature ?? 0.7,
            topK: options.topK,
            topP: options.topP,
            minP: options.minP,
            repeatPenalty: options.repeatPenalty,
            seed: options.seed ?? 0,
            stop,
            adapters: adapters.list.map((a) => a.native),
            scales: Float32Array.from(adapters.scales),
          },
          options.onText,
        );
        return { text: r.text, tokens: r.tokens.length, promptTokens: r.promptTokens, stopReason: r.stopReason };
      } finally {
        options.signal?.removeEventListener("abort", onAbort);
      }
    });
  }

  /** Embeddings of texts (mean-pooled last hidden states, L2-normalized), one Float32Array each. */
  async embed(texts: readonly string[]): Promise<Float32Array[]> {
    this.assertOpen();
    if (!Array.isArray(texts) || texts.some((t) => typeof t !== "string")) throw new TypeError("embed() takes an array of strings");
    if (texts.length === 0) return [];
    const tokenized = await this.native.model.tokenizeBatch(texts.map((t) => this.boundedText(t, 2048)), true, false);
    this.embedding ??= {
      lock: new Lock(),
      context: this.binding.Context.create(this.native.model, { nCtx: 2048, nBatch: 2048, nUbatch: 512, nSeqMax: 32, threads: this.threads, embeddings: true, poll: this.threadPoll }),
    };
    const emb = this.embedding;
    const context = await emb.context;
    const nEmbd = this.native.model.info().nEmbd;
    tokenized.forEach((t, i) => {
      if (t.length > 2048) throw new RangeError(`text ${i} has ${t.length} tokens; embeddings take at most 2048`);
    });
    const flat = await emb.lock.run(() => context.embed(tokenized));
    return tokenized.map((_, i) => normalize(flat.slice(i * nEmbd, (i + 1) * nEmbd)));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    const side = [this.generation, this.embedding].filter((x): x is { lock: Lock; context: Promise<NativeContext> } => x !== null);
    await this.lock.run(async () => {
      this.closed = true;
      for (const s of side) await s.lock.run(async () => (await s.context).dispose());
      this.native.context.dispose();
      for (const a of this.adapters.values()) a.native.dispose();
      this.adapters.clear();
      this.native.model.dispose();
    });
  }

  private assertOpen(): void {
    if (this.closed) throw new Error("the engine is closed");
  }
}

/** Validates a prompt object's fields (types), naming the first bad field. */
function checkPromptInput(input: unknown): PromptInput {
  if (!input || typeof input !== "object") throw new TypeError(`expected a prompt object or string, got ${input === null ? "null" : typeof input}`);
  const o = input as Record<string, unknown>;
  if ("target" in o || "liked" in o || "domain" in o) {
    if (o.domain !== "movie" && o.domain !== "book") throw new TypeError(`field "domain" must be "movie" or "book", not ${JSON.stringify(o.domain)}`);
    for (const f of ["liked", "disliked"] as const) {
      if (!Array.isArray(o[f])) throw new TypeError(`field "${f}" must be an array of items`);
      (o[f] as unknown[]).forEach((it, k) => checkItem(it, `${f}[${k}]`));
    }
    checkItem(o.target, "target");
    if (o.instruction !== undefined && typeof o.instruction !== "string") throw new TypeError(`field "instruction" must be a string`);
    return o as unknown as PromptInput;
  }
  if (typeof o.instruction !== "string") throw new TypeError(`field "instruction" must be a string`);
  if (typeof o.input !== "string") throw new TypeError(`field "input" must be a string`);
  return o as unknown as PromptInput;
}

function checkItem(it: unknown, where: string): void {
  if (typeof it === "string") return;
  if (it && typeof it === "object" && typeof (it as { title?: unknown }).title === "string" && typeof (it as { author?: unknown }).author === "string") return;
  throw new TypeError(`field "${where}" must be a string or { title, author }`);
}

/**
 * The answer token: an id, or the first token that `text` adds after "### Response:\n" in the
 * TALLRec template (for LLaMA, "Yes" -> 8241 and "No" -> 3782, not the "▁Yes" variants).
 */
function resolveAnswerToken(model: NativeModel, answer: number | string, which: string): number {
  const nVocab = model.info().nVocab;
  if (typeof answer === "number") {
    if (!Number.isInteger(answer) || answer < 0 || answer >= nVocab) throw new RangeError(`answerTokens.${which} ${answer} is outside the vocabulary`);
    return answer;
  }
  if (typeof answer !== "string" || answer === "") throw new TypeError(`answerTokens.${which} must be a token id or a non-empty string`);
  const probe = renderPrompt({ instruction: "Answer.", input: "Question?" });
  const base = model.tokenize(probe, true, false);
  const withAnswer = model.tokenize(probe + answer, true, false);
  for (let i = 0; i < base.length; i++) {
    if (base[i] !== withAnswer[i]) throw new Error(`cannot resolve the ${which} token: the template does not tokenize as a prefix; pass answerTokens.${which} as an id`);
  }
  if (withAnswer.length <= base.length) throw new Error(`cannot resolve the ${which} token: ${JSON.stringify(answer)} adds no token`);
  return withAnswer[base.length];
}

/** A prompt certainly longer than the context, refused before tokenizing; `tokens` is a lower bound. */
class PromptTooLong extends RangeError {
  constructor(
    readonly tokens: number,
    message: string,
  ) {
    super(message);
  }
}

/** Bytes of text the longest token of a GGUF vocabulary stands for ("▁" is one space, a byte token one byte). */
function longestTokenBytes(file: GgufFile): number {
  const tokens = file.metadata.get("tokenizer.ggml.tokens")?.value;
  if (!Array.isArray(tokens)) return 64;
  let longest = 1;
  for (const t of tokens) {
    if (typeof t !== "string") continue;
    const n = /^<0x[0-9A-Fa-f]{2}>$/.test(t) ? 1 : Buffer.byteLength(t.replace(/\u2581/g, " "));
    if (n > longest) longest = n;
  }
  return longest;
}
