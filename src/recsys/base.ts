/**
 * The common recommender contract and the base class implementing the parts
 * shared by all models: id checks, seen-item exclusion, top-k selection and
 * persistence of the id maps and training history.
 *
 * @module
 */

import { EmptyHistoryError, InvalidArgumentError, ModelFileError, NotFittedError } from "./errors.js";
import { type CsrMatrix, type Id, IdIndex, type Interactions } from "./interactions.js";
import { type ModelFileContents, type StoredArray, encodeModel, requireArray, writeModelFile } from "./model-file.js";
import { topK } from "./topk.js";

/** Options of {@link Recommender.recommend}. */
export interface RecommendOptions {
  /**
   * Items never to recommend:
   * - `"seen"` (default): the user's training interactions;
   * - `"none"`: nothing;
   * - a list of item ids: exactly those (replaces the seen items; combine with
   *   {@link Recommender.history} to exclude both). Unknown ids throw.
   */
  exclude?: "seen" | "none" | Iterable<Id>;
  /** Only items for which this returns `true` are recommended. */
  filter?: (item: string, index: number) => boolean;
}

/** One recommended (or similar) item and its model score. */
export interface Recommendation {
  /** External item id. */
  item: string;
  /** Model score (higher is better; the scale is model-specific). */
  score: number;
}

/** Options of {@link ItemSimilarity.similar}. */
export interface SimilarOptions {
  /** Only items for which this returns `true` are returned. */
  filter?: (item: string, index: number) => boolean;
}

/** A fitted top-k recommender. */
export interface Recommender {
  /** Model kind as stored in model files, e.g. `"popularity"`. */
  readonly kind: string;
  /** Whether `fit` or `load` has run. */
  readonly isFitted: boolean;
  /** User id map of the training data. @throws NotFittedError before fitting. */
  readonly users: IdIndex;
  /** Item id map of the training data; score vectors are indexed by it. @throws NotFittedError before fitting. */
  readonly items: IdIndex;
  /** Trains the model on `train` (replacing any previous state) and returns it. */
  fit(train: Interactions): this;
  /**
   * Scores of every item for `user`, indexed by item index
   * (`model.items.id(i)` is the id of entry `i`). Seen items are not masked.
   * @throws UnknownIdError, EmptyHistoryError (personalised models), NotFittedError
   */
  scoreItems(user: Id): Float32Array;
  /** {@link Recommender.scoreItems} by dense user index. */
  scoreUserIndex(user: number): Float32Array;
  /** Ids of the items `user` interacted with in the training data (ascending item index). */
  history(user: Id): string[];
  /**
   * The `k` best items for `user`, best first (ties: lower item index first).
   * Fewer than `k` are returned when fewer items qualify.
   */
  recommend(user: Id, k: number, options?: RecommendOptions): Recommendation[];
  /** Writes the fitted model to `path` (see `model-file.ts` for the format). */
  save(path: string): Promise<void>;
  /** The bytes {@link Recommender.save} writes. */
  toBuffer(): Buffer;
}

/** A model that can list items similar to a given item. */
export interface ItemSimilarity {
  /**
   * Up to `k` items most similar to `item`, most similar first, never
   * `item` itself. Items without training interactions are never returned,
   * and an item without training interactions has no similar items (`[]`).
   * @throws UnknownIdError for an unknown item.
   */
  similar(item: Id, k: number, options?: SimilarOptions): Recommendation[];
}

/** A model predicting explicit ratings. */
export interface RatingPredictor {
  /**
   * Predicted rating of `item` by `user`.
   * @throws UnknownIdError for ids outside the training data's id maps.
   */
  predict(user: Id, item: Id): number;
  /** {@link RatingPredictor.predict} by dense indices. */
  predictIndex(user: number, item: number): number;
}

interface FittedState {
  users: IdIndex;
  items: IdIndex;
  /** Training user × item matrix (ratings as values). */
  seen: CsrMatrix;
}

/** Checks `k` for recommend / similar. */
export function checkK(k: number): void {
  if (!(Number.isInteger(k) && k >= 1)) throw new InvalidArgumentError(`k must be a positive integer, got ${k}`);
}

/**
 * Base class of the recommenders. Subclasses implement {@link train},
 * {@link computeScores} and {@link stateForSave}, and a static
 * `load` / `fromBuffer` that calls {@link restoreState}.
 */
export abstract class BaseRecommender implements Recommender {
  abstract readonly kind: string;
  /** Whether scoring a user without training interactions throws {@link EmptyHistoryError}. */
  protected abstract readonly requiresHistory: boolean;
  private fitted: FittedState | undefined;

  get isFitted(): boolean {
    return this.fitted !== undefined;
  }

  get users(): IdIndex {
    return this.state().users;
  }

  get items(): IdIndex {
    return this.state().items;
  }

  /** The training user × item matrix. */
  protected get seen(): CsrMatrix {
    return this.state().seen;
  }

  protected state(): FittedState {
    if (!this.fitted) throw new NotFittedError(this.kind);
    return this.fitted;
  }

  fit(train: Interactions): this {
    if (train.length === 0) throw new InvalidArgumentError(`${this.kind}: cannot fit on an empty training set`);
    this.fitted = { users: train.users, items: train.items, seen: train.userItemMatrix() };
    try {
      this.train(train);
    } catch (e) {
      this.fitted = undefined;
      throw e;
    }
    return this;
  }

  /** Model-specific training; `this.users`, `this.items` and `this.seen` are already set. */
  protected abstract train(train: Interactions): void;

  /** Model-specific scores of all items for user index `u` (already validated). */
  protected abstract computeScores(u: number): Float32Array;

  scoreUserIndex(u: number): Float32Array {
    const { users, seen } = this.state();
    if (!(Number.isInteger(u) && u >= 0 && u < users.size)) {
      throw new InvalidArgumentError(`user index ${u} out of range [0, ${users.size})`);
    }
    if (this.requiresHistory && seen.indptr[u + 1] === seen.indptr[u]) {
      throw new EmptyHistoryError(users.id(u), this.kind);
    }
    return this.computeScores(u);
  }

  scoreItems(user: Id): Float32Array {
    return this.scoreUserIndex(this.users.indexOf(user));
  }

  history(user: Id): string[] {
    const { users, items, seen } = this.state();
    const u = users.indexOf(user);
    const out: string[] = [];
    for (let k = seen.indptr[u]; k < seen.indptr[u + 1]; k++) out.push(items.id(seen.indices[k]));
    return out;
  }

  recommend(user: Id, k: number, options: RecommendOptions = {}): Recommendation[] {
    checkK(k);
    const { users, items, seen } = this.state();
    const u = users.indexOf(user);
    const scores = this.scoreUserIndex(u);
    const excluded = new Uint8Array(items.size);
    const exclude = options.exclude ?? "seen";
    if (exclude === "seen") {
      for (let p = seen.indptr[u]; p < seen.indptr[u + 1]; p++) excluded[seen.indices[p]] = 1;
    } else if (exclude !== "none") {
      if (typeof exclude === "string") {
        throw new InvalidArgumentError(`exclude must be "seen", "none" or a list of item ids, got ${JSON.stringify(exclude)}`);
      }
      for (const id of exclude) excluded[items.indexOf(id)] = 1;
    }
    const filter = options.filter;
    const best = topK(scores, k, (i) => excluded[i] === 0 && (!filter || filter(items.id(i), i)));
    return Array.from(best, (i) => ({ item: items.id(i), score: scores[i] }));
  }

  /** Model-specific parameters and arrays to persist. */
  protected abstract stateForSave(): { params: Record<string, unknown>; arrays: Record<string, StoredArray> };

  toBuffer(): Buffer {
    return encodeModel(this.contents());
  }

  async save(path: string): Promise<void> {
    await writeModelFile(path, this.contents());
  }

  private contents(): ModelFileContents {
    const { users, items, seen } = this.state();
    const own = this.stateForSave();
    return {
      kind: this.kind,
      params: own.params,
      users: [...users.ids()],
      items: [...items.ids()],
      arrays: { "seen.indptr": seen.indptr, "seen.indices": seen.indices, "seen.values": seen.values, ...own.arrays },
    };
  }

  /**
   * Restores the shared state (id maps, training history) from a decoded file.
   * @throws ModelFileError when inconsistent.
   */
  protected restoreState(contents: ModelFileContents, label: string): void {
    let users: IdIndex;
    let items: IdIndex;
    try {
      users = new IdIndex("user", contents.users.map(String));
      items = new IdIndex("item", contents.items.map(String));
    } catch (e) {
      throw new ModelFileError(label, `corrupted id maps (${(e as Error).message})`);
    }
    const indptr = requireArray(contents, label, "seen.indptr", "i32", users.size + 1);
    const indices = requireArray(contents, label, "seen.indices", "i32");
    const values = requireArray(contents, label, "seen.values", "f32", indices.length);
    if (indptr[0] !== 0 || indptr[users.size] !== indices.length) throw new ModelFileError(label, "corrupted: inconsistent training history");
    for (let r = 0; r < users.size; r++) if (indptr[r + 1] < indptr[r]) throw new ModelFileError(label, "corrupted: inconsistent training history");
    for (let p = 0; p < indices.length; p++) {
      if (indices[p] < 0 || indices[p] >= items.size) throw new ModelFileError(label, "corrupted: item index out of range in training history");
    }
    this.fitted = { users, items, seen: { rows: users.size, cols: items.size, indptr, indices, values } };
  }
}

/**
 * Reads a numeric parameter from a model file header.
 * @throws ModelFileError when absent or not a finite number.
 */
export function paramNumber(params: Record<string, unknown>, key: string, label: string): number {
  const v = params[key];
  if (typeof v !== "number" || !Number.isFinite(v)) throw new ModelFileError(label, `corrupted header: parameter "${key}" is missing or not a number`);
  return v;
}
