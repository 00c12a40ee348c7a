/**
 * Scoring rules: from the logits of the two answer tokens to the probability of "Yes".
 */
import { TallrecError } from "../errors.js";

/**
 * - `softmax`: softmax over the two answer logits, `pYes = 1 / (1 + exp(logitNo - logitYes))`.
 *   It depends only on the two logits (the principled score of a yes/no question).
 * - `tallrec-compat`: TALLRec's evaluate.py: softmax over the whole vocabulary, then a second
 *   softmax over the two resulting probabilities, `pYes = 1 / (1 + exp(pNo - pYes_vocab))`, with
 *   `p_vocab = exp(logit - logsumexp(row))`. Needs the log-sum-exp of the full logit row.
 */
export type ScoringRule = "softmax" | "tallrec-compat";

export const SCORING_RULES: readonly ScoringRule[] = ["softmax", "tallrec-compat"];

/** Numerically stable logistic function. */
export function sigmoid(x: number): number {
  if (x >= 0) return 1 / (1 + Math.exp(-x));
  const e = Math.exp(x);
  return e / (1 + e);
}

/**
 * The probability of "Yes" under `rule`; `lse` (log-sum-exp of the full logit row) is required
 * for `tallrec-compat`.
 */
export function probabilityYes(rule: ScoringRule, logitYes: number, logitNo: number, lse?: number): number {
  if (rule === "softmax") return sigmoid(logitYes - logitNo);
  if (lse === undefined || !Number.isFinite(lse)) throw new TallrecError("internal", "tallrec-compat scoring needs the log-sum-exp of the logit row");
  const pYes = Math.exp(logitYes - lse);
  const pNo = Math.exp(logitNo - lse);
  return sigmoid(pYes - pNo);
}

export function assertScoringRule(rule: unknown): asserts rule is ScoringRule {
  if (!SCORING_RULES.includes(rule as ScoringRule)) {
    throw new TallrecError("invalid_input", `scoring must be one of ${SCORING_RULES.map((r) => JSON.stringify(r)).join(", ")}, not ${JSON.stringify(rule)}`);
  }
}
