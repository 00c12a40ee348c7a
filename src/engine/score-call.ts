/**
 * One scoring call on the native context: the prompts of one batch (already tokenized), planned
 * into rounds by plan.ts and executed by native/src/scorer.cpp in one `context.run`. The executor
 * half of the planner/executor split: no queueing and no validation here (the engine and its
 * scheduler did that), only plan → run → scores.
 */
import { TallrecError, type ErrorCode } from "../errors.js";
import type { KvLayout } from "./cost.js";
import type { NativeContext, NativeLora } from "./native.js";
import { planStreams } from "./plan-streams.js";
import { plannedTokens, planScoring, type Plan } from "./plan.js";
import { probabilityYes, type ScoringRule } from "./scoring.js";

/** A scored prompt. */
export interface Score {
  pYes: number;
  logitYes: number;
  logitNo: number;
  /** Prompt length in tokens. */
  tokens: number;
  /** Log-sum-exp of the full logit row (present with scoring "tallrec-compat"). */
  logSumExp?: number;
  error?: undefined;
  code?: undefined;
}

/** A prompt that could not be scored: `code` from the error vocabulary (src/errors.ts), `error` the message. */
export interface ScoreFailure {
  error: string;
  code: ErrorCode;
  tokens?: number;
}

export type ScoreResult = Score | ScoreFailure;

/** The adapters of a call, resolved against the engine's loaded set. */
export interface ResolvedAdapters {
  names: string[];
  natives: NativeLora[];
  scales: number[];
  /** Identifies the set (ids and scales): KV contents computed under one key are reusable under the same key only. */
  key: string;
}

export interface ScoreCallSpec {
  /** A context of the layout: a unified KV cache for "unified", one KV stream per sequence for "streams". */
  context: NativeContext;
  layout: KvLayout;
  /** The plan, when the caller made it already (to cost it); else planned here. */
  plan?: Plan;
  /** The prompts' tokens (BOS included), none empty or longer than the context. */
  prompts: readonly Int32Array[];
  adapters: ResolvedAdapters;
  rule: ScoringRule;
  /** Share common prefixes (within the call, and with `resident`). */
  share: boolean;
  /** Tokens resident in the KV memory from the previous call under the same adapter key. */
  resident: Int32Array;
  /** KV cells one round may span (see roundBudget). */
  roundCells: number;
  answerTokens: { yes: number; no: number };
}

/** Plans a call for a layout on a context of that layout. */
export function planFor(layout: KvLayout, context: NativeContext, prompts: readonly Int32Array[], o: { share: boolean; resident: Int32Array; roundCells: number }): Plan {
  const c = context.info();
  // (both planners ignore `resident` without sharing)
  if (layout === "streams") return planStreams(prompts, { streams: c.nSeqMax, streamCells: c.nCtxSeq, nBatch: c.nBatch }, o);
  return planScoring(prompts, { nCtx: c.nCtx, nBatch: c.nBatch, nSeqMax: c.nSeqMax, roundCells: o.roundCells }, o);
}

/** What a call did, for statistics. */
export interface ScoreCallStats {
  promptTokens: number;
  decodedTokens: number;
  reusedTokens: number;
  decodeCalls: number;
  /** Of decodedTokens, those decoded only to keep micro-batches full (the streams layout). */
  paddingTokens: number;
}

export class ScoreCall {
  constructor(private readonly spec: ScoreCallSpec) {}

  /** Plans and runs the call; `onAbort` is wired to the context's abort while the native call runs. */
  async run(signal?: AbortSignal): Promise<{ results: ScoreResult[]; stats: ScoreCallStats; residentAfter: Int32Array }> {
    const { context, layout, prompts, adapters, rule, share, resident, roundCells, answerTokens } = this.spec;
    const plan = this.spec.plan ?? planFor(layout, context, prompts, { share, resident, roundCells });
    signal?.throwIfAborted();
    const onAbort = () => context.abort();
    signal?.addEventListener("abort", onAbort, { once: true });
    let out;
    try {
      out = await context.run({
        ...plannedTokens(plan),
        adapters: adapters.natives,
        scales: Float32Array.from(adapters.scales),
        targets: Int32Array.of(answerTokens.yes, answerTokens.no),
        lse: rule === "tallrec-compat",
      });
    } catch (err) {
      if (signal?.aborted) throw new TallrecError("aborted", "the call was cancelled", { cause: err });
      throw err;
    } finally {
      signal?.removeEventListener("abort", onAbort);
    }
    const results = prompts.map((tokens, k): ScoreResult => {
      const slot = plan.outputOf[k];
      const logitYes = out.values[slot * 2];
      const logitNo = out.values[slot * 2 + 1];
      const lse = out.lse ? out.lse[slot] : undefined;
      const pYes = probabilityYes(rule, logitYes, logitNo, lse);
      if (!Number.isFinite(logitYes) || !Number.isFinite(logitNo) || !Number.isFinite(pYes) || (lse !== undefined && !Number.isFinite(lse))) {
        // an overflow in the model or an adapter: an error, never a null score
        return {
          error: `the model computed non-finite logits (yes ${logitYes}, no ${logitNo}${lse !== undefined ? `, log-sum-exp ${lse}` : ""}): the weights or the adapter scale overflow`,
          code: "non_finite",
          tokens: tokens.length,
        };
      }
      const r: Score = { pYes, logitYes, logitNo, tokens: tokens.length };
      if (lse !== undefined) r.logSumExp = lse;
      return r;
    });
    return {
      results,
      stats: { promptTokens: plan.stats.promptTokens, decodedTokens: plan.stats.decodedTokens, reusedTokens: plan.stats.reusedTokens, decodeCalls: out.decodeCalls, paddingTokens: plan.stats.paddingTokens ?? 0 },
      residentAfter: plan.residentAfter,
    };
  }
}
