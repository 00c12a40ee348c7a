/**
 * Core data structures: dense id ↔ index maps, an immutable interaction log
 * over typed arrays, and compressed sparse row (CSR) matrices derived from it.
 *
 * External ids (as found in the data files) are strings. Every public API that
 * takes an id also accepts a number, converted with `String(id)`: `196` and
 * `"196"` name the same MovieLens user, but `7` does not match an id written
 * `"007"` in a CSV file.
 *
 * @module
 */

import { InvalidArgumentError, UnknownIdError } from "./errors.js";

/** An external user or item id. Numbers are converted with `String(id)`. */
export type Id = string | number;

/**
 * A read-only map from external user or item ids to values, filled once by
 * its subclass's constructor: the lookups {@link IdIndex} and `ItemCatalog`
 * share.
 */
export abstract class IdMap<V> {
  /** Whether the ids are user or item ids (used in error messages). */
  readonly kind: "user" | "item";
  protected readonly byId = new Map<string, V>();

  protected constructor(kind: "user" | "item") {
    this.kind = kind;
  }

  /** Adds an entry. @throws InvalidArgumentError on a duplicate id, naming the collection `where`. */
  protected put(id: string, value: V, where: string): void {
    if (this.byId.has(id)) throw new InvalidArgumentError(`duplicate ${this.kind} id ${JSON.stringify(id)} in ${where}`);
    this.byId.set(id, value);
  }

  /** Number of ids. */
  get size(): number {
    return this.byId.size;
  }

  /** Whether `id` is known. */
  has(id: Id): boolean {
    return this.byId.has(String(id));
  }

  /** The value of `id`, or `undefined` when unknown. */
  get(id: Id): V | undefined {
    return this.byId.get(String(id));
  }

  /** The value of `id`. @throws UnknownIdError when unknown (saying `context`, when given). */
  protected lookup(id: Id, context?: string): V {
    const v = this.byId.get(String(id));
    if (v === undefined) throw new UnknownIdError(this.kind, String(id), context);
    return v;
  }
}

/**
 * Immutable bijection between external ids and dense indices `0..size-1`
 * (in first-seen order).
 */
export class IdIndex extends IdMap<number> {
  private readonly list: readonly string[];

  /** @throws InvalidArgumentError on a duplicate id. */
  constructor(kind: "user" | "item", ids: Iterable<string>) {
    super(kind);
    const list: string[] = [];
    for (const id of ids) {
      this.put(id, list.length, "IdIndex");
      list.push(id);
    }
    this.list = Object.freeze(list);
  }

  /**
   * Dense index of `id`.
   * @throws UnknownIdError when the id is unknown.
   */
  indexOf(id: Id): number {
    return this.lookup(id);
  }

  /** External id at dense index `index`. @throws InvalidArgumentError when out of range. */
  id(index: number): string {
    const id = this.list[index];
    if (id === undefined) throw new InvalidArgumentError(`${this.kind} index ${index} out of range [0, ${this.size})`);
    return id;
  }

  /** All ids in index order (frozen). */
  ids(): readonly string[] {
    return this.list;
  }

  /** True when both indices hold the same ids in the same order. */
  equals(other: IdIndex): boolean {
    if (other === this) return true;
    if (other.size !== this.size) return false;
    for (let i = 0; i < this.list.length; i++) if (this.list[i] !== other.list[i]) return false;
    return true;
  }
}

/**
 * A sparse matrix in compressed sparse row form: row `r` holds the column
 * indices `indices[indptr[r] .. indptr[r+1])` (sorted ascending, no
 * duplicates) with the matching `values`.
 */
export interface CsrMatrix {
  readonly rows: number;
  readonly cols: number;
  readonly indptr: Int32Array;
  readonly indices: Int32Array;
  readonly values: Float32Array;
}

/** Transpose of a CSR matrix (column indices of the result stay sorted). */
export function transposeCsr(m: CsrMatrix): CsrMatrix {
  const nnz = m.indptr[m.rows];
  const indptr = new Int32Array(m.cols + 1);
  for (let k = 0; k < nnz; k++) indptr[m.indices[k] + 1]++;
  for (let c = 0; c < m.cols; c++) indptr[c + 1] += indptr[c];
  const fill = indptr.slice(0, m.cols);
  const indices = new Int32Array(nnz);
  const values = new Float32Array(nnz);
  for (let r = 0; r < m.rows; r++) {
    for (let k = m.indptr[r]; k < m.indptr[r + 1]; k++) {
      const dst = fill[m.indices[k]]++;
      indices[dst] = r;
      values[dst] = m.values[k];
    }
  }
  return { rows: m.cols, cols: m.rows, indptr, indices, values };
}

/** Whether row `row` of `m` contains column `col` (binary search). */
export function csrHas(m: CsrMatrix, row: number, col: number): boolean {
  let lo = m.indptr[row];
  let hi = m.indptr[row + 1] - 1;
  const idx = m.indices;
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1;
    const v = idx[mid];
    if (v === col) return true;
    if (v < col) lo = mid + 1;
    else hi = mid - 1;
  }
  return false;
}

/** One interaction with external ids. */
export interface InteractionRecord {
  user: Id;
  item: Id;
  /** Explicit rating; 1 for implicit feedback. Default 1. */
  rating?: number;
  /** Time of the interaction (any monotone unit, e.g. unix seconds). Default: the record's position. */
  timestamp?: number;
}

/**
 * Accumulates interactions with on-the-fly dense indexing. Used by the
 * loaders; call {@link InteractionsBuilder.build} once at the end.
 */
export class InteractionsBuilder {
  private readonly userMap = new Map<string, number>();
  private readonly itemMap = new Map<string, number>();
  private readonly userList: string[] = [];
  private readonly itemList: string[] = [];
  private userIdx = new Int32Array(1024);
  private itemIdx = new Int32Array(1024);
  private ratings = new Float32Array(1024);
  private timestamps = new Float64Array(1024);
  private n = 0;

  /**
   * @param users optional fixed user index: ids outside it are rejected.
   * @param items optional fixed item index: ids outside it are rejected.
   */
  constructor(
    private readonly fixedUsers?: IdIndex,
    private readonly fixedItems?: IdIndex,
  ) {}

  /** Number of interactions added so far. */
  get length(): number {
    return this.n;
  }

  /**
   * Adds one interaction.
   * @throws UnknownIdError when a fixed index was given and does not hold the id.
   */
  add(user: Id, item: Id, rating = 1, timestamp: number = this.n): void {
    const u = this.fixedUsers ? this.fixedUsers.indexOf(user) : intern(this.userMap, this.userList, String(user));
    const i = this.fixedItems ? this.fixedItems.indexOf(item) : intern(this.itemMap, this.itemList, String(item));
    if (this.n === this.userIdx.length) this.grow();
    this.userIdx[this.n] = u;
    this.itemIdx[this.n] = i;
    this.ratings[this.n] = rating;
    this.timestamps[this.n] = timestamp;
    this.n++;
  }

  /** Freezes the accumulated interactions. The builder must not be used afterwards. */
  build(): Interactions {
    const users = this.fixedUsers ?? new IdIndex("user", this.userList);
    const items = this.fixedItems ?? new IdIndex("item", this.itemList);
    return new Interactions(users, items, this.userIdx.slice(0, this.n), this.itemIdx.slice(0, this.n), this.ratings.slice(0, this.n), this.timestamps.slice(0, this.n));
  }

  private grow(): void {
    const cap = this.userIdx.length * 2;
    this.userIdx = grown(this.userIdx, cap);
    this.itemIdx = grown(this.itemIdx, cap);
    this.ratings = grown(this.ratings, cap);
    this.timestamps = grown(this.timestamps, cap);
  }
}

/** A copy of `a` in a new array of the same type and length `cap`. */
function grown<A extends Int32Array | Float32Array | Float64Array>(a: A, cap: number): A {
  const out = new (a.constructor as new (length: number) => A)(cap);
  out.set(a);
  return out;
}

function intern(map: Map<string, number>, list: string[], id: string): number {
  let i = map.get(id);
  if (i === undefined) {
    i = list.length;
    map.set(id, i);
    list.push(id);
  }
  return i;
}

/**
 * An immutable interaction log (user, item, rating, timestamp) over typed
 * arrays, with dense user and item indices.
 *
 * Subsets made by {@link Interactions.subset} (and therefore by the splitters)
 * share the parent's {@link IdIndex} objects, so a model fitted on a training
 * split indexes users and items exactly like the test split. The typed arrays
 * must be treated as read-only.
 */
export class Interactions {
  private userItemCache: CsrMatrix | undefined;
  private itemUserCache: CsrMatrix | undefined;

  /** Use {@link Interactions.fromRecords} or the loaders instead of calling this directly. */
  constructor(
    /** User id ↔ index map. */
    readonly users: IdIndex,
    /** Item id ↔ index map. */
    readonly items: IdIndex,
    /** Per row: dense user index. */
    readonly userIdx: Int32Array,
    /** Per row: dense item index. */
    readonly itemIdx: Int32Array,
    /** Per row: rating (1 for implicit data). */
    readonly ratings: Float32Array,
    /** Per row: timestamp. */
    readonly timestamps: Float64Array,
  ) {
    const n = userIdx.length;
    if (itemIdx.length !== n || ratings.length !== n || timestamps.length !== n) {
      throw new InvalidArgumentError("Interactions: column arrays differ in length");
    }
    for (let k = 0; k < n; k++) {
      if (userIdx[k] < 0 || userIdx[k] >= users.size || itemIdx[k] < 0 || itemIdx[k] >= items.size) {
        throw new InvalidArgumentError(`Interactions: row ${k} has an index outside the id maps`);
      }
    }
  }

  /**
   * Builds an interaction log from records.
   * @param options.users / options.items fixed id maps to index into (ids must exist);
   *   by default new maps are made in first-seen order.
   */
  static fromRecords(records: Iterable<InteractionRecord>, options: { users?: IdIndex; items?: IdIndex } = {}): Interactions {
    const b = new InteractionsBuilder(options.users, options.items);
    for (const r of records) b.add(r.user, r.item, r.rating ?? 1, r.timestamp ?? b.length);
    return b.build();
  }

  /** Number of interactions (rows). */
  get length(): number {
    return this.userIdx.length;
  }

  /** Row `row` with external ids. */
  record(row: number): Required<InteractionRecord> & { user: string; item: string } {
    if (!(row >= 0 && row < this.length)) throw new InvalidArgumentError(`row ${row} out of range [0, ${this.length})`);
    return {
      user: this.users.id(this.userIdx[row]),
      item: this.items.id(this.itemIdx[row]),
      rating: this.ratings[row],
      timestamp: this.timestamps[row],
    };
  }

  /** The rows at `rows` (in that order), sharing this log's id maps. */
  subset(rows: ArrayLike<number>): Interactions {
    const n = rows.length;
    const u = new Int32Array(n);
    const i = new Int32Array(n);
    const r = new Float32Array(n);
    const t = new Float64Array(n);
    for (let k = 0; k < n; k++) {
      const row = rows[k];
      if (!(row >= 0 && row < this.length)) throw new InvalidArgumentError(`subset: row ${row} out of range`);
      u[k] = this.userIdx[row];
      i[k] = this.itemIdx[row];
      r[k] = this.ratings[row];
      t[k] = this.timestamps[row];
    }
    return new Interactions(this.users, this.items, u, i, r, t);
  }

  /**
   * The users × items rating matrix (CSR, cached). When a (user, item) pair
   * occurs more than once, the latest occurrence (largest timestamp, then
   * last row) wins.
   */
  userItemMatrix(): CsrMatrix {
    if (!this.userItemCache) this.userItemCache = this.buildUserItem();
    return this.userItemCache;
  }

  /** The items × users matrix: transpose of {@link Interactions.userItemMatrix} (cached). */
  itemUserMatrix(): CsrMatrix {
    if (!this.itemUserCache) this.itemUserCache = transposeCsr(this.userItemMatrix());
    return this.itemUserCache;
  }

  private buildUserItem(): CsrMatrix {
    const n = this.length;
    const order = new Int32Array(n);
    for (let k = 0; k < n; k++) order[k] = k;
    const { userIdx: u, itemIdx: it, timestamps: ts } = this;
    order.sort((a, b) => u[a] - u[b] || it[a] - it[b] || ts[a] - ts[b] || a - b);
    const indptr = new Int32Array(this.users.size + 1);
    const indices = new Int32Array(n);
    const values = new Float32Array(n);
    let nnz = 0;
    for (let k = 0; k < n; k++) {
      const row = order[k];
      const next = k + 1 < n ? order[k + 1] : -1;
      if (next >= 0 && u[next] === u[row] && it[next] === it[row]) continue; // a later duplicate wins
      indices[nnz] = it[row];
      values[nnz] = this.ratings[row];
      nnz++;
      indptr[u[row] + 1]++;
    }
    for (let r = 0; r < this.users.size; r++) indptr[r + 1] += indptr[r];
    return {
      rows: this.users.size,
      cols: this.items.size,
      indptr,
      indices: indices.slice(0, nnz),
      values: values.slice(0, nnz),
    };
  }
}
