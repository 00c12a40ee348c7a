/**
 * Matrix-factorisation models, trained in-process with seeded SGD:
 *
 * - {@link BprRecommender}: Bayesian Personalised Ranking (Rendle et al.
 *   2009) for implicit feedback, the top-k ranking model;
 * - {@link BiasedMfPredictor}: biased matrix factorisation for explicit
 *   ratings ("SVD" of the Netflix prize, Koren et al. 2009), the rating
 *   predictor (RMSE / MAE), which can also rank by predicted rating.
 *
 * Both are deterministic for a given seed: initialisation and sampling use
 * the shared {@link Rng}, and the arithmetic is sequential.
 *
 * Default hyper-parameters were chosen on validation splits carved out of
 * MovieLens-100K training data (leave-last-out inside the training set for
 * BPR, a random 10% of the training set for biased MF), never on test data.
 *
 * @module
 */

import { readFile } from "node:fs/promises";
import { BaseRecommender, checkK, type ItemSimilarity, paramNumber, type RatingPredictor, type Recommendation, type SimilarOptions } from "./base.js";
import { InvalidArgumentError } from "./errors.js";
import { type CsrMatrix, csrHas, type Id, type Interactions } from "./interactions.js";
import { type ModelFileContents, type StoredArray, decodeModel, requireArray } from "./model-file.js";
import { DEFAULT_SEED, Rng } from "./seed.js";
import { topK } from "./topk.js";

function checkPositiveInt(name: string, v: number): void {
  if (!(Number.isInteger(v) && v >= 1)) throw new InvalidArgumentError(`${name} must be a positive integer, got ${v}`);
}

function checkNonNegative(name: string, v: number): void {
  if (!(Number.isFinite(v) && v >= 0)) throw new InvalidArgumentError(`${name} must be a finite number >= 0, got ${v}`);
}

/** Number of training interactions of each item. */
function itemCounts(seen: CsrMatrix): Int32Array {
  const c = new Int32Array(seen.cols);
  for (let p = 0; p < seen.indices.length; p++) c[seen.indices[p]]++;
  return c;
}

/**
 * Cosine similarity between item factor vectors: the `k` items most similar
 * to item `i` among items with training interactions.
 */
function factorSimilar(model: BaseRecommender, itemFactors: Float32Array, factors: number, counts: Int32Array, item: Id, k: number, options: SimilarOptions): Recommendation[] {
  checkK(k);
  const index = model.items;
  const i = index.indexOf(item);
  if (counts[i] === 0) return [];
  const n = index.size;
  const norms = new Float64Array(n);
  for (let j = 0; j < n; j++) {
    let s = 0;
    for (let f = 0; f < factors; f++) s += itemFactors[j * factors + f] ** 2;
    norms[j] = Math.sqrt(s);
  }
  const sims = new Float32Array(n);
  for (let j = 0; j < n; j++) {
    let dot = 0;
    for (let f = 0; f < factors; f++) dot += itemFactors[i * factors + f] * itemFactors[j * factors + f];
    sims[j] = norms[i] > 0 && norms[j] > 0 ? dot / (norms[i] * norms[j]) : 0;
  }
  const filter = options.filter;
  const best = topK(sims, k, (j) => j !== i && counts[j] > 0 && (!filter || filter(index.id(j), j)));
  return Array.from(best, (j) => ({ item: index.id(j), score: sims[j] }));
}

/**
 * The SGD hyperparameters BPR and biased MF share; each model's defaults are
 * listed on its options ({@link BprOptions}, {@link BiasedMfOptions}).
 */
export interface SgdOptions {
  /** Latent dimensions. */
  factors: number;
  /** Passes over the training interactions. */
  epochs: number;
  /** SGD step size. */
  learningRate: number;
  /** L2 regularisation of the factors. */
  regularization: number;
  /** L2 regularisation of the biases. */
  biasRegularization: number;
  /** Standard deviation of the normal initialisation. */
  initStd: number;
  /** PRNG seed. Default {@link DEFAULT_SEED}. */
  seed: number;
}

/**
 * Options of {@link BprRecommender}. Defaults: 32 factors; 30 epochs, each
 * drawing as many (user, positive, negative) triples as there are training
 * interactions; learningRate 0.05; regularization 0.01; biasRegularization
 * (of the item biases) 0.005; initStd 0.1.
 */
export type BprOptions = Partial<SgdOptions>;

/** Each model's default options (chosen on validation splits, see above), in the order they are stored. */
const BPR_DEFAULTS: Required<BprOptions> = { factors: 32, epochs: 30, learningRate: 0.05, regularization: 0.01, biasRegularization: 0.005, initStd: 0.1, seed: DEFAULT_SEED };
const BIASED_MF_DEFAULTS: Required<BiasedMfOptions> = { factors: 50, epochs: 30, learningRate: 0.01, regularization: 0.1, biasRegularization: 0.02, initStd: 0.1, clip: true, seed: DEFAULT_SEED };

const SGD_KEYS = ["factors", "epochs", "learningRate", "regularization", "biasRegularization", "initStd", "seed"] as const;

/** `options` with each unset option taken from `defaults` (in their order), the SGD hyperparameters checked. */
function resolveSgdOptions<O extends SgdOptions>(options: Partial<O>, defaults: O): O {
  const o = { ...defaults };
  for (const key of Object.keys(defaults) as (keyof O)[]) o[key] = options[key] ?? defaults[key];
  checkPositiveInt("factors", o.factors);
  checkPositiveInt("epochs", o.epochs);
  checkNonNegative("learningRate", o.learningRate);
  checkNonNegative("regularization", o.regularization);
  checkNonNegative("biasRegularization", o.biasRegularization);
  checkNonNegative("initStd", o.initStd);
  checkNonNegative("seed", o.seed);
  return o;
}

/** The SGD hyperparameters stored in a model file's header. @throws ModelFileError */
function storedSgdOptions(c: ModelFileContents, label: string): SgdOptions {
  const o = {} as SgdOptions;
  for (const key of SGD_KEYS) o[key] = paramNumber(c.params, key, label);
  return o;
}

/**
 * What BPR and biased MF share: item factors and biases, user factors, the
 * items' training counts, their initialisation and persistence, and
 * item-to-item similarity by the cosine of the item factors.
 */
abstract class FactorRecommender<O extends SgdOptions> extends BaseRecommender implements ItemSimilarity {
  protected readonly requiresHistory = true;
  /** Effective options. */
  readonly options: Readonly<O>;
  protected userFactors: Float32Array = new Float32Array(0);
  protected itemFactors: Float32Array = new Float32Array(0);
  protected itemBias: Float32Array = new Float32Array(0);
  protected counts: Int32Array = new Int32Array(0);

  protected constructor(options: O) {
    super();
    this.options = Object.freeze(options);
  }

  /**
   * The seeded start of training: normal user and item factors (users
   * first), and the user of each training entry.
   */
  protected initFactors(rng: Rng): { P: Float32Array; Q: Float32Array; rowOf: Int32Array } {
    const seen = this.seen;
    const { factors: F, initStd } = this.options;
    const P = new Float32Array(seen.rows * F);
    const Q = new Float32Array(seen.cols * F);
    for (let k = 0; k < P.length; k++) P[k] = rng.normal() * initStd;
    for (let k = 0; k < Q.length; k++) Q[k] = rng.normal() * initStd;
    const rowOf = new Int32Array(seen.indices.length);
    for (let u = 0; u < seen.rows; u++) rowOf.fill(u, seen.indptr[u], seen.indptr[u + 1]);
    return { P, Q, rowOf };
  }

  /** Items most similar to `item` by cosine of their latent factors; `score` is the cosine. */
  similar(item: Id, k: number, options: SimilarOptions = {}): Recommendation[] {
    this.state();
    return factorSimilar(this, this.itemFactors, this.options.factors, this.counts, item, k, options);
  }

  protected stateForSave(): { params: Record<string, unknown>; arrays: Record<string, StoredArray> } {
    return {
      params: { ...this.options },
      arrays: { userFactors: this.userFactors, itemFactors: this.itemFactors, itemBias: this.itemBias },
    };
  }

  /** Restores the id maps, history, factors and item biases from a decoded file. @throws ModelFileError */
  protected restoreFactors(c: ModelFileContents, label: string): void {
    this.restoreState(c, label);
    const F = this.options.factors;
    this.userFactors = requireArray(c, label, "userFactors", "f32", this.users.size * F);
    this.itemFactors = requireArray(c, label, "itemFactors", "f32", this.items.size * F);
    this.itemBias = requireArray(c, label, "itemBias", "f32", this.items.size);
    this.counts = itemCounts(this.seen);
  }
}

/**
 * BPR-MF: `score(u, i) = b_i + p_u · q_i`, trained by SGD on the BPR
 * criterion `ln σ(score(u, i) − score(u, j))` over triples of a training
 * interaction (u, i), drawn uniformly, and an item j that u has not
 * interacted with, drawn uniformly (rejection sampling).
 */
export class BprRecommender extends FactorRecommender<Required<BprOptions>> {
  /** Model kind stored in files. */
  static readonly KIND = "bpr";
  readonly kind = BprRecommender.KIND;

  constructor(options: BprOptions = {}) {
    super(resolveSgdOptions(options, BPR_DEFAULTS));
  }

  protected train(_train: Interactions): void {
    const seen = this.seen;
    const { factors: F, epochs, learningRate: lr, regularization: reg, biasRegularization: regB, seed } = this.options;
    const nItems = seen.cols;
    const rng = new Rng(seed);
    const { P, Q, rowOf } = this.initFactors(rng);
    const B = new Float32Array(nItems);
    const nnz = seen.indices.length;
    for (let epoch = 0; epoch < epochs; epoch++) {
      for (let s = 0; s < nnz; s++) {
        const p = rng.nextInt(nnz);
        const u = rowOf[p];
        const i = seen.indices[p];
        if (seen.indptr[u + 1] - seen.indptr[u] >= nItems) continue; // user has every item: no negative exists
        let j = rng.nextInt(nItems);
        while (csrHas(seen, u, j)) j = rng.nextInt(nItems);
        const po = u * F;
        const io = i * F;
        const jo = j * F;
        let x = B[i] - B[j];
        for (let f = 0; f < F; f++) x += P[po + f] * (Q[io + f] - Q[jo + f]);
        const g = 1 / (1 + Math.exp(x)); // σ(−x) = ∂ ln σ(x) / ∂x
        for (let f = 0; f < F; f++) {
          const pu = P[po + f];
          const qi = Q[io + f];
          const qj = Q[jo + f];
          P[po + f] = pu + lr * (g * (qi - qj) - reg * pu);
          Q[io + f] = qi + lr * (g * pu - reg * qi);
          Q[jo + f] = qj + lr * (-g * pu - reg * qj);
        }
        B[i] += lr * (g - regB * B[i]);
        B[j] += lr * (-g - regB * B[j]);
      }
    }
    this.userFactors = P;
    this.itemFactors = Q;
    this.itemBias = B;
    this.counts = itemCounts(seen);
  }

  protected computeScores(u: number): Float32Array {
    const F = this.options.factors;
    const n = this.itemBias.length;
    const P = this.userFactors;
    const Q = this.itemFactors;
    const scores = new Float32Array(n);
    const po = u * F;
    for (let i = 0; i < n; i++) {
      let s = this.itemBias[i];
      const io = i * F;
      for (let f = 0; f < F; f++) s += P[po + f] * Q[io + f];
      scores[i] = s;
    }
    return scores;
  }

  /** Reads a model saved by {@link BprRecommender.save}. @throws ModelFileError */
  static async load(path: string): Promise<BprRecommender> {
    return BprRecommender.fromBuffer(await readFile(path), path);
  }

  /** Decodes bytes made by {@link BprRecommender.toBuffer}. @throws ModelFileError */
  static fromBuffer(bytes: Uint8Array, label = "<buffer>"): BprRecommender {
    const c = decodeModel(bytes, label, BprRecommender.KIND);
    const m = new BprRecommender(storedSgdOptions(c, label));
    m.restoreFactors(c, label);
    return m;
  }
}

/**
 * Options of {@link BiasedMfPredictor}. Defaults: 50 factors; 30 epochs over
 * the (shuffled) training ratings; learningRate 0.01; regularization 0.1;
 * biasRegularization (of the user and item biases) 0.02; initStd 0.1.
 */
export interface BiasedMfOptions extends Partial<SgdOptions> {
  /** Clamp predictions to the training ratings' range. Default true. */
  clip?: boolean;
}

/**
 * Biased MF for explicit ratings:
 * `r̂(u, i) = μ + b_u + b_i + p_u · q_i`, trained by SGD on the squared
 * error with L2 regularisation, visiting the training ratings in a fresh
 * seeded random order each epoch.
 *
 * Cold start: a user or item that is in the id maps but has no training
 * ratings contributes no bias and no interaction term, so predictions fall
 * back to `μ + b_i` or `μ + b_u` (or `μ`). Ids outside the maps throw.
 *
 * As a {@link Recommender} it ranks items by predicted rating.
 */
export class BiasedMfPredictor extends FactorRecommender<Required<BiasedMfOptions>> implements RatingPredictor {
  /** Model kind stored in files. */
  static readonly KIND = "biased-mf";
  readonly kind = BiasedMfPredictor.KIND;
  private globalMean = 0;
  private minRating = 0;
  private maxRating = 0;
  private userBias: Float32Array = new Float32Array(0);
  private userCounts: Int32Array = new Int32Array(0);

  constructor(options: BiasedMfOptions = {}) {
    super(resolveSgdOptions(options, BIASED_MF_DEFAULTS));
  }

  protected train(_train: Interactions): void {
    const seen = this.seen;
    const { factors: F, epochs, learningRate: lr, regularization: reg, biasRegularization: regB, seed } = this.options;
    const nnz = seen.indices.length;
    const rng = new Rng(seed);
    const { P, Q, rowOf } = this.initFactors(rng);
    const bu = new Float32Array(seen.rows);
    const bi = new Float32Array(seen.cols);
    let sum = 0;
    let lo = Infinity;
    let hi = -Infinity;
    for (let p = 0; p < nnz; p++) {
      const r = seen.values[p];
      sum += r;
      if (r < lo) lo = r;
      if (r > hi) hi = r;
    }
    const mu = sum / nnz;
    const order = new Int32Array(nnz);
    for (let p = 0; p < nnz; p++) order[p] = p;
    for (let epoch = 0; epoch < epochs; epoch++) {
      rng.shuffle(order);
      for (let s = 0; s < nnz; s++) {
        const p = order[s];
        const u = rowOf[p];
        const i = seen.indices[p];
        const po = u * F;
        const io = i * F;
        let pred = mu + bu[u] + bi[i];
        for (let f = 0; f < F; f++) pred += P[po + f] * Q[io + f];
        const e = seen.values[p] - pred;
        bu[u] += lr * (e - regB * bu[u]);
        bi[i] += lr * (e - regB * bi[i]);
        for (let f = 0; f < F; f++) {
          const pu = P[po + f];
          const qi = Q[io + f];
          P[po + f] = pu + lr * (e * qi - reg * pu);
          Q[io + f] = qi + lr * (e * pu - reg * qi);
        }
      }
    }
    this.globalMean = mu;
    this.minRating = lo;
    this.maxRating = hi;
    this.userFactors = P;
    this.itemFactors = Q;
    this.userBias = bu;
    this.itemBias = bi;
    this.counts = itemCounts(seen);
    this.deriveUserCounts();
  }

  private deriveUserCounts(): void {
    const seen = this.seen;
    this.userCounts = new Int32Array(seen.rows);
    for (let u = 0; u < seen.rows; u++) this.userCounts[u] = seen.indptr[u + 1] - seen.indptr[u];
  }

  predictIndex(u: number, i: number): number {
    const { users, items } = this.state();
    if (!(Number.isInteger(u) && u >= 0 && u < users.size)) throw new InvalidArgumentError(`user index ${u} out of range`);
    if (!(Number.isInteger(i) && i >= 0 && i < items.size)) throw new InvalidArgumentError(`item index ${i} out of range`);
    const F = this.options.factors;
    const userKnown = this.userCounts[u] > 0;
    const itemKnown = this.counts[i] > 0;
    let pred = this.globalMean + (userKnown ? this.userBias[u] : 0) + (itemKnown ? this.itemBias[i] : 0);
    if (userKnown && itemKnown) {
      for (let f = 0; f < F; f++) pred += this.userFactors[u * F + f] * this.itemFactors[i * F + f];
    }
    if (this.options.clip) pred = Math.min(this.maxRating, Math.max(this.minRating, pred));
    return pred;
  }

  predict(user: Id, item: Id): number {
    return this.predictIndex(this.users.indexOf(user), this.items.indexOf(item));
  }

  /** The training set's mean rating μ. */
  get mean(): number {
    this.state();
    return this.globalMean;
  }

  protected computeScores(u: number): Float32Array {
    const n = this.items.size;
    const scores = new Float32Array(n);
    for (let i = 0; i < n; i++) scores[i] = this.predictIndex(u, i);
    return scores;
  }

  protected override stateForSave(): { params: Record<string, unknown>; arrays: Record<string, StoredArray> } {
    return {
      params: { ...this.options, globalMean: this.globalMean, minRating: this.minRating, maxRating: this.maxRating },
      arrays: {
        userFactors: this.userFactors,
        itemFactors: this.itemFactors,
        userBias: this.userBias,
        itemBias: this.itemBias,
      },
    };
  }

  /** Reads a model saved by {@link BiasedMfPredictor.save}. @throws ModelFileError */
  static async load(path: string): Promise<BiasedMfPredictor> {
    return BiasedMfPredictor.fromBuffer(await readFile(path), path);
  }

  /** Decodes bytes made by {@link BiasedMfPredictor.toBuffer}. @throws ModelFileError */
  static fromBuffer(bytes: Uint8Array, label = "<buffer>"): BiasedMfPredictor {
    const c: ModelFileContents = decodeModel(bytes, label, BiasedMfPredictor.KIND);
    const p = (k: string): number => paramNumber(c.params, k, label);
    const m = new BiasedMfPredictor({ ...storedSgdOptions(c, label), clip: c.params.clip !== false });
    m.restoreFactors(c, label);
    m.globalMean = p("globalMean");
    m.minRating = p("minRating");
    m.maxRating = p("maxRating");
    m.userBias = requireArray(c, label, "userBias", "f32", m.users.size);
    m.deriveUserCounts();
    return m;
  }
}
