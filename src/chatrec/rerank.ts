/**
 * Re-ranking a user's candidates with the TALLRec scorer: each candidate becomes a TALLRec prompt
 * (the user's history, then the candidate as the target), all of a user's prompts go to the
 * engine in one call (the shared history is evaluated once), and the candidates are sorted by
 * pYes, or by a blend with the recommender's score:
 *
 *     score = alpha · z(recScore) + (1 − alpha) · z(llm) + hintWeight · hint
 *
 * where `z` standardises over the user's candidates (mean 0, standard deviation 1; all zeros when
 * the values are all equal), `llm` is the log-odds of pYes (`logitYes − logitNo` under the
 * softmax rule), and `hint` is a re-ranking hint from the request (e.g. +1 for a candidate in a
 * wanted genre). With `alpha = 0` and no hints the order is pYes, descending, exactly.
 * Ties always fall back to the candidates' input order (the recommender's ranking).
 *
 * @module
 */
import type { AdapterSelection, ScoreInput, ScoreOptions, ScoreResult } from "../engine/engine.js";
import type { Domain } from "../engine/prompt.js";
import type { ScoringRule } from "../engine/scoring.js";
import { ChatRecError } from "./errors.js";
import { tallrecPrompt, type TitledHistory } from "./history.js";

/** What the re-ranker needs from an engine: `Engine.score`. */
export interface Scorer {
  score(inputs: readonly ScoreInput[], options?: ScoreOptions): Promise<ScoreResult[]>;
}

/** A candidate from the recommender. */
export interface RerankCandidate {
  /** Item id. */
  item: string;
  /** Title used as the TALLRec target. */
  title: string;
  /** The recommender's score; NaN when the item has none (a cold-start candidate): its z is then 0. */
  recScore: number;
  /** Re-ranking hint from the request (e.g. 1 for a wanted genre); default 0. */
  hint?: number;
}

/** A scored candidate. */
export interface RankedCandidate extends RerankCandidate {
  /** 1-based rank after re-ranking. */
  rank: number;
  pYes: number;
  logitYes: number;
  logitNo: number;
  /** Log-odds of pYes (the LLM's score on the logit scale). */
  llmScore: number;
  /** The blended score the list is sorted by (see the module comment). */
  score: number;
}

/** A candidate the engine could not score (e.g. a prompt longer than the context). */
export interface FailedCandidate extends RerankCandidate {
  error: string;
}

/** Options of {@link rerank}. */
export interface RerankOptions {
  /** Weight of the recommender's score in [0, 1] (default 0: TALLRec alone). */
  alpha?: number;
  /** Weight of the hints, in standard deviations (default 0.5). */
  hintWeight?: number;
  /** Adapter(s) for the engine call (default: the engine's default adapter). */
  adapter?: AdapterSelection;
  /** Scoring rule (default "softmax"). */
  scoring?: ScoringRule;
  /** Domain of the TALLRec prompt (default "movie"). */
  domain?: Domain;
  signal?: AbortSignal;
}

/** Result of {@link rerank}. */
export interface RerankResult {
  /** The scored candidates, best first. */
  ranked: RankedCandidate[];
  /** Candidates that could not be scored, in input order. */
  failed: FailedCandidate[];
}

/** Standard scores of `xs` (NaN entries get 0 and do not count); all zeros when there is no spread. */
export function zScores(xs: readonly number[]): number[] {
  const ok = xs.filter((x) => Number.isFinite(x));
  if (ok.length === 0) return xs.map(() => 0);
  const mean = ok.reduce((s, x) => s + x, 0) / ok.length;
  const sd = Math.sqrt(ok.reduce((s, x) => s + (x - mean) ** 2, 0) / ok.length);
  return xs.map((x) => (Number.isFinite(x) && sd > 0 ? (x - mean) / sd : 0));
}

/** Log-odds of a probability, clamped so that 0 and 1 stay finite. */
export function logOdds(p: number): number {
  const q = Math.min(Math.max(p, 1e-15), 1 - 1e-15);
  return Math.log(q) - Math.log1p(-q);
}

function checkAlpha(alpha: number): void {
  if (typeof alpha !== "number" || !(alpha >= 0 && alpha <= 1)) throw new ChatRecError("invalid_input", `alpha must be a number in [0, 1], not ${alpha}`);
}

/**
 * Orders scored candidates (see the module comment). Pure: exported for tests and for callers
 * that score elsewhere.
 */
export function orderCandidates(
  scored: ReadonlyArray<RerankCandidate & { pYes: number; logitYes: number; logitNo: number }>,
  options: { alpha?: number; hintWeight?: number; scoring?: ScoringRule } = {},
): RankedCandidate[] {
  const alpha = options.alpha ?? 0;
  checkAlpha(alpha);
  const hintWeight = options.hintWeight ?? 0.5;
  const llm = scored.map((c) => (options.scoring === "tallrec-compat" ? logOdds(c.pYes) : c.logitYes - c.logitNo));
  const zRec = zScores(scored.map((c) => c.recScore));
  const zLlm = zScores(llm);
  const hinted = scored.some((c) => (c.hint ?? 0) !== 0);
  const byPYes = alpha === 0 && !hinted;
  const rows = scored.map((c, i) => ({
    c,
    i,
    llmScore: llm[i],
    score: byPYes ? c.pYes : alpha * zRec[i] + (1 - alpha) * zLlm[i] + hintWeight * (c.hint ?? 0),
  }));
  rows.sort((a, b) => b.score - a.score || a.i - b.i);
  return rows.map((r, k) => ({ ...r.c, rank: k + 1, llmScore: r.llmScore, score: r.score }));
}

/** One user's candidates for {@link rerankMany}. */
export interface RerankRequest {
  history: TitledHistory;
  candidates: readonly RerankCandidate[];
}

/**
 * Re-ranks several users' candidates with one engine call (prompts of the same user share their
 * history prefix; identical prompts are scored once).
 */
export async function rerankMany(scorer: Scorer, requests: readonly RerankRequest[], options: RerankOptions = {}): Promise<RerankResult[]> {
  checkAlpha(options.alpha ?? 0);
  const prompts: ScoreInput[] = [];
  for (const r of requests) for (const c of r.candidates) prompts.push(tallrecPrompt(r.history, c.title, options.domain ?? "movie"));
  const results = prompts.length === 0 ? [] : await scorer.score(prompts, { adapter: options.adapter, scoring: options.scoring, signal: options.signal });
  let k = 0;
  return requests.map((r) => {
    const scored: Array<RerankCandidate & { pYes: number; logitYes: number; logitNo: number }> = [];
    const failed: FailedCandidate[] = [];
    for (const c of r.candidates) {
      const res = results[k++];
      if (res.error !== undefined) failed.push({ ...c, error: res.error });
      else scored.push({ ...c, pYes: res.pYes, logitYes: res.logitYes, logitNo: res.logitNo });
    }
    return { ranked: orderCandidates(scored, options), failed };
  });
}

/** Re-ranks one user's candidates (one engine call). */
export async function rerank(scorer: Scorer, history: TitledHistory, candidates: readonly RerankCandidate[], options: RerankOptions = {}): Promise<RerankResult> {
  const [r] = await rerankMany(scorer, [{ history, candidates }], options);
  return r;
}
