/**
 * Item-based kNN rating prediction with item means ("KNNWithMeans", Sarwar et al. 2001), the
 * classic kNN rating baseline Chat-REC compares with:
 *
 *     r̂(u, i) = μ_i + Σ_j sim(i, j) · (r_uj − μ_j) / Σ_j |sim(i, j)|
 *
 * over the `k` items j rated by u most similar to i (positive similarities only), where μ_i is
 * item i's mean training rating and sim is the Pearson correlation of the two items' centred
 * ratings over their common users, shrunk by `n / (n + shrinkage)` (n common users). An item with
 * no usable neighbour falls back to μ_i, an item without training ratings to the global mean.
 * Predictions are clamped to the training ratings' range.
 *
 * Training accumulates every pair of items rated by the same user into dense item × item arrays
 * (3 · items² floats: 34 MB for MovieLens-100K's 1682 items), well under a second there.
 *
 * @module
 */
import type { RatingPredictor } from "../recsys/base.js";
import { InvalidArgumentError } from "../recsys/errors.js";
import type { Id, IdIndex, Interactions } from "../recsys/interactions.js";

/** Options of {@link ItemKnnRatingPredictor}. */
export interface ItemKnnRatingOptions {
  /** Neighbours per prediction (default 40). */
  k?: number;
  /** Shrinkage of the similarity towards 0 for few common users (default 100). */
  shrinkage?: number;
}

/** Item-based kNN rating predictor (see the module comment). */
export class ItemKnnRatingPredictor implements RatingPredictor {
  readonly k: number;
  readonly shrinkage: number;
  private users!: IdIndex;
  private items!: IdIndex;
  private indptr!: Int32Array;
  private indices!: Int32Array;
  private values!: Float32Array;
  private itemMean!: Float64Array;
  private itemCount!: Int32Array;
  private sim!: Float32Array;
  private globalMean = 0;
  private lo = 0;
  private hi = 0;

  constructor(options: ItemKnnRatingOptions = {}) {
    this.k = options.k ?? 40;
    this.shrinkage = options.shrinkage ?? 100;
    if (!Number.isInteger(this.k) || this.k < 1) throw new InvalidArgumentError(`k must be a positive integer, got ${this.k}`);
    if (!(this.shrinkage >= 0)) throw new InvalidArgumentError(`shrinkage must be >= 0, got ${this.shrinkage}`);
  }

  /** Trains on explicit ratings. */
  fit(train: Interactions): this {
    if (train.length === 0) throw new InvalidArgumentError("cannot fit on an empty training set");
    const m = train.userItemMatrix();
    const nItems = m.cols;
    this.users = train.users;
    this.items = train.items;
    this.indptr = m.indptr;
    this.indices = m.indices;
    this.values = m.values;
    const sum = new Float64Array(nItems);
    const count = new Int32Array(nItems);
    let total = 0;
    this.lo = Infinity;
    this.hi = -Infinity;
    for (let p = 0; p < m.indices.length; p++) {
      sum[m.indices[p]] += m.values[p];
      count[m.indices[p]]++;
      total += m.values[p];
      this.lo = Math.min(this.lo, m.values[p]);
      this.hi = Math.max(this.hi, m.values[p]);
    }
    this.globalMean = total / m.indices.length;
    this.itemMean = new Float64Array(nItems);
    for (let i = 0; i < nItems; i++) this.itemMean[i] = count[i] > 0 ? sum[i] / count[i] : this.globalMean;
    this.itemCount = count;
    // pairwise sums over common users: Σ d_i d_j, Σ d_i², and the count (d = rating − item mean)
    const n2 = nItems * nItems;
    const dot = new Float32Array(n2);
    const sq = new Float32Array(n2);
    const common = new Float32Array(n2);
    const d = new Float64Array(nItems);
    for (let u = 0; u < m.rows; u++) {
      const a = m.indptr[u];
      const b = m.indptr[u + 1];
      for (let p = a; p < b; p++) d[m.indices[p]] = m.values[p] - this.itemMean[m.indices[p]];
      for (let p = a; p < b; p++) {
        const i = m.indices[p];
        const di = d[i];
        const row = i * nItems;
        for (let q = a; q < b; q++) {
          const j = m.indices[q];
          dot[row + j] += di * d[j];
          sq[row + j] += di * di;
          common[row + j]++;
        }
      }
    }
    const sim = new Float32Array(n2);
    for (let i = 0; i < nItems; i++) {
      for (let j = 0; j < nItems; j++) {
        if (i === j) continue;
        const x = i * nItems + j;
        const denom = Math.sqrt(sq[x] * sq[j * nItems + i]);
        if (common[x] < 2 || denom === 0) continue;
        sim[x] = (dot[x] / denom) * (common[x] / (common[x] + this.shrinkage));
      }
    }
    this.sim = sim;
    return this;
  }

  predictIndex(u: number, i: number): number {
    if (!this.sim) throw new InvalidArgumentError("the predictor is not fitted");
    if (this.itemCount[i] === 0) return this.clamp(this.globalMean);
    const nItems = this.items.size;
    const a = this.indptr[u];
    const b = this.indptr[u + 1];
    // the k most similar rated items (a small insertion-sorted buffer)
    const bestSim = new Float64Array(this.k);
    const bestDev = new Float64Array(this.k);
    let size = 0;
    for (let p = a; p < b; p++) {
      const j = this.indices[p];
      const s = this.sim[i * nItems + j];
      if (!(s > 0)) continue;
      if (size === this.k && s <= bestSim[size - 1]) continue;
      let pos = size < this.k ? size++ : size - 1;
      while (pos > 0 && bestSim[pos - 1] < s) {
        bestSim[pos] = bestSim[pos - 1];
        bestDev[pos] = bestDev[pos - 1];
        pos--;
      }
      bestSim[pos] = s;
      bestDev[pos] = this.values[p] - this.itemMean[j];
    }
    let num = 0;
    let den = 0;
    for (let t = 0; t < size; t++) {
      num += bestSim[t] * bestDev[t];
      den += bestSim[t];
    }
    return this.clamp(this.itemMean[i] + (den > 0 ? num / den : 0));
  }

  predict(user: Id, item: Id): number {
    return this.predictIndex(this.users.indexOf(user), this.items.indexOf(item));
  }

  private clamp(x: number): number {
    return Math.min(this.hi, Math.max(this.lo, x));
  }
}

/** The global mean rating of the training set, for every pair: the floor of rating prediction. */
export class GlobalMeanPredictor implements RatingPredictor {
  private mean = NaN;
  private users!: IdIndex;
  private items!: IdIndex;

  fit(train: Interactions): this {
    if (train.length === 0) throw new InvalidArgumentError("cannot fit on an empty training set");
    let s = 0;
    for (const r of train.ratings) s += r;
    this.mean = s / train.length;
    this.users = train.users;
    this.items = train.items;
    return this;
  }

  predictIndex(): number {
    return this.mean;
  }

  predict(user: Id, item: Id): number {
    this.users.indexOf(user);
    this.items.indexOf(item);
    return this.mean;
  }
}
