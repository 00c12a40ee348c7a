/**
 * A user's history as TALLRec sees it: the most recent rated items, split into liked and disliked
 * by rating, rendered with item titles as TALLRec's movie data renders them.
 *
 * TALLRec's MovieLens-100K data takes the user's 10 most recent interactions before the target,
 * oldest first; items rated above 3 go to "User Preference", the others to "User Unpreference".
 * The defaults reproduce that (`recent: 10`, `likeThreshold: 4`, `dislikeThreshold: 3`).
 *
 * @module
 */
import type { Domain, StructuredPrompt } from "../engine/prompt.js";
import type { Id, Interactions } from "../recsys/interactions.js";
import type { ItemCatalog } from "../recsys/items.js";
import { ChatRecError } from "./errors.js";

/** How a history is cut and split. */
export interface HistoryOptions {
  /** Most recent interactions shown to the model (default 10, as in TALLRec's data). */
  recent?: number;
  /** Ratings >= this are liked (default 4: TALLRec's "rating > 3"). */
  likeThreshold?: number;
  /**
   * Ratings <= this are disliked (default 3: every rating below the like threshold, as TALLRec).
   * Set it lower (e.g. 2) to leave neutral ratings out of the prompt.
   */
  dislikeThreshold?: number;
}

/** One interaction of a user. */
export interface RatedItem {
  item: string;
  rating: number;
  timestamp: number;
}

/** A user's history. */
export interface UserHistory {
  user: string;
  /** Every item the user interacted with, oldest first (one entry per item: its latest rating). */
  interactions: RatedItem[];
  /** Liked items among the most recent `recent`, oldest first. */
  liked: string[];
  /** Disliked items among the most recent `recent`, oldest first. */
  disliked: string[];
}

/** Resolved history options. */
export interface ResolvedHistoryOptions {
  recent: number;
  likeThreshold: number;
  dislikeThreshold: number;
}

/** Fills in and checks history options. @throws ChatRecError (invalid_input) */
export function resolveHistoryOptions(o: HistoryOptions = {}): ResolvedHistoryOptions {
  const recent = o.recent ?? 10;
  const likeThreshold = o.likeThreshold ?? 4;
  const dislikeThreshold = o.dislikeThreshold ?? likeThreshold - 1;
  if (!Number.isInteger(recent) || recent < 1) throw new ChatRecError("invalid_input", `history recent must be a positive integer, not ${recent}`);
  if (!Number.isFinite(likeThreshold) || !Number.isFinite(dislikeThreshold)) throw new ChatRecError("invalid_input", "history thresholds must be finite numbers");
  if (dislikeThreshold >= likeThreshold) {
    throw new ChatRecError("invalid_input", `dislikeThreshold (${dislikeThreshold}) must be below likeThreshold (${likeThreshold})`);
  }
  return { recent, likeThreshold, dislikeThreshold };
}

/**
 * Every user's interactions in time order (ties: file order), built once from an interaction log,
 * with the TALLRec liked/disliked split of the most recent ones.
 */
export class HistoryIndex {
  /** Effective options. */
  readonly options: ResolvedHistoryOptions;
  private readonly rowsByUser: Int32Array[];

  constructor(
    /** The interaction log (ratings and timestamps). */
    readonly interactions: Interactions,
    options: HistoryOptions = {},
  ) {
    this.options = resolveHistoryOptions(options);
    const n = interactions.users.size;
    const counts = new Int32Array(n);
    for (let r = 0; r < interactions.length; r++) counts[interactions.userIdx[r]]++;
    const rows = Array.from({ length: n }, (_, u) => new Int32Array(counts[u]));
    const fill = new Int32Array(n);
    for (let r = 0; r < interactions.length; r++) {
      const u = interactions.userIdx[r];
      rows[u][fill[u]++] = r;
    }
    const ts = interactions.timestamps;
    for (const list of rows) list.sort((a, b) => ts[a] - ts[b] || a - b);
    this.rowsByUser = rows;
  }

  /** Whether the log knows `user`. */
  has(user: Id): boolean {
    return this.interactions.users.has(user);
  }

  /** Number of users. */
  get size(): number {
    return this.interactions.users.size;
  }

  /**
   * The user's history.
   * @throws ChatRecError (unknown_user) for a user not in the data.
   */
  get(user: Id): UserHistory {
    const u = this.interactions.users.get(user);
    if (u === undefined) throw new ChatRecError("unknown_user", `unknown user ${JSON.stringify(String(user))}: not in the interaction data`);
    const { itemIdx, ratings, timestamps, items } = this.interactions;
    // the latest interaction per item wins
    const latest = new Map<number, number>();
    for (const r of this.rowsByUser[u]) {
      latest.delete(itemIdx[r]);
      latest.set(itemIdx[r], r);
    }
    const interactions: RatedItem[] = [...latest.values()].map((r) => ({ item: items.id(itemIdx[r]), rating: ratings[r], timestamp: timestamps[r] }));
    const { liked, disliked } = splitRecent(interactions, this.options);
    return { user: String(user), interactions, liked, disliked };
  }

  /** Ids of every item the user interacted with. @throws ChatRecError (unknown_user) */
  seen(user: Id): Set<string> {
    return new Set(this.get(user).interactions.map((x) => x.item));
  }

  /** Number of interactions of every item, by item id (items never rated are absent). */
  itemCounts(): Map<string, number> {
    const out = new Map<string, number>();
    const { itemIdx, items } = this.interactions;
    for (let r = 0; r < itemIdx.length; r++) {
      const id = items.id(itemIdx[r]);
      out.set(id, (out.get(id) ?? 0) + 1);
    }
    return out;
  }
}

/** TALLRec's split of the most recent `recent` interactions (given oldest first). */
export function splitRecent(interactions: readonly RatedItem[], options: HistoryOptions = {}): { liked: string[]; disliked: string[] } {
  const o = resolveHistoryOptions(options);
  const window = interactions.slice(Math.max(0, interactions.length - o.recent));
  return {
    liked: window.filter((x) => x.rating >= o.likeThreshold).map((x) => x.item),
    disliked: window.filter((x) => x.rating <= o.dislikeThreshold).map((x) => x.item),
  };
}

/** The display title of an item: the catalog's title, or `item <id>` when the catalog lacks it. */
export function titleOf(catalog: ItemCatalog, item: string): string {
  return catalog.get(item)?.title ?? `item ${item}`;
}

/** A history as the titles TALLRec's prompt lists. */
export interface TitledHistory {
  liked: string[];
  disliked: string[];
}

/** Maps item ids to titles. */
export function titledHistory(catalog: ItemCatalog, h: { liked: readonly string[]; disliked: readonly string[] }): TitledHistory {
  return { liked: h.liked.map((i) => titleOf(catalog, i)), disliked: h.disliked.map((i) => titleOf(catalog, i)) };
}

/**
 * The TALLRec prompt for one candidate: structured fields that render exactly as TALLRec's data
 * (`User Preference: "A (1995)", "B (1996)"` ...). Every candidate of a user shares the text up to
 * the target, so the engine evaluates the history once for all of them.
 */
export function tallrecPrompt(history: TitledHistory, target: string, domain: Domain = "movie"): StructuredPrompt {
  return { domain, liked: history.liked, disliked: history.disliked, target };
}
