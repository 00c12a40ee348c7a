/**
 * The engine: a LLaMA GGUF model with TALLRec LoRA adapters on CUDA or the CPU, scoring
 * user–item prompts in batches. Every score call goes through the engine's one scheduler
 * (scheduler.ts), whoever makes it (the library, the HTTP routes, Chat-REC, the CLI): concurrent
 * calls are merged into batches, fairly and within bounds, and each batch is one ScoreCall
 * (score-call.ts: plan.ts lays it out in the KV memory, native/src/scorer.cpp runs it).
 *
 * ```ts
 * const engine = await Engine.load({ model: "models/llama-7b.gguf", adapters: [{ name: "movie", path: "models/movie.gguf" }] });
 * const [r] = await engine.score([{ instruction, input }], { adapter: "movie" });
 * console.log(r.pYes);
 * await engine.close();
 * ```
 */
import { TallrecError } from "../errors.js";
import type { GgufFile } from "../gguf/index.js";
import { AdapterSet, type AdapterSelection } from "./adapters.js";
import { checkGenerateOptions, FALLBACK_STOP, formatChat, normalize, type ChatMessage, type GenerateOptions, type GenerateResult } from "./generation.js";
import { loadBinding, LogLevel, type Backend, type NativeBinding, type NativeContext, type NativeLora, type NativeModel, type NativeModelInfo } from "./native.js";
import { resolveOptions, type AdapterSpec, type EngineOptions } from "./options.js";
import { COST_CONSTANTS, planCost, type KvLayout } from "./cost.js";
import { roundBudget, type ModelShape, type Plan } from "./plan.js";
import { checkPromptInput, promptText, renderPrompt, type PromptInput } from "./prompt.js";
import { Scheduler } from "./scheduler.js";
import { planStreams } from "./plan-streams.js";
import { planFor, ScoreCall, type ResolvedAdapters, type ScoreResult } from "./score-call.js";
import { assertScoringRule, type ScoringRule } from "./scoring.js";
import { checkAdapterFile, checkLoraScale, checkModelFile, type ModelSummary } from "./validate.js";

export type { AdapterSelection } from "./adapters.js";
export { defaultThreads, type AdapterSpec, type EngineOptions, type LogFunction } from "./options.js";
export type { Score, ScoreFailure, ScoreResult } from "./score-call.js";
export type { SchedulerBounds, SchedulerStats, BatchInfo } from "./scheduler.js";

export interface ScoreOptions {
  /** Adapter(s) for this call (default: the engine's default adapter). */
  adapter?: AdapterSelection;
  /** Scoring rule (default "softmax"). */
  scoring?: ScoringRule;
  /** Share common prefixes between prompts (default true). */
  share?: boolean;
  /** Cancels the call: queued work never runs, running work stops at the next decode (when no other call shares its batch). */
  signal?: AbortSignal;
  /** Keep all the call's prompts in one batch (at most the scheduler's maxBatch), e.g. one user's candidates. */
  atomic?: boolean;
}

/** A prompt: a TALLRec row, structured fields, a full prompt text, or its tokens (BOS included). */
export type ScoreInput = PromptInput | string | { tokens: Int32Array | number[] };

/**
 * What one call cost. Batches merge several calls: the tokens a batch evaluated and reused are
 * shared among its prompts in proportion to their length, so the figures of concurrent calls add
 * up to the batches' totals.
 */
export interface ScoreStats {
  prompts: number;
  promptTokens: number;
  decodedTokens: number;
  reusedTokens: number;
  /** llama_decode calls of the batches the call's prompts went into. */
  decodeCalls: number;
  /** Batches the call's prompts went into. */
  batches: number;
  /** Of decodedTokens, the call's share of padding (the streams layout pads short prompts after their scored token). */
  paddingTokens: number;
  /** Prompts scored in the streams KV layout (see EngineOptions.kvLayout); the others were scored unified. */
  streamsPrompts: number;
  /** Time the call waited in the scheduler's queue before its first batch started, in ms. */
  queuedMs: number;
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
    /** EngineOptions.kvLayout, and the streams of the "streams" layout with their cells each. */
    kvLayout: "unified" | "streams" | "auto";
    streams: number;
    streamCells: number;
    /** Whether decodes follow the cores other processes leave free (see EngineOptions.adaptThreads). */
    adaptThreads: boolean;
    /** Threads the last decode used (at most `threads`). */
    threadsNow: number;
    /** Cores other processes used lately, as the thread governor measured them (-1: not yet, or not adapting). */
    otherCores: number;
    roundTokens: number;
    /** KV cache precision: "f32" with F32 weights is the exact mode (see the README's table). */
    kvType: "f16" | "f32";
    flashAttention: boolean;
  };
}

/** Which prompts may share a batch: the same adapters, scoring rule and sharing. */
export interface ScoreGroup {
  adapters: ResolvedAdapters;
  rule: ScoringRule;
  share: boolean;
}

/** One prompt's outcome in a batch, with its share of the batch's work. */
export interface ItemOutcome {
  result: ScoreResult;
  evaluated: number;
  reused: number;
  padding: number;
  /** The batch it ran in (a sequence number) and that batch's llama_decode calls. */
  batch: number;
  decodeCalls: number;
  /** The KV layout its batch ran in. */
  layout: KvLayout;
}

/** What the engine keeps of its options. */
interface Settings {
  threads: number;
  roundTokens: number;
  kvType: "f16" | "f32";
  flashAttention: boolean;
  threadPoll: number;
  adaptThreads: boolean;
  generationContextSize: number;
  kvLayout: "unified" | "streams" | "auto";
  streams: number;
  nCtx: number;
  nBatch: number;
  nUbatch: number;
  shape: ModelShape;
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

function logLevelName(level: number): "debug" | "info" | "warn" | "error" {
  return level >= LogLevel.ERROR ? "error" : level === LogLevel.WARN ? "warn" : level === LogLevel.INFO ? "info" : "debug";
}

const groupKey = (g: ScoreGroup) => `${g.adapters.key}\u0000${g.rule}\u0000${g.share ? 1 : 0}`;

export class Engine {
  /** The queue every score call goes through (bounds, stats, listeners: see scheduler.ts). */
  readonly scheduler: Scheduler<Int32Array, ItemOutcome, ScoreGroup>;
  private readonly adapters: AdapterSet;
  /** Generation and embedding contexts, created on first use, each with its own queue. */
  private generation: { lock: Lock; context: Promise<NativeContext> } | null = null;
  private embedding: { lock: Lock; context: Promise<NativeContext> } | null = null;
  /** The streams layout's context (kvLayout "streams" or "auto"), created when first used. */
  private streamsContext: Promise<NativeContext> | null = null;
  /** What each layout's context holds from its last call (reusable under the same adapter key). */
  private resident: Record<KvLayout, { key: string; tokens: Int32Array }> = { unified: { key: "", tokens: new Int32Array(0) }, streams: { key: "", tokens: new Int32Array(0) } };
  private closed = false;
  private batchSeq = 0;
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
    private readonly settings: Settings,
    defaultAdapter: string | null,
    options: EngineOptions,
  ) {
    this.adapters = new AdapterSet(defaultAdapter);
    this.scheduler = new Scheduler<Int32Array, ItemOutcome, ScoreGroup>({
      run: (group, items, signal) => this.executeBatch(group, items, signal),
      maxBatch: options.scheduler?.maxBatch ?? 256,
      maxWaitMs: options.scheduler?.maxWaitMs ?? 0,
      maxQueue: options.scheduler?.maxQueue ?? Number.MAX_SAFE_INTEGER,
      groupKey,
    });
  }

  /** Loads the model, the adapters and a context. */
  static async load(options: EngineOptions): Promise<Engine> {
    const o = resolveOptions(options);
    const specs = o.adapters;
    const modelSummary = checkModelFile(options.model);
    const adapterSummaries = specs.map((a) => checkAdapterFile(a.path, modelSummary));

    const loaded = loadBinding(o.gpu);
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
        nCtx: o.nCtx,
        nBatch: o.nBatch,
        nUbatch: o.nUbatch,
        nSeqMax: o.nSeqMax,
        threads: o.threads,
        threadsBatch: o.threads,
        flashAttn: o.flashAttention ? "on" : "off",
        kvType: o.kvType,
        poll: o.threadPoll,
        adaptThreads: o.adaptThreads,
      });
      const answerTokens = {
        yes: resolveAnswerToken(model, options.answerTokens?.yes ?? "Yes", "yes"),
        no: resolveAnswerToken(model, options.answerTokens?.no ?? "No", "no"),
      };
      if (answerTokens.yes === answerTokens.no) throw new TallrecError("invalid_input", `the yes and no answers resolve to the same token ${answerTokens.yes}`);
      const defaultAdapter = options.defaultAdapter ?? (specs.length === 1 ? specs[0].name : null);
      const info = model.info();
      const nFf = modelSummary.file.metadata.get(`${modelSummary.architecture}.feed_forward_length`)?.value;
      const shape: ModelShape = { nEmbd: info.nEmbd, nLayer: info.nLayer, nHead: info.nHead, nHeadKv: info.nHeadKv, nFf: typeof nFf === "number" ? nFf : 4 * info.nEmbd };
      const c = context.info();
      const roundTokens = options.roundTokens ?? roundBudget(shape, c.nCtx);
      const settings: Settings = {
        threads: o.threads,
        roundTokens,
        kvType: o.kvType,
        flashAttention: o.flashAttention,
        threadPoll: o.threadPoll,
        adaptThreads: o.adaptThreads,
        generationContextSize: o.generationContextSize,
        kvLayout: o.kvLayout,
        streams: o.streams,
        nCtx: c.nCtx,
        nBatch: c.nBatch,
        nUbatch: c.nUbatch,
        shape,
      };
      const engine = new Engine(binding, { model, context }, modelSummary, loaded.backend, loaded.variant, loaded.fallbackReason, answerTokens, settings, defaultAdapter, options);
      specs.forEach((a, i) => engine.adapters.add(a, loras[i], adapterSummaries[i]));
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
    const s = this.settings;
    return {
      backend: this.backend,
      variant: this.variant,
      cpuFeatures: this.binding.systemInfo().trim(),
      fallbackReason: this.fallbackReason,
      model: { ...this.native.model.info(), architecture: this.modelSummary.architecture },
      adapters: this.adapters.list().map((a) => ({
        name: a.name,
        path: a.path,
        scale: a.scale,
        rank: a.summary.rank,
        alpha: a.summary.alpha,
        targets: a.summary.targets.length,
      })),
      answerTokens: { ...this.answerTokens },
      context: {
        nCtx: c.nCtx,
        nBatch: c.nBatch,
        nUbatch: c.nUbatch,
        nSeqMax: c.nSeqMax,
        threads: s.threads,
        kvLayout: s.kvLayout,
        streams: s.streams,
        streamCells: this.streamCells,
        adaptThreads: c.adaptThreads,
        threadsNow: c.threads,
        otherCores: c.otherCores,
        roundTokens: s.roundTokens,
        kvType: s.kvType,
        flashAttention: s.flashAttention,
      },
    };
  }

  /** Tokenizes text as the scorer does (BOS added unless special is false). */
  tokenize(text: string, options: { special?: boolean } = {}): Int32Array {
    this.assertOpen();
    if (typeof text !== "string") throw new TallrecError("invalid_input", "text must be a string");
    return this.native.model.tokenize(text, options.special ?? true, false);
  }

  detokenize(tokens: Int32Array | number[]): string {
    this.assertOpen();
    return this.native.model.detokenize(Int32Array.from(tokens), false, false);
  }

  /** Loads another adapter at run time (between batches). */
  async loadAdapter(spec: AdapterSpec): Promise<void> {
    this.assertOpen();
    if (!spec || typeof spec.name !== "string" || !spec.name || typeof spec.path !== "string") throw new TallrecError("invalid_input", "loadAdapter needs { name, path, scale? }");
    if (this.adapters.has(spec.name)) throw new TallrecError("adapter_exists", `an adapter named ${JSON.stringify(spec.name)} is already loaded`);
    if (spec.scale !== undefined) checkLoraScale(spec.scale, "scale");
    const summary = checkAdapterFile(spec.path, this.modelSummary);
    const native = await this.binding.Lora.load(this.native.model, spec.path);
    if (this.adapters.has(spec.name)) {
      native.dispose();
      throw new TallrecError("adapter_exists", `an adapter named ${JSON.stringify(spec.name)} is already loaded`);
    }
    this.adapters.add(spec, native, summary);
  }

  /** Unloads an adapter (after the running batch; queued calls that chose it fail with `unknown_adapter`). */
  async unloadAdapter(name: string): Promise<void> {
    this.assertOpen();
    const a = this.adapters.remove(name);
    await this.scheduler.exclusive(async () => a.native.dispose());
  }

  /** Adapter names, in load order. */
  adapterNames(): string[] {
    return this.adapters.names();
  }

  /**
   * Scores prompts: for each, the logits of the answer tokens at the first answer position and
   * pYes under the scoring rule. Results come back in input order; an item that cannot be scored
   * (malformed, empty, longer than the context) gets `{ error, code }` and the others are scored.
   */
  async score(inputs: readonly ScoreInput[], options: ScoreOptions = {}): Promise<ScoreResult[]> {
    return (await this.scoreWithStats(inputs, options)).results;
  }

  /** {@link score}, with what this call cost. */
  async scoreWithStats(inputs: readonly ScoreInput[], options: ScoreOptions = {}): Promise<{ results: ScoreResult[]; stats: ScoreStats }> {
    this.assertOpen();
    if (!Array.isArray(inputs)) throw new TallrecError("invalid_input", "score() takes an array of prompts");
    if (inputs.length === 0) throw new TallrecError("empty", "score() needs at least one prompt (the batch is empty)");
    if (options === null || typeof options !== "object") throw new TallrecError("invalid_input", "options must be an object");
    if (options.signal !== undefined && !(options.signal instanceof AbortSignal)) throw new TallrecError("invalid_input", "options.signal must be an AbortSignal");
    const rule = options.scoring ?? "softmax";
    assertScoringRule(rule);
    const group: ScoreGroup = { adapters: this.adapters.resolve(options.adapter), rule, share: options.share ?? true };
    options.signal?.throwIfAborted();
    const t0 = performance.now();

    const results: ScoreResult[] = new Array(inputs.length);
    const tokens = await this.tokenizeInputs(inputs, results);
    const nCtx = this.native.context.info().nCtx;
    const todo: number[] = [];
    for (let i = 0; i < inputs.length; i++) {
      if (results[i]) continue;
      const n = tokens[i]!.length;
      if (n === 0) results[i] = { error: "the prompt is empty", code: "empty", tokens: 0 };
      else if (n > nCtx) results[i] = { error: `the prompt has ${n} tokens but the context holds ${nCtx} (raise contextSize)`, code: "too_long", tokens: n };
      else todo.push(i);
    }
    const stats: ScoreStats = { prompts: inputs.length, promptTokens: 0, decodedTokens: 0, reusedTokens: 0, decodeCalls: 0, batches: 0, paddingTokens: 0, streamsPrompts: 0, queuedMs: 0, milliseconds: 0 };
    if (todo.length > 0) {
      const job = await this.scheduler.submit(
        todo.map((i) => tokens[i]!),
        { group, signal: options.signal, atomic: options.atomic },
      );
      let decoded = 0;
      let reused = 0;
      let padding = 0;
      const batches = new Map<number, number>();
      job.results.forEach((o, k) => {
        results[todo[k]] = o.result;
        if (o.result.error === undefined) stats.promptTokens += o.result.tokens;
        decoded += o.evaluated;
        reused += o.reused;
        padding += o.padding;
        if (o.layout === "streams") stats.streamsPrompts++;
        batches.set(o.batch, o.decodeCalls);
      });
      stats.decodedTokens = Math.round(decoded);
      stats.reusedTokens = Math.round(reused);
      stats.paddingTokens = Math.round(padding);
      stats.batches = batches.size;
      for (const n of batches.values()) stats.decodeCalls += n;
      stats.queuedMs = job.queuedMs;
    }
    stats.milliseconds = performance.now() - t0;
    return { results, stats };
  }

  /**
   * Runs one batch of the scheduler: the prompts in calls of at most MAX_TOKENS_PER_CALL tokens,
   * each a {@link ScoreCall}; the tokens each call evaluated and reused are shared among its prompts.
   */
  private async executeBatch(group: ScoreGroup, prompts: Int32Array[], signal: AbortSignal): Promise<ItemOutcome[]> {
    this.assertOpen();
    const gone = this.adapters.stillLoaded(group.adapters);
    if (gone !== null) throw new TallrecError("unknown_adapter", `the adapter ${JSON.stringify(gone)} was unloaded while the call was queued`);
    const batch = ++this.batchSeq;
    const outcomes: ItemOutcome[] = new Array(prompts.length);
    let decodeCalls = 0;
    for (let start = 0; start < prompts.length;) {
      let end = start;
      let sum = 0;
      while (end < prompts.length && (end === start || sum + prompts[end].length <= MAX_TOKENS_PER_CALL)) sum += prompts[end++].length;
      const chunk = prompts.slice(start, end);
      const { layout, context, plan } = await this.chooseLayout(group, chunk);
      const held = this.resident[layout];
      const resident = group.share && held.key === group.adapters.key ? held.tokens : new Int32Array(0);
      // until the call succeeds the KV memory is unknown: nothing resident
      this.resident[layout] = { key: "", tokens: new Int32Array(0) };
      const call = new ScoreCall({
        context,
        layout,
        plan,
        prompts: chunk,
        adapters: group.adapters,
        rule: group.rule,
        share: group.share,
        resident,
        roundCells: this.settings.roundTokens,
        answerTokens: this.answerTokens,
      });
      const out = await call.run(signal);
      this.resident[layout] = { key: group.adapters.key, tokens: out.residentAfter };
      const scored = out.results.reduce((s, r) => s + (r.error === undefined ? r.tokens : 0), 0);
      out.results.forEach((r, k) => {
        const share = r.error === undefined && scored > 0 ? r.tokens / scored : 0;
        outcomes[start + k] = { result: r, evaluated: out.stats.decodedTokens * share, reused: out.stats.reusedTokens * share, padding: out.stats.paddingTokens * share, batch, decodeCalls: 0, layout };
      });
      decodeCalls += out.stats.decodeCalls;
      start = end;
    }
    for (const o of outcomes) o.decodeCalls = decodeCalls;
    return outcomes;
  }

  /** Cells of one stream in the streams layout (as llama.cpp sizes them: PAD(n_ctx / streams, 256)). */
  private get streamCells(): number {
    return Math.ceil(Math.floor(this.settings.nCtx / this.settings.streams) / 256) * 256;
  }

  private async getStreamsContext(): Promise<NativeContext> {
    const s = this.settings;
    this.streamsContext ??= this.binding.Context.create(this.native.model, {
      nCtx: s.nCtx,
      nBatch: s.nBatch,
      nUbatch: s.nUbatch,
      nSeqMax: s.streams,
      kvUnified: false,
      threads: s.threads,
      threadsBatch: s.threads,
      flashAttn: s.flashAttention ? "on" : "off",
      kvType: s.kvType,
      poll: s.threadPoll,
      adaptThreads: s.adaptThreads,
    });
    try {
      return await this.streamsContext;
    } catch (err) {
      this.streamsContext = null;
      throw err;
    }
  }

  /**
   * The layout of one call (kvLayout): "unified", "streams" (unless a prompt is longer than a
   * stream), or for "auto" the cheaper of the two plans by the cost model (src/engine/cost.ts).
   */
  private async chooseLayout(group: ScoreGroup, prompts: readonly Int32Array[]): Promise<{ layout: KvLayout; context: NativeContext; plan?: Plan }> {
    const s = this.settings;
    const unified = { layout: "unified" as const, context: this.native.context };
    const fit = (cells: number) => prompts.every((p) => p.length <= cells);
    if (s.kvLayout === "unified" || !fit(this.streamCells)) return unified;
    const streams = async () => {
      const context = await this.getStreamsContext();
      // (should llama.cpp size the streams otherwise than streamCells says, the prompts may not fit)
      return fit(context.info().nCtxSeq) ? { layout: "streams" as const, context } : null;
    };
    if (s.kvLayout === "streams") return (await streams()) ?? unified;
    // "auto": both plans, costed; the streams context is created only when they win
    const residentOf = (l: KvLayout) => (group.share && this.resident[l].key === group.adapters.key ? this.resident[l].tokens : new Int32Array(0));
    const pu = planFor("unified", this.native.context, prompts, { share: group.share, resident: residentOf("unified"), roundCells: s.roundTokens });
    const ps = planStreams(prompts, { streams: s.streams, streamCells: this.streamCells, nBatch: s.nBatch }, { share: group.share, resident: residentOf("streams") });
    const k = COST_CONSTANTS[this.backend];
    const cu = planCost(pu, "unified", s.shape, s.nUbatch, k, residentOf("unified").length);
    const cs = planCost(ps, "streams", s.shape, s.nUbatch, k, residentOf("streams").length);
    if (cs >= cu) return { ...unified, plan: pu };
    const chosen = await streams(); // ps fits streams of streamCells, so any the context has that hold every prompt
    return chosen ? { ...chosen, plan: ps } : { ...unified, plan: pu };
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
          for (const id of t) if (!Number.isInteger(id) || id < 0 || id >= nVocab) throw new TallrecError("invalid_input", `token id ${id} is outside the vocabulary (0..${nVocab - 1})`);
          tokens[i] = t;
        } else {
          texts.push(this.boundedText(promptText(checkPromptInput(input)), nCtx));
          textIndex.push(i);
        }
      } catch (err) {
        const e = err as TallrecError;
        const code = e.code === "too_long" ? "too_long" : "invalid_input";
        const n = e.details?.tokens;
        results[i] = { error: `item ${i}: ${e.message}`, code, ...(typeof n === "number" ? { tokens: n } : {}) };
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
   * vocabulary's longest tokens. Refused before tokenizing (`too_long`, with a lower bound of its
   * tokens), since llama.cpp's tokenizer takes quadratic time on some long inputs (a 2 MB field
   * took minutes).
   */
  private boundedText(text: string, nCtx: number): string {
    this.longestTokenBytes ??= longestTokenBytes(this.modelSummary.file);
    const limit = nCtx * this.longestTokenBytes;
    if (text.length > limit || Buffer.byteLength(text) > limit) {
      const bytes = Buffer.byteLength(text);
      const atLeast = Math.ceil(bytes / this.longestTokenBytes);
      throw new TallrecError("too_long", `the prompt has at least ${atLeast} tokens (${bytes} bytes) but the context holds ${nCtx} (raise contextSize)`, { details: { tokens: atLeast } });
    }
    return text;
  }

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
    const adapters = this.adapters.resolve(options.adapter ?? null);
    const tokens = this.native.model.tokenize(this.boundedText(text, this.settings.generationContextSize), true, false);
    options.signal?.throwIfAborted();
    this.generation ??= {
      lock: new Lock(),
      context: this.binding.Context.create(this.native.model, {
        nCtx: this.settings.generationContextSize,
        nBatch: 512,
        nUbatch: 512,
        nSeqMax: 1,
        threads: this.settings.threads,
        poll: this.settings.threadPoll,
        adaptThreads: this.settings.adaptThreads,
      }),
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
            adapters: adapters.natives,
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
    if (!Array.isArray(texts) || texts.some((t) => typeof t !== "string")) throw new TallrecError("invalid_input", "embed() takes an array of strings");
    if (texts.length === 0) return [];
    const tokenized = await this.native.model.tokenizeBatch(
      texts.map((t) => this.boundedText(t, 2048)),
      true,
      false,
    );
    this.embedding ??= {
      lock: new Lock(),
      context: this.binding.Context.create(this.native.model, {
        nCtx: 2048,
        nBatch: 2048,
        nUbatch: 512,
        nSeqMax: 32,
        threads: this.settings.threads,
        embeddings: true,
        poll: this.settings.threadPoll,
        adaptThreads: this.settings.adaptThreads,
      }),
    };
    const emb = this.embedding;
    const context = await emb.context;
    const nEmbd = this.native.model.info().nEmbd;
    tokenized.forEach((t, i) => {
      if (t.length > 2048) throw new TallrecError("too_long", `text ${i} has ${t.length} tokens; embeddings take at most 2048`, { details: { tokens: t.length } });
    });
    const flat = await emb.lock.run(() => context.embed(tokenized));
    return tokenized.map((_, i) => normalize(flat.slice(i * nEmbd, (i + 1) * nEmbd)));
  }

  /** Stops taking calls, lets the queued ones finish, then frees the contexts, adapters and model. */
  async close(): Promise<void> {
    if (this.closed) return;
    const side = [this.generation, this.embedding].filter((x): x is { lock: Lock; context: Promise<NativeContext> } => x !== null);
    this.scheduler.close();
    await this.scheduler.idle();
    await this.scheduler.exclusive(async () => {
      if (this.closed) return;
      this.closed = true;
      for (const s of side) await s.lock.run(async () => (await s.context).dispose());
      if (this.streamsContext) (await this.streamsContext.catch(() => null))?.dispose();
      this.native.context.dispose();
      for (const a of this.adapters.list()) a.native.dispose();
      this.native.model.dispose();
    });
  }

  private assertOpen(): void {
    if (this.closed) throw new TallrecError("closed", "the engine is closed");
  }
}

/**
 * The answer token: an id, or the first token that `text` adds after "### Response:\n" in the
 * TALLRec template (for LLaMA, "Yes" -> 8241 and "No" -> 3782, not the "▁Yes" variants).
 */
function resolveAnswerToken(model: NativeModel, answer: number | string, which: string): number {
  const nVocab = model.info().nVocab;
  if (typeof answer === "number") {
    if (!Number.isInteger(answer) || answer < 0 || answer >= nVocab) throw new TallrecError("invalid_input", `answerTokens.${which} ${answer} is outside the vocabulary`);
    return answer;
  }
  if (typeof answer !== "string" || answer === "") throw new TallrecError("invalid_input", `answerTokens.${which} must be a token id or a non-empty string`);
  const probe = renderPrompt({ instruction: "Answer.", input: "Question?" });
  const base = model.tokenize(probe, true, false);
  const withAnswer = model.tokenize(probe + answer, true, false);
  for (let i = 0; i < base.length; i++) {
    if (base[i] !== withAnswer[i]) throw new TallrecError("invalid_input", `cannot resolve the ${which} token: the template does not tokenize as a prefix; pass answerTokens.${which} as an id`);
  }
  if (withAnswer.length <= base.length) throw new TallrecError("invalid_input", `cannot resolve the ${which} token: ${JSON.stringify(answer)} adds no token`);
  return withAnswer[base.length];
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
