/**
 * What the routes share: the engine (once loaded), metrics, limits, and the adapter rules. The
 * engine's own scheduler merges the routes' prompts (and Chat-REC's, and any other caller's) into
 * batches; the server applies its limits to it.
 */
import type { Engine, ItemOutcome as EngineItemOutcome, ScoreGroup as EngineScoreGroup, ScoreResult, ScoreStats } from "../engine/engine.js";
import type { PromptInput } from "../engine/prompt.js";
import type { BatchInfo, SchedulerStats } from "../engine/scheduler.js";
import type { ScoringRule } from "../engine/scoring.js";
import { codeOf, TallrecError } from "../errors.js";
import { HttpError } from "./errors.js";
import type { ServerMetrics } from "./prometheus.js";

/** The engine methods the server uses (an {@link Engine}, or a wrapper with the same behaviour). */
export type ServerEngine = Pick<Engine, "scoreWithStats" | "scheduler" | "info" | "adapterNames" | "loadAdapter" | "unloadAdapter" | "close"> & Partial<Pick<Engine, "generate" | "embed" | "tokenize">>;

/** Which prompts may share an engine batch: same adapter and scoring rule. */
export interface ScoreGroup {
  /** Adapter name, or null for the base model. */
  adapter: string | null;
  scoring: ScoringRule;
}

/** One item's result and its share of the tokens its batch evaluated. */
export interface ItemOutcome {
  result: ScoreResult;
  /** Share of the batch's evaluated tokens, in proportion to this prompt's tokens (0 for an error). */
  evaluated: number;
}

/** Per-request token accounting, as reported in responses' `usage`. */
export interface Usage {
  prompts: number;
  tokens: number;
  tokensEvaluated: number;
  tokensSaved: number;
}

/** Limits and settings of a server, defaults filled in. */
export interface ServerLimits {
  maxQueue: number;
  maxBatch: number;
  batchWaitMs: number;
  maxItems: number;
  maxCandidates: number;
  bodyLimit: number;
  timeoutMs: number;
}

export type ServerStatus = "loading" | "ready" | "failed" | "stopping";

const IDLE_QUEUE: SchedulerStats = { queuedJobs: 0, queuedItems: 0, runningItems: 0, batches: 0, itemsRun: 0, cancelled: 0, rejected: 0, itemsPerSecond: 0 };

/** The shared state of one server (decorated on the Fastify instance as `tallrec`). */
export class ServerState {
  status: ServerStatus = "loading";
  engine: ServerEngine | null = null;
  /** Why loading failed (status "failed"). */
  loadError: Error | null = null;
  /** True once the server began shutting down (no new connections; accepted requests finish). */
  closing = false;
  /** Tokens the context holds (longer prompts are refused). */
  nCtx = 0;
  private removeListener: (() => void) | null = null;

  constructor(
    readonly limits: ServerLimits,
    readonly metrics: ServerMetrics,
    /** The model's name in responses (default: the model's description). */
    public modelName: string,
    /** The adapter used when a request names none (undefined: the only adapter, when one is loaded). */
    public defaultAdapter: string | null | undefined,
    /** Folder runtime adapter loading is restricted to (null: runtime loading disabled). */
    readonly modelsDir: string | null,
  ) {}

  /** The engine's queue now (zeros while no engine is loaded). */
  get queue(): SchedulerStats {
    return this.engine?.scheduler.stats ?? IDLE_QUEUE;
  }

  /** Marks the engine as loaded. */
  setEngine(engine: ServerEngine): void {
    this.engine = engine;
    // the engine's scheduler takes the server's bounds; its batches feed the server's metrics
    engine.scheduler.configure({ maxBatch: this.limits.maxBatch, maxWaitMs: this.limits.batchWaitMs, maxQueue: this.limits.maxQueue });
    this.removeListener?.();
    this.removeListener = engine.scheduler.addBatchListener((info) => this.recordBatch(info));
    const info = engine.info;
    this.nCtx = info.context.nCtx;
    if (!this.modelName) this.modelName = info.model.description;
    if (this.status === "loading") this.status = "ready";
  }

  /** The engine, or a 503 while it loads (or after loading failed, or while stopping). */
  requireEngine(): ServerEngine {
    if (this.status === "ready" && this.engine) return this.engine;
    if (this.status === "loading") {
      this.metrics.rejected.inc({ reason: "loading" });
      throw new HttpError("loading", "the model is loading; retry shortly", { retryAfterSeconds: 2 });
    }
    if (this.status === "stopping") throw new HttpError("closed", "the server is shutting down", { retryAfterSeconds: 5 });
    throw new HttpError("unavailable", `the model failed to load: ${this.loadError?.message ?? "unknown error"}`);
  }

  /** The default adapter in effect now (null: the base model; undefined: none, a request must choose). */
  currentDefault(engine: ServerEngine): string | null | undefined {
    const names = engine.adapterNames();
    if (this.defaultAdapter === null) return null;
    if (this.defaultAdapter !== undefined && names.includes(this.defaultAdapter)) return this.defaultAdapter;
    if (names.length === 0) return null;
    if (names.length === 1) return names[0];
    return undefined;
  }

  /** The adapter a request gets: its own choice (checked), else the default; 404/400 naming `field`. */
  resolveAdapter(engine: ServerEngine, requested: string | null | undefined, field = "body/adapter"): string | null {
    const names = engine.adapterNames();
    if (requested === null) return null;
    if (requested !== undefined) {
      if (!names.includes(requested)) {
        throw new HttpError("unknown_adapter", `${field}: no adapter named ${JSON.stringify(requested)} is loaded (loaded: ${names.map((n) => JSON.stringify(n)).join(", ") || "none"})`);
      }
      return requested;
    }
    const d = this.currentDefault(engine);
    if (d === undefined) throw new HttpError("adapter_required", `${field} is required: several adapters are loaded (${names.join(", ")}) and none is the default`);
    return d;
  }

  /**
   * Scores prompts through the engine's scheduler and waits for their results, within the request
   * timeout; `signal` aborts when the client disconnects. Refusals keep their codes (src/errors.ts)
   * and become HTTP errors in one place ({@link HttpError.from}): queue_full 429 with Retry-After,
   * timeout and closed 503, aborted 499; too_many_items 413 for more prompts than the whole queue holds.
   */
  async score(prompts: PromptInput[], group: ScoreGroup, options: { signal?: AbortSignal; atomic?: boolean } = {}): Promise<{ outcomes: ItemOutcome[]; usage: Usage }> {
    const engine = this.requireEngine();
    if (prompts.length > this.limits.maxQueue) {
      // could never be queued: not a reason to retry
      throw new HttpError("too_many_items", `the request has ${prompts.length} prompts but the queue holds at most ${this.limits.maxQueue}`);
    }
    const ac = new AbortController();
    const timer = setTimeout(() => {
      const retryAfterSeconds = engine.scheduler.retryAfterSeconds();
      ac.abort(new TallrecError("timeout", `the request timed out after ${this.limits.timeoutMs} ms (the server is overloaded); retry later`, { retryAfterSeconds }));
    }, this.limits.timeoutMs);
    const onClientAbort = () => ac.abort(new TallrecError("aborted", "the client closed the connection"));
    if (options.signal?.aborted) onClientAbort();
    options.signal?.addEventListener("abort", onClientAbort, { once: true });
    try {
      const { results, stats } = await engine.scoreWithStats(prompts, { adapter: group.adapter, scoring: group.scoring, signal: ac.signal, atomic: options.atomic });
      this.metrics.queueWaitSeconds.observe(stats.queuedMs / 1000);
      return this.account(results, stats);
    } catch (err) {
      const code = codeOf(err);
      const reason = code === "queue_full" ? "queue_full" : code === "timeout" ? "timeout" : code === "aborted" ? "disconnected" : null;
      if (reason) this.metrics.rejected.inc({ reason });
      if (code === "closed") throw new HttpError("closed", "the server is shutting down", { retryAfterSeconds: 5 });
      if (code === "queue_full") {
        const e = err as TallrecError;
        throw new HttpError("queue_full", `${e.message}; retry after ${e.retryAfterSeconds} s`, { retryAfterSeconds: e.retryAfterSeconds });
      }
      if (code === "unknown_adapter") throw new HttpError("unknown_adapter", `body/adapter: ${(err as Error).message}`);
      // anything else keeps its code; an unexpected error goes to the app's handler as it is (logged, answered with the request id)
      throw code === "internal" ? err : HttpError.from(err);
    } finally {
      clearTimeout(timer);
      options.signal?.removeEventListener("abort", onClientAbort);
    }
  }

  /** A call's results with each prompt's share of the tokens evaluated, and its usage; counts its failed items. */
  private account(results: ScoreResult[], stats: ScoreStats): { outcomes: ItemOutcome[]; usage: Usage } {
    const tokens = stats.promptTokens; // the tokens of the scored prompts
    const decoded = Math.min(stats.decodedTokens, tokens);
    let ok = 0;
    const outcomes = results.map((r) => {
      if (r.error !== undefined) return { result: r, evaluated: 0 };
      ok++;
      return { result: r, evaluated: tokens > 0 ? (decoded * r.tokens) / tokens : 0 };
    });
    this.metrics.promptErrors.inc(results.length - ok);
    return { outcomes, usage: { prompts: ok, tokens, tokensEvaluated: decoded, tokensSaved: tokens - decoded } };
  }

  /**
   * A batch of the engine's scheduler, as it finishes: its size, wait and time, and the prompts it
   * scored (whoever asked: the routes, Chat-REC), with the tokens it evaluated and saved.
   */
  private recordBatch(info: BatchInfo<EngineScoreGroup>): void {
    const m = this.metrics;
    m.batchPrompts.observe(info.items);
    m.batchRequests.observe(info.jobs);
    m.batchSeconds.observe(info.runMs / 1000);
    if (!info.results) return;
    let ok = 0;
    let tokens = 0;
    let evaluated = 0;
    for (const o of info.results as readonly EngineItemOutcome[]) {
      if (o.result.error !== undefined) continue;
      ok++;
      tokens += o.result.tokens;
      evaluated += o.evaluated;
    }
    const decoded = Math.min(tokens, Math.round(evaluated));
    m.prompts.inc({ adapter: info.group.adapters.names.join("+") || "(base)" }, ok);
    m.promptTokens.inc(tokens);
    m.tokensEvaluated.inc(decoded);
    m.tokensSaved.inc(tokens - decoded);
  }

  /** Detaches from the engine's scheduler (the server is closing). */
  detach(): void {
    this.removeListener?.();
    this.removeListener = null;
  }
}
