/**
 * Item-based k-nearest-neighbour collaborative filtering
 * (Sarwar et al. 2001; Deshpande & Karypis 2004).
 *
 * **Similarity.** Each item is a vector over users: `1` for an interaction
 * (`weighting: "implicit"`, the default), or the rating minus the user's mean
 * rating (`"centered"`, i.e. adjusted cosine). The similarity of items i, j
 * is their cosine, shrunk towards 0 when few users support it:
 *
 *     sim(i, j) = cos(v_i, v_j) · c_ij / (c_ij + λ)
 *
 * where `c_ij` is the number of users who interacted with both and λ is
 * `shrinkage`. Only positive similarities are kept, and only the
 * `neighbours` most similar items of each item (ties: lower item index).
 *
 * **Scoring.** A user's score for item i sums the similarities from the
 * items j in their history that have i among their neighbours:
 * `score(u, i) = Σ_{j ∈ I(u), i ∈ N(j)} sim(j, i) · w_uj`, with `w_uj = 1`
 * (implicit) or the user's mean-centered rating of j (centered).
 *
 * Training touches every pair of items co-occurring in a user's history
 * (Σ_u |I(u)|² operations) with O(#items) scratch memory, so it does not
 * need a dense item × item matrix.
 *
 * @module
 */

import { readFile } from "node:fs/promises";
import { BaseRecommender, checkK, type ItemSimilarity, paramNumber, type Recommendation, type RecommendOptions, type SimilarOptions } from "./base.js";
import { InvalidArgumentError, ModelFileError } from "./errors.js";
import type { Id, Interactions } from "./interactions.js";
import { type StoredArray, decodeModel, requireArray } from "./model-file.js";
import { topK } from "./topk.js";

/** Options of {@link ItemKnnRecommender}. */
export interface ItemKnnOptions {
  /** Neighbours kept per item. Default 50. */
  neighbours?: number;
  /**
   * Shrinkage λ in `c / (c + λ)`; 0 (the default) disables it. On
   * MovieLens-100K validation data shrinkage did not help top-k ranking with
   * implicit cosine; it helps with sparser data or centered weighting.
   */
  shrinkage?: number;
  /** `"implicit"` (binary, default) or `"centered"` (ratings minus the user's mean). */
  weighting?: "implicit" | "centered";
}

/** Item-based kNN recommender. See the module documentation for the exact formulas. */
export class ItemKnnRecommender extends BaseRecommender implements ItemSimilarity {
  /** Model kind stored in files. */
  static readonly KIND = "item-knn";
  readonly kind = ItemKnnRecommender.KIND;
  protected readonly requiresHistory = true;
  /** Effective options. */
  readonly options: Readonly<Required<ItemKnnOptions>>;
  private nbrPtr: Int32Array = new Int32Array(1);
  private nbrIdx: Int32Array = new Int32Array(0);
  private nbrSim: Float32Array = new Float32Array(0);

  constructor(options: ItemKnnOptions = {}) {
    super();
    const o = {
      neighbours: options.neighbours ?? 50,
      shrinkage: options.shrinkage ?? 0,
      weighting: options.weighting ?? "implicit",
    };
    if (!(Number.isInteger(o.neighbours) && o.neighbours >= 1)) throw new InvalidArgumentError(`neighbours must be a positive integer, got ${o.neighbours}`);
    if (!(o.shrinkage >= 0 && Number.isFinite(o.shrinkage))) throw new InvalidArgumentError(`shrinkage must be >= 0, got ${o.shrinkage}`);
    if (o.weighting !== "implicit" && o.weighting !== "centered") throw new InvalidArgumentError(`weighting must be "implicit" or "centered", got ${String(o.weighting)}`);
    this.options = Object.freeze(o);
  }

  /** Interaction weight of each stored (user, item) entry of the training matrix. */
  private entryWeights(): Float32Array {
    const seen = this.seen;
    const w = new Float32Array(seen.values.length);
    if (this.options.weighting === "implicit") return w.fill(1);
    for (let u = 0; u < seen.rows; u++) {
      const a = seen.indptr[u];
      const b = seen.indptr[u + 1];
      if (a === b) continue;
      let sum = 0;
      for (let p = a; p < b; p++) sum += seen.values[p];
      const mean = sum / (b - a);
      for (let p = a; p < b; p++) w[p] = seen.values[p] - mean;
    }
    return w;
  }

  protected train(_train: Interactions): void {
    const seen = this.seen;
    const nItems = seen.cols;
    const w = this.entryWeights();
    // Column view (item → users) with matching weights.
    const colPtr = new Int32Array(nItems + 1);
    for (let p = 0; p < seen.indices.length; p++) colPtr[seen.indices[p] + 1]++;
    for (let i = 0; i < nItems; i++) colPtr[i + 1] += colPtr[i];
    const fill = colPtr.slice(0, nItems);
    const colUser = new Int32Array(seen.indices.length);
    const colW = new Float64Array(seen.indices.length);
    const norm = new Float64Array(nItems);
    for (let u = 0; u < seen.rows; u++) {
      for (let p = seen.indptr[u]; p < seen.indptr[u + 1]; p++) {
        const i = seen.indices[p];
        const dst = fill[i]++;
        colUser[dst] = u;
        colW[dst] = w[p];
        norm[i] += w[p] * w[p];
      }
    }
    for (let i = 0; i < nItems; i++) norm[i] = Math.sqrt(norm[i]);

    const N = this.options.neighbours;
    const lambda = this.options.shrinkage;
    const acc = new Float64Array(nItems);
    const cnt = new Int32Array(nItems);
    const touched = new Int32Array(nItems);
    const candSim = new Float64Array(nItems);
    const nbrPtr = new Int32Array(nItems + 1);
    let nbrIdx = new Int32Array(Math.min(nItems * N, 1 << 20));
    let nbrSim = new Float32Array(nbrIdx.length);
    let nnz = 0;
    for (let i = 0; i < nItems; i++) {
      let nTouched = 0;
      if (norm[i] > 0) {
        for (let q = colPtr[i]; q < colPtr[i + 1]; q++) {
          const u = colUser[q];
          const wi = colW[q];
          for (let p = seen.indptr[u]; p < seen.indptr[u + 1]; p++) {
            const j = seen.indices[p];
            if (j === i) continue;
            if (cnt[j] === 0) touched[nTouched++] = j;
            cnt[j]++;
            acc[j] += wi * w[p];
          }
        }
      }
      // Touched items in ascending index order, so top-k ties resolve by item index.
      const cand = touched.subarray(0, nTouched).sort();
      for (let t = 0; t < nTouched; t++) {
        const j = cand[t];
        const c = cnt[j];
        let s = norm[j] > 0 ? acc[j] / (norm[i] * norm[j]) : 0;
        if (lambda > 0) s *= c / (c + lambda);
        candSim[t] = s > 0 ? s : Number.NaN; // NaN entries are never selected
        acc[j] = 0;
        cnt[j] = 0;
      }
      const best = topK(candSim.subarray(0, nTouched), N);
      if (nnz + best.length > nbrIdx.length) {
        const cap = Math.max(nbrIdx.length * 2, nnz + best.length);
        const a = new Int32Array(cap);
        a.set(nbrIdx.subarray(0, nnz));
        nbrIdx = a;
        const b = new Float32Array(cap);
        b.set(nbrSim.subarray(0, nnz));
        nbrSim = b;
      }
      for (let t = 0; t < best.length; t++) {
        nbrIdx[nnz] = cand[best[t]];
        nbrSim[nnz] = candSim[best[t]];
        nnz++;
      }
      nbrPtr[i + 1] = nnz;
    }
    this.nbrPtr = nbrPtr;
    this.nbrIdx = nbrIdx.slice(0, nnz);
    this.nbrSim = nbrSim.slice(0, nnz);
  }

  protected computeScores(u: number): Float32Array {
    const seen = this.seen;
    const a = seen.indptr[u];
    const b = seen.indptr[u + 1];
    let mean = 0;
    if (this.options.weighting === "centered") {
      for (let p = a; p < b; p++) mean += seen.values[p];
      mean /= b - a;
    }
    const scores = new Float32Array(seen.cols);
    for (let p = a; p < b; p++) {
      const wj = this.options.weighting === "implicit" ? 1 : seen.values[p] - mean;
      this.accumulate(scores, seen.indices[p], wj);
    }
    return scores;
  }

  private accumulate(scores: Float32Array, j: number, weight: number): void {
    for (let q = this.nbrPtr[j]; q < this.nbrPtr[j + 1]; q++) scores[this.nbrIdx[q]] += this.nbrSim[q] * weight;
  }

  /**
   * Scores of every item for an ad-hoc history (e.g. items a user mentioned
   * in a conversation), each item weighted 1, as in implicit scoring.
   * @throws UnknownIdError for an unknown item; InvalidArgumentError for an empty list.
   */
  scoreHistory(items: Iterable<Id>): Float32Array {
    const index = this.items;
    const ids = [...items];
    if (ids.length === 0) throw new InvalidArgumentError("scoreHistory needs at least one item");
    const scores = new Float32Array(index.size);
    for (const j of new Set(ids.map((id) => index.indexOf(id)))) this.accumulate(scores, j, 1);
    return scores;
  }

  /**
   * Top-k items for an ad-hoc history (see {@link scoreHistory}). By default
   * the history items themselves are excluded (`exclude: "seen"` refers to
   * them); `exclude` and `filter` otherwise behave as in `recommend`.
   */
  recommendFromItems(items: Iterable<Id>, k: number, options: RecommendOptions = {}): Recommendation[] {
    checkK(k);
    const index = this.items;
    const ids = [...items];
    const scores = this.scoreHistory(ids);
    const excluded = new Uint8Array(index.size);
    const exclude = options.exclude ?? "seen";
    if (exclude === "seen") for (const id of ids) excluded[index.indexOf(id)] = 1;
    else if (exclude !== "none") {
      if (typeof exclude === "string") throw new InvalidArgumentError(`exclude must be "seen", "none" or a list of item ids`);
      for (const id of exclude) excluded[index.indexOf(id)] = 1;
    }
    const filter = options.filter;
    const best = topK(scores, k, (i) => excluded[i] === 0 && (!filter || filter(index.id(i), i)));
    return Array.from(best, (i) => ({ item: index.id(i), score: scores[i] }));
  }

  /**
   * The most similar items to `item` (its stored neighbours, so at most
   * `options.neighbours` of them), most similar first; `score` is the
   * similarity.
   */
  similar(item: Id, k: number, options: SimilarOptions = {}): Recommendation[] {
    checkK(k);
    const index = this.items;
    const i = index.indexOf(item);
    const out: Recommendation[] = [];
    for (let q = this.nbrPtr[i]; q < this.nbrPtr[i + 1] && out.length < k; q++) {
      const j = this.nbrIdx[q];
      const id = index.id(j);
      if (options.filter && !options.filter(id, j)) continue;
      out.push({ item: id, score: this.nbrSim[q] });
    }
    return out;
  }

  /** Similarity of two items (0 when `b` is not among `a`'s neighbours). */
  similarity(a: Id, b: Id): number {
    const i = this.items.indexOf(a);
    const j = this.items.indexOf(b);
    for (let q = this.nbrPtr[i]; q < this.nbrPtr[i + 1]; q++) if (this.nbrIdx[q] === j) return this.nbrSim[q];
    return 0;
  }

  protected stateForSave(): { params: Record<string, unknown>; arrays: Record<string, StoredArray> } {
    return {
      params: { ...this.options },
      arrays: { "nbr.ptr": this.nbrPtr, "nbr.idx": this.nbrIdx, "nbr.sim": this.nbrSim },
    };
  }

  /** Reads a model saved by {@link ItemKnnRecommender.save}. @throws ModelFileError */
  static async load(path: string): Promise<ItemKnnRecommender> {
    return ItemKnnRecommender.fromBuffer(await readFile(path), path);
  }

  /** Decodes bytes made by {@link ItemKnnRecommender.toBuffer}. @throws ModelFileError */
  static fromBuffer(bytes: Uint8Array, label = "<buffer>"): ItemKnnRecommender {
    const c = decodeModel(bytes, label, ItemKnnRecommender.KIND);
    const weighting = c.params.weighting;
    if (weighting !== "implicit" && weighting !== "centered") throw new ModelFileError(label, `corrupted header: bad weighting ${String(weighting)}`);
    const m = new ItemKnnRecommender({
      neighbours: paramNumber(c.params, "neighbours", label),
      shrinkage: paramNumber(c.params, "shrinkage", label),
      weighting,
    });
    m.restoreState(c, label);
    const ptr = requireArray(c, label, "nbr.ptr", "i32", m.items.size + 1);
    const idx = requireArray(c, label, "nbr.idx", "i32");
    const sim = requireArray(c, label, "nbr.sim", "f32", idx.length);
    if (ptr[0] !== 0 || ptr[m.items.size] !== idx.length) throw new ModelFileError(label, "corrupted: inconsistent neighbour lists");
    for (let i = 0; i < m.items.size; i++) if (ptr[i + 1] < ptr[i]) throw new ModelFileError(label, "corrupted: inconsistent neighbour lists");
    for (let q = 0; q < idx.length; q++) if (idx[q] < 0 || idx[q] >= m.items.size) throw new ModelFileError(label, "corrupted: neighbour index out of range");
    m.nbrPtr = ptr;
    m.nbrIdx = idx;
    m.nbrSim = sim;
    return m;
  }
}
