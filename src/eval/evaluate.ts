/**
 * Evaluating a model + adapter on labelled prompts: one scoring pass gives both scoring rules'
 * probabilities for every row, and their classification metrics (AUC, log loss, accuracy).
 * Used by `tallrec eval` and `tallrec demo`.
 *
 * @module
 */
import type { Engine, ScoreInput } from "../engine/engine.js";
import { probabilityYes, type ScoringRule } from "../engine/scoring.js";
import { summary, type MetricsSummary } from "./classification.js";

/** One labelled prompt. */
export interface LabelledExample {
  /** Row index in the input, carried to the per-row results. */
  index: number;
  label: 0 | 1;
  prompt: ScoreInput;
}

/** The scores of one example; NaN scores and `error` when the engine could not score it. */
export interface EvaluatedRow {
  index: number;
  label: number;
  /** p(Yes) by the "softmax" rule (over the two answer logits). */
  softmax: number;
  /** p(Yes) by the "tallrec-compat" rule (TALLRec's evaluate.py). */
  compat: number;
  logitYes: number;
  logitNo: number;
  error?: string;
}

/** What {@link evaluate} returns. */
export interface Evaluation {
  perRow: EvaluatedRow[];
  /** Metrics over the rows scored without error, for each scoring rule. */
  metrics: Record<ScoringRule, MetricsSummary>;
}

export interface EvaluateOptions {
  /** Adapter to use (default: the engine's default). */
  adapter?: string;
  /** Examples per engine call. */
  chunk: number;
  /** Told the number of rows done (and failed) after each chunk. */
  progress?: { update(done: number, failed: number): void };
}

/** Seeded Fisher–Yates (mulberry32), so a shuffle with the same seed is reproducible. */
export function shuffleInPlace<T>(xs: T[], seed: number): T[] {
  let s = seed >>> 0;
  const next = () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  for (let i = xs.length - 1; i > 0; i--) {
    const j = Math.floor(next() * (i + 1));
    [xs[i], xs[j]] = [xs[j], xs[i]];
  }
  return xs;
}

/** Scores examples once (tallrec-compat gives the logits and the row's log-sum-exp) and computes both rules' metrics. */
export async function evaluate(engine: Engine, examples: readonly LabelledExample[], options: EvaluateOptions): Promise<Evaluation> {
  const perRow: EvaluatedRow[] = [];
  for (let start = 0; start < examples.length; start += options.chunk) {
    const part = examples.slice(start, start + options.chunk);
    const results = await engine.score(
      part.map((e) => e.prompt),
      { adapter: options.adapter, scoring: "tallrec-compat" },
    );
    results.forEach((r, k) => {
      const e = part[k];
      if (r.error !== undefined) perRow.push({ index: e.index, label: e.label, softmax: NaN, compat: NaN, logitYes: NaN, logitNo: NaN, error: r.error });
      else perRow.push({ index: e.index, label: e.label, softmax: probabilityYes("softmax", r.logitYes, r.logitNo), compat: r.pYes, logitYes: r.logitYes, logitNo: r.logitNo });
    });
    options.progress?.update(perRow.length, perRow.filter((r) => r.error).length);
  }
  const ok = perRow.filter((r) => r.error === undefined);
  const labels = ok.map((r) => r.label);
  return {
    perRow,
    metrics: {
      softmax: summary(
        labels,
        ok.map((r) => r.softmax),
      ),
      "tallrec-compat": summary(
        labels,
        ok.map((r) => r.compat),
      ),
    },
  };
}
