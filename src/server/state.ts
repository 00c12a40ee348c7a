/**
 * What the routes share: the engine (once loaded), the batcher in front of it, metrics, limits,
 * and the adapter rules.
 */
import type { Engine, ScoreResult } from "../engine/engine.js";
import type { PromptInput } from "../engine/prompt.js";
import type { ScoringRule } from "../engine/scoring.js";
import { Batcher, BatcherClosedError, QueueFullError, type BatchInfo } from "../engine/scheduler.js";
import { HttpError } from "./errors.js";
import type { ServerMetrics } from "./metrics.js";

/** The engine methods the server uses (an {@link Engine}, or a stand-in with the same behaviour). */
export type ServerEngine = Pick<Engine, "score" | "stats" | "info" | "adapterNames" | "loadAdapter" | "unloadAdapter" | "close">;

/** Which prompts may share an engine call: same adapter and scoring rule. */
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

/** Why a request's work was abandoned (the abort reason the routes use). */
export class Abandoned extends Error {
  constructor(readonly reason: "timeout" | "disconnected") {
    super(reason === "timeout" ? "timed out" : "the client disconnected");
  }
}

function groupKey(g: ScoreGroup): string {
  return `${g.scoring}\u0000${g.adapter === null ? "\u0001" : g.adapter}`;
}

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
  readonly batcher: Batcher<PromptInput, ItemOutcome, ScoreGroup>;

  constructor(
    readonly limits: ServerLimits,
    readonly metrics: ServerMetrics,
    /** The model's name in responses (default: the model's description). */
    public modelName: string,
    /** The adapter used when a request names none (undefined: the only adapter, when one is loaded). */
    public defaultAdapter: string | null | undefined,
    /** Folder runtime adapter loading is restricted to (null: runtime loading disabled). */
    readonly modelsDir: string | null,
  ) {
    this.batcher = new Batcher<PromptInput, ItemOutcome, ScoreGroup>({
      run: (group, items) => this.runBatch(group, items),
      maxBatch: limits.maxBatch,
      maxWaitMs: limits.batchWaitMs,
      maxQueue: limits.maxQueue,
      groupKey,
      onBatch: (info) => this.recordBatch(info),
    });
  }

  /** Marks the engine as loaded. */
  setEngine(engine: ServerEngine): void {
    this.engine = engine;
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
      throw new HttpError(503, "the model is loading; retry shortly", "TALLREC_LOADING", { "retry-after": "2" });
    }
    if (this.status === "stopping") throw new HttpError(503, "the server is shutting down", "TALLREC_STOPPING", { "retry-after": "5" });
    throw new HttpError(503, `the model failed to load: ${this.loadError?.message ?? "unknown error"}`, "TALLREC_LOAD_FAILED");
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
        throw new HttpError(404, `${field}: no adapter named ${JSON.stringify(requested)} is loaded (loaded: ${names.map((n) => JSON.stringify(n)).join(", ") || "none"})`, "TALLREC_UNKNOWN_ADAPTER");
      }
      return requested;
    }
    const d = this.currentDefault(engine);
    if (d === undefined) throw new HttpError(400, `${field} is required: several adapters are loaded (${names.join(", ")}) and none is the default`, "TALLREC_ADAPTER_REQUIRED");
    return d;
  }

  /**
   * Queues prompts for scoring and waits for their results, within the request timeout; `signal`
   * aborts when the client disconnects. Maps the batcher's refusals to HTTP errors: 429 (queue
   * full, with Retry-After), 503 (timeout or shutting down), 499 (client gone); 413 for more
   * prompts than the whole queue holds.
   */
  async score(prompts: PromptInput[], group: ScoreGroup, options: { signal?: AbortSignal; atomic?: boolean } = {}): Promise<{ outcomes: ItemOutcome[]; usage: Usage }> {
    if (prompts.length > this.limits.maxQueue) {
      // could never be queued: not a reason to retry
      throw new HttpError(413, `the request has ${prompts.length} prompts but the queue holds at most ${this.limits.maxQueue}`, "TALLREC_TOO_MANY_ITEMS");
    }
    const ac = new AbortController();
    const timer = setTimeout(() => ac.abort(new Abandoned("timeout")), this.limits.timeoutMs);
    const onClientAbort = () => ac.abort(new Abandoned("disconnected"));
    if (options.signal?.aborted) onClientAbort();
    options.signal?.addEventListener("abort", onClientAbort, { once: true });
    try {
      const job = await this.batcher.submit(prompts, { group, signal: ac.signal, atomic: options.atomic });
      this.metrics.queueWaitSeconds.observe(job.queuedMs / 1000);
      return { outcomes: job.results, usage: usageOf(job.results) };
    } catch (err) {
      if (err instanceof QueueFullError) {
        this.metrics.rejected.inc({ reason: "queue_full" });
        throw new HttpError(429, `${err.message}; retry after ${err.retryAfterSeconds} s`, "TALLREC_QUEUE_FULL", { "retry-after": String(err.retryAfterSeconds) });
      }
      if (err instanceof BatcherClosedError) throw new HttpError(503, "the server is shutting down", "TALLREC_STOPPING", { "retry-after": "5" });
      if (err instanceof Abandoned) {
        if (err.reason === "timeout") {
          this.metrics.rejected.inc({ reason: "timeout" });
          const retry = String(this.batcher.retryAfterSeconds());
          throw new HttpError(503, `the request timed out after ${this.limits.timeoutMs} ms (the server is overloaded); retry later`, "TALLREC_TIMEOUT", { "retry-after": retry });
        }
        this.metrics.rejected.inc({ reason: "disconnected" });
        throw new HttpError(499, "the client closed the connection", "TALLREC_CLIENT_GONE");
      }
      throw err;
    } finally {
      clearTimeout(timer);
      options.signal?.removeEventListener("abort", onClientAbort);
    }
  }

  /** One engine call for a batch; splits the evaluated tokens among the prompts. */
  private async runBatch(group: ScoreGroup, prompts: PromptInput[]): Promise<ItemOutcome[]> {
    const engine = this.requireEngine();
    if (group.adapter !== null && !engine.adapterNames().includes(group.adapter)) {
      throw new HttpError(404, `body/adapter: the adapter ${JSON.stringify(group.adapter)} was unloaded while the request was queued`, "TALLREC_UNKNOWN_ADAPTER");
    }
    const results = await engine.score(prompts, { adapter: group.adapter, scoring: group.scoring });
    // the batcher is the engine's only caller and runs one call at a time: these are this call's stats
    const stats = engine.stats;
    const scoredTokens = results.reduce((s, r) => s + (r.error === undefined ? r.tokens : 0), 0);
    const decoded = stats?.decodedTokens ?? scoredTokens;
    let ok = 0;
    const outcomes = results.map((r) => {
      if (r.error !== undefined) return { result: r, evaluated: 0 };
      ok++;
      return { result: r, evaluated: scoredTokens > 0 ? (decoded * r.tokens) / scoredTokens : 0 };
    });
    const m = this.metrics;
    m.prompts.inc({ adapter: group.adapter ?? "(base)" }, ok);
    m.promptErrors.inc(results.length - ok);
    m.promptTokens.inc(scoredTokens);
    m.tokensEvaluated.inc(decoded);
    m.tokensSaved.inc(Math.max(0, scoredTokens - decoded));
    return outcomes;
  }

  private recordBatch(info: BatchInfo<ScoreGroup>): void {
    this.metrics.batchPrompts.observe(info.items);
    this.metrics.batchRequests.observe(info.jobs);
    this.metrics.batchSeconds.observe(info.runMs / 1000);
  }
}

/** Sums a request's outcomes into its usage (evaluated tokens rounded to whole tokens). */
export function usageOf(outcomes: readonly ItemOutcome[]): Usage {
  let prompts = 0;
  let tokens = 0;
  let evaluated = 0;
  for (const o of outcomes) {
    if (o.result.error !== undefined) continue;
    prompts++;
    tokens += o.result.tokens;
    evaluated += o.evaluated;
  }
  const tokensEvaluated = Math.min(tokens, Math.round(evaluated));
  return { prompts, tokens, tokensEvaluated, tokensSaved: tokens - tokensEvaluated };
}
