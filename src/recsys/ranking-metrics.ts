/**
 * Evaluation metrics for top-k recommendation and rating prediction, and
 * drivers that evaluate a fitted model on a test split.
 *
 * Ranking metrics use **binary relevance**: an item is relevant to a user
 * iff it is in that user's held-out test set. For a ranked list
 * `L = (l_1, l_2, …)`, a relevant set `R` (non-empty) and a cut-off `K`:
 *
 * - `hits@K      = |{ r ≤ K : l_r ∈ R }|`
 * - `precision@K = hits@K / K` (K, not the list length, is the denominator)
 * - `recall@K    = hits@K / |R|`
 * - `hitRate@K   = 1` if `hits@K > 0`, else `0`
 * - `DCG@K       = Σ_{r=1..K, l_r ∈ R} 1 / log2(r + 1)`
 * - `IDCG@K      = Σ_{r=1..min(K, |R|)} 1 / log2(r + 1)`
 * - `NDCG@K      = DCG@K / IDCG@K`, in [0, 1]
 *
 * Repeated entries of `L` count once (at their first position).
 *
 * Rating metrics: `RMSE = sqrt(mean((p − a)²))`, `MAE = mean(|p − a|)`.
 *
 * @module
 */

import { type RatingPredictor, type Recommender } from "./base.js";
import { InvalidArgumentError, UnknownIdError } from "./errors.js";
import type { IdIndex, Interactions } from "./interactions.js";
import { topK } from "./topk.js";

function checkArgs<T>(ranked: ArrayLike<T>, relevant: ReadonlySet<T>, k: number): void {
  if (!(Number.isInteger(k) && k >= 1)) throw new InvalidArgumentError(`K must be a positive integer, got ${k}`);
  if (relevant.size === 0) throw new InvalidArgumentError("the relevant set is empty: ranking metrics are undefined");
  void ranked;
}

/** The 0-based ranks, among the first `k` of `ranked`, of the relevant items' first occurrences. */
function hitRanks<T>(ranked: ArrayLike<T>, relevant: ReadonlySet<T>, k: number): number[] {
  const seen = new Set<T>();
  const ranks: number[] = [];
  for (let r = 0; r < Math.min(k, ranked.length); r++) {
    const item = ranked[r];
    if (seen.has(item)) continue;
    seen.add(item);
    if (relevant.has(item)) ranks.push(r);
  }
  return ranks;
}

/** Number of distinct relevant items among the first `k` of `ranked`. */
export function hitsAtK<T>(ranked: ArrayLike<T>, relevant: ReadonlySet<T>, k: number): number {
  return hitRanks(ranked, relevant, k).length;
}

/** precision@K = hits@K / K. @throws InvalidArgumentError for K < 1 or an empty relevant set. */
export function precisionAtK<T>(ranked: ArrayLike<T>, relevant: ReadonlySet<T>, k: number): number {
  checkArgs(ranked, relevant, k);
  return hitsAtK(ranked, relevant, k) / k;
}

/** recall@K = hits@K / |R|. @throws InvalidArgumentError for K < 1 or an empty relevant set. */
export function recallAtK<T>(ranked: ArrayLike<T>, relevant: ReadonlySet<T>, k: number): number {
  checkArgs(ranked, relevant, k);
  return hitsAtK(ranked, relevant, k) / relevant.size;
}

/** hitRate@K = 1 if any of the first K is relevant, else 0. */
export function hitRateAtK<T>(ranked: ArrayLike<T>, relevant: ReadonlySet<T>, k: number): number {
  checkArgs(ranked, relevant, k);
  return hitsAtK(ranked, relevant, k) > 0 ? 1 : 0;
}

/**
 * NDCG@K with binary relevance and the log2 discount:
 * `DCG@K / IDCG@K` where `DCG@K = Σ_{r ≤ K, l_r ∈ R} 1/log2(r+1)` and
 * `IDCG@K = Σ_{r=1..min(K,|R|)} 1/log2(r+1)`.
 */
export function ndcgAtK<T>(ranked: ArrayLike<T>, relevant: ReadonlySet<T>, k: number): number {
  checkArgs(ranked, relevant, k);
  let dcg = 0;
  for (const r of hitRanks(ranked, relevant, k)) dcg += 1 / Math.log2(r + 2);
  let idcg = 0;
  for (let r = 0; r < Math.min(k, relevant.size); r++) idcg += 1 / Math.log2(r + 2);
  return dcg / idcg;
}

function checkPairs(predicted: ArrayLike<number>, actual: ArrayLike<number>): void {
  if (predicted.length !== actual.length) throw new InvalidArgumentError(`predicted (${predicted.length}) and actual (${actual.length}) differ in length`);
  if (predicted.length === 0) throw new InvalidArgumentError("no predictions: RMSE / MAE are undefined");
}

/** Root mean squared error. */
export function rmse(predicted: ArrayLike<number>, actual: ArrayLike<number>): number {
  checkPairs(predicted, actual);
  let s = 0;
  for (let k = 0; k < predicted.length; k++) s += (predicted[k] - actual[k]) ** 2;
  return Math.sqrt(s / predicted.length);
}

/** Mean absolute error. */
export function mae(predicted: ArrayLike<number>, actual: ArrayLike<number>): number {
  checkPairs(predicted, actual);
  let s = 0;
  for (let k = 0; k < predicted.length; k++) s += Math.abs(predicted[k] - actual[k]);
  return s / predicted.length;
}

/** Averages of the ranking metrics at one cut-off. */
export interface RankingMetrics {
  precision: number;
  recall: number;
  ndcg: number;
  hitRate: number;
}

/** Adds one user's precision, recall, NDCG and hit rate at each K of `ks` to `sums[K]` (to be averaged over the users). */
export function addRankingMetrics<T>(sums: Record<number, RankingMetrics>, ranked: ArrayLike<T>, relevant: ReadonlySet<T>, ks: readonly number[]): void {
  for (const k of ks) {
    const s = sums[k];
    s.precision += precisionAtK(ranked, relevant, k);
    s.recall += recallAtK(ranked, relevant, k);
    s.ndcg += ndcgAtK(ranked, relevant, k);
    s.hitRate += hitRateAtK(ranked, relevant, k);
  }
}

/** Result of {@link evaluateRanking}. */
export interface RankingReport {
  /** Model kind. */
  model: string;
  /** Users evaluated (with at least one relevant held-out item and a training history). */
  users: number;
  /** Test users left out: no relevant held-out item, no training history, or unknown to the model. */
  skippedUsers: number;
  /** The cut-offs. */
  ks: number[];
  /** Metric averages over the evaluated users, by cut-off. */
  at: Record<number, RankingMetrics>;
}

/** Options of {@link evaluateRanking}. */
export interface EvaluateRankingOptions {
  /** Only test interactions with a rating ≥ this are relevant. Default: all. */
  minRating?: number;
}

/** Maps each index of `from` to the same id's index in `to` (−1 when absent). */
function indexMap(from: IdIndex, to: IdIndex): Int32Array {
  const out = new Int32Array(from.size);
  if (from === to) {
    for (let k = 0; k < out.length; k++) out[k] = k;
    return out;
  }
  for (let k = 0; k < out.length; k++) out[k] = to.get(from.id(k)) ?? -1;
  return out;
}

/**
 * Evaluates a fitted recommender on held-out interactions.
 *
 * For each user with test interactions: the relevant set is their test items
 * (optionally only those rated ≥ `minRating`) that are not in their training
 * history; the candidates are all items except their training history (the
 * same exclusion `recommend` applies by default); the model's top
 * `max(ks)` candidates are scored with the metrics of this module. Users with
 * no relevant item or no training history are skipped. Test items unknown to
 * the model stay relevant (and can never be hit).
 *
 * `train` and `test` are matched to the model by external id, so they need not
 * share the model's id maps.
 */
export function evaluateRanking(model: Recommender, train: Interactions, test: Interactions, ks: readonly number[] = [5, 10], options: EvaluateRankingOptions = {}): RankingReport {
  if (ks.length === 0) throw new InvalidArgumentError("ks must not be empty");
  for (const k of ks) if (!(Number.isInteger(k) && k >= 1)) throw new InvalidArgumentError(`cut-offs must be positive integers, got ${k}`);
  const maxK = Math.max(...ks);
  const mUsers = model.users;
  const mItems = model.items;
  const trainUser = indexMap(train.users, mUsers);
  const trainItem = indexMap(train.items, mItems);
  const testUser = indexMap(test.users, mUsers);
  const testItem = indexMap(test.items, mItems);

  // Items unknown to the model get negative keys, shared by train and test.
  const unknownKeys = new Map<string, number>();
  const keyOf = (map: Int32Array, index: IdIndex, i: number): number => {
    if (map[i] >= 0) return map[i];
    const id = index.id(i);
    let key = unknownKeys.get(id);
    if (key === undefined) unknownKeys.set(id, (key = -1 - unknownKeys.size));
    return key;
  };

  // Training history per model user index, in model item indices.
  const history = new Map<number, Set<number>>();
  const tm = train.userItemMatrix();
  for (let u = 0; u < tm.rows; u++) {
    const mu = trainUser[u];
    if (mu < 0 || tm.indptr[u] === tm.indptr[u + 1]) continue;
    let set = history.get(mu);
    if (!set) history.set(mu, (set = new Set()));
    for (let p = tm.indptr[u]; p < tm.indptr[u + 1]; p++) set.add(keyOf(trainItem, train.items, tm.indices[p]));
  }

  // Relevant test items per test user.
  const relevantByUser = new Map<number, Set<number>>();
  const minRating = options.minRating ?? -Infinity;
  for (let row = 0; row < test.length; row++) {
    if (test.ratings[row] < minRating) continue;
    const tu = test.userIdx[row];
    const ti = test.itemIdx[row];
    let set = relevantByUser.get(tu);
    if (!set) relevantByUser.set(tu, (set = new Set()));
    set.add(keyOf(testItem, test.items, ti));
  }

  const sums: Record<number, RankingMetrics> = {};
  for (const k of ks) sums[k] = { precision: 0, recall: 0, ndcg: 0, hitRate: 0 };
  let users = 0;
  let skipped = 0;
  const testUsersWithRows = new Set<number>();
  for (let row = 0; row < test.length; row++) testUsersWithRows.add(test.userIdx[row]);
  const excluded = new Uint8Array(mItems.size);
  for (const tu of [...testUsersWithRows].sort((a, b) => a - b)) {
    const mu = testUser[tu];
    const seen = mu >= 0 ? history.get(mu) : undefined;
    const relevant = new Set<number>();
    for (const item of relevantByUser.get(tu) ?? []) if (!seen?.has(item)) relevant.add(item);
    if (mu < 0 || !seen || relevant.size === 0) {
      skipped++;
      continue;
    }
    for (const i of seen) if (i >= 0) excluded[i] = 1;
    const scores = model.scoreUserIndex(mu);
    const ranked = topK(scores, maxK, (i) => excluded[i] === 0);
    for (const i of seen) if (i >= 0) excluded[i] = 0;
    addRankingMetrics(sums, ranked, relevant, ks);
    users++;
  }
  const at: Record<number, RankingMetrics> = {};
  for (const k of ks) {
    const s = sums[k];
    at[k] = users === 0 ? { precision: 0, recall: 0, ndcg: 0, hitRate: 0 } : { precision: s.precision / users, recall: s.recall / users, ndcg: s.ndcg / users, hitRate: s.hitRate / users };
  }
  return { model: model.kind, users, skippedUsers: skipped, ks: [...ks], at };
}

/** Result of {@link evaluateRatings}. */
export interface RatingReport {
  rmse: number;
  mae: number;
  /** Test interactions predicted. */
  count: number;
  /** Test interactions whose user or item is unknown to the model. */
  skipped: number;
}

/**
 * RMSE and MAE of a rating predictor over the test interactions (matched by
 * external id). Interactions with ids unknown to the model are skipped.
 * @throws InvalidArgumentError when nothing could be predicted.
 */
export function evaluateRatings(model: RatingPredictor, test: Interactions): RatingReport {
  const pred: number[] = [];
  const actual: number[] = [];
  let skipped = 0;
  for (let row = 0; row < test.length; row++) {
    try {
      pred.push(model.predict(test.users.id(test.userIdx[row]), test.items.id(test.itemIdx[row])));
      actual.push(test.ratings[row]);
    } catch (e) {
      if (!(e instanceof UnknownIdError)) throw e;
      skipped++;
    }
  }
  return { rmse: rmse(pred, actual), mae: mae(pred, actual), count: pred.length, skipped };
}
