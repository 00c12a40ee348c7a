/**
 * Binary classification metrics for `tallrec eval` (CTR-style: label 1 =
 * the user likes the item, score = p_yes).
 *
 * - {@link auc}: ROC AUC, equal to scikit-learn's `roc_auc_score` including
 *   ties: the Mann–Whitney statistic, the probability that a random positive
 *   scores higher than a random negative, a tie counting one half (the same
 *   as the rank-sum formula with average ranks, and as the trapezoidal area
 *   under the ROC curve). O(n log n). When only one class is present (or the
 *   input is empty) AUC is undefined and **NaN is returned** (scikit-learn
 *   raises); {@link summary} reports it the same way.
 * - {@link logLoss}: mean binary cross-entropy in nats, with probabilities
 *   clipped to `[eps, 1 − eps]`, `eps = 1e-15` by default (scikit-learn's
 *   historical default; scikit-learn ≥ 1.5 clips with the dtype's machine
 *   epsilon, 2.220446049250313e-16 for float64: pass that to match it).
 * - {@link accuracy}: fraction of correct predictions, predicting 1 when
 *   `score > threshold` (strictly; 0.5 by default), as scikit-learn's
 *   LogisticRegression.predict and Keras do. For p_yes this means "Yes" only
 *   when it is more likely than "No".
 *
 * Labels must be 0 or 1; scores must not be NaN (±Infinity is fine for
 * AUC and accuracy); probabilities for log loss must lie in [0, 1]. Inputs
 * that break these rules throw a `RangeError` naming the offending index.
 *
 * @module
 */

function checkLengths(labels: ArrayLike<number>, scores: ArrayLike<number>): void {
  if (labels.length !== scores.length) {
    throw new RangeError(`labels and scores differ in length (${labels.length} vs ${scores.length})`);
  }
}

function checkLabel(y: number, i: number): void {
  if (y !== 0 && y !== 1) throw new RangeError(`labels[${i}] = ${y}: labels must be 0 or 1`);
}

function checkScore(s: number, i: number): void {
  if (typeof s !== "number" || Number.isNaN(s)) throw new RangeError(`scores[${i}] is ${s}: scores must be numbers, not NaN`);
}

/**
 * ROC AUC with ties counted one half (see the module documentation).
 * Returns NaN when there are no positives or no negatives.
 */
export function auc(labels: ArrayLike<number>, scores: ArrayLike<number>): number {
  checkLengths(labels, scores);
  const n = labels.length;
  let nPos = 0;
  for (let i = 0; i < n; i++) {
    checkLabel(labels[i], i);
    checkScore(scores[i], i);
    nPos += labels[i];
  }
  const nNeg = n - nPos;
  if (nPos === 0 || nNeg === 0) return NaN;
  const pos = new Float64Array(nPos);
  const neg = new Float64Array(nNeg);
  for (let i = 0, p = 0, q = 0; i < n; i++) {
    if (labels[i] === 1) pos[p++] = scores[i];
    else neg[q++] = scores[i];
  }
  pos.sort();
  neg.sort();
  // Walk the distinct positive scores upwards. For a group of cp positives
  // scoring v, with `below` negatives scoring < v and `ties` scoring == v,
  // the group wins cp*below pairs and ties cp*ties pairs. Counting twice the
  // statistic keeps the sum an exact integer (below 2^53 up to ~6.7e7 of each class).
  let twiceU = 0;
  let j = 0;
  for (let i = 0; i < nPos;) {
    const v = pos[i];
    while (j < nNeg && neg[j] < v) j++;
    let k = j;
    while (k < nNeg && neg[k] === v) k++;
    let m = i;
    while (m < nPos && pos[m] === v) m++;
    twiceU += (m - i) * (2 * j + (k - j));
    i = m;
  }
  return twiceU / (2 * nPos * nNeg);
}

/** Default clipping for {@link logLoss}. */
export const LOG_LOSS_EPS = 1e-15;

/**
 * Mean binary log loss (natural log) of probabilities `probs` for labels,
 * clipping each probability to `[eps, 1 − eps]`. NaN for empty input.
 */
export function logLoss(labels: ArrayLike<number>, probs: ArrayLike<number>, eps: number = LOG_LOSS_EPS): number {
  checkLengths(labels, probs);
  if (!(eps >= 0 && eps < 0.5)) throw new RangeError(`eps must be in [0, 0.5), got ${eps}`);
  const n = labels.length;
  if (n === 0) return NaN;
  let sum = 0;
  for (let i = 0; i < n; i++) {
    const y = labels[i];
    checkLabel(y, i);
    let p = probs[i];
    checkScore(p, i);
    if (p < 0 || p > 1) throw new RangeError(`probs[${i}] = ${p}: probabilities must be in [0, 1]`);
    p = Math.min(Math.max(p, eps), 1 - eps);
    sum -= y === 1 ? Math.log(p) : Math.log(1 - p);
  }
  return sum / n;
}

/** Fraction of correct predictions, predicting 1 when `score > threshold`. NaN for empty input. */
export function accuracy(labels: ArrayLike<number>, scores: ArrayLike<number>, threshold = 0.5): number {
  const c = confusion(labels, scores, threshold);
  const n = c.tp + c.fp + c.tn + c.fn;
  return n === 0 ? NaN : (c.tp + c.tn) / n;
}

/** Confusion counts, predicting 1 when `score > threshold`. */
export interface Confusion {
  tp: number;
  fp: number;
  tn: number;
  fn: number;
}

/** Confusion counts at `threshold` (predict 1 when `score > threshold`). */
export function confusion(labels: ArrayLike<number>, scores: ArrayLike<number>, threshold = 0.5): Confusion {
  checkLengths(labels, scores);
  if (Number.isNaN(threshold)) throw new RangeError("threshold is NaN");
  const c: Confusion = { tp: 0, fp: 0, tn: 0, fn: 0 };
  for (let i = 0; i < labels.length; i++) {
    const y = labels[i];
    checkLabel(y, i);
    checkScore(scores[i], i);
    const pred = scores[i] > threshold;
    if (pred) {
      if (y === 1) c.tp++;
      else c.fp++;
    } else if (y === 1) c.fn++;
    else c.tn++;
  }
  return c;
}

export interface SummaryOptions {
  /** Decision threshold for accuracy and the confusion counts. Default 0.5. */
  threshold?: number;
  /** Log-loss clipping. Default 1e-15. */
  eps?: number;
}

export interface MetricsSummary extends Confusion {
  /** Number of examples. */
  n: number;
  positives: number;
  negatives: number;
  /** ROC AUC (NaN with a single class). */
  auc: number;
  /** Mean log loss, or NaN when some score is not a probability in [0, 1] (or n = 0). */
  logLoss: number;
  /** Accuracy at `threshold`. */
  accuracy: number;
  threshold: number;
  /** tp / (tp + fp); NaN when nothing is predicted positive. */
  precision: number;
  /** tp / (tp + fn); NaN without positives. */
  recall: number;
  /** Harmonic mean of precision and recall; NaN when either is NaN, 0 when both are 0. */
  f1: number;
  /** Mean score. */
  meanScore: number;
}

/** All metrics at once, with counts. Throws on the same bad input as {@link auc}. */
export function summary(labels: ArrayLike<number>, scores: ArrayLike<number>, options: SummaryOptions = {}): MetricsSummary {
  const threshold = options.threshold ?? 0.5;
  const a = auc(labels, scores); // validates labels and scores
  const c = confusion(labels, scores, threshold);
  const n = labels.length;
  let positives = 0;
  let sum = 0;
  let probabilities = true;
  for (let i = 0; i < n; i++) {
    positives += labels[i];
    sum += scores[i];
    if (!(scores[i] >= 0 && scores[i] <= 1)) probabilities = false;
  }
  const precision = c.tp + c.fp === 0 ? NaN : c.tp / (c.tp + c.fp);
  const recall = positives === 0 ? NaN : c.tp / positives;
  const f1 = Number.isNaN(precision) || Number.isNaN(recall) ? NaN : precision + recall === 0 ? 0 : (2 * precision * recall) / (precision + recall);
  return {
    n,
    positives,
    negatives: n - positives,
    auc: a,
    logLoss: probabilities ? logLoss(labels, scores, options.eps ?? LOG_LOSS_EPS) : NaN,
    accuracy: n === 0 ? NaN : (c.tp + c.tn) / n,
    threshold,
    ...c,
    precision,
    recall,
    f1,
    meanScore: n === 0 ? NaN : sum / n,
  };
}
