/**
 * Item metadata (titles, genres, release year) keyed by external item id,
 * with a title search used to resolve free-text mentions ("Toy Story") to ids.
 *
 * @module
 */

import { InvalidArgumentError } from "./errors.js";
import { type Id, IdMap } from "./interactions.js";

/** Metadata of one item. */
export interface ItemInfo {
  /** External item id (same string as in the interaction data). */
  readonly id: string;
  /** Display title, e.g. `"Toy Story (1995)"`. */
  readonly title: string;
  /** Genre names, in file order. */
  readonly genres: readonly string[];
  /** Release year, when known (from the title's `(yyyy)` or the release date). */
  readonly year?: number;
  /** Release date as written in the source file, when present. */
  readonly releaseDate?: string;
  /** A URL (MovieLens: IMDb link), when present. */
  readonly url?: string;
}

/** An immutable collection of {@link ItemInfo} keyed by item id. */
export class ItemCatalog extends IdMap<ItemInfo> implements Iterable<ItemInfo> {
  private readonly folded: { key: string; info: ItemInfo }[] = [];

  /** @throws InvalidArgumentError on a duplicate id. */
  constructor(items: Iterable<ItemInfo>) {
    super("item");
    for (const info of items) {
      const frozen = Object.freeze({ ...info, genres: Object.freeze([...info.genres]) });
      this.put(info.id, frozen, "ItemCatalog");
      this.folded.push({ key: foldTitle(info.title), info: frozen });
    }
  }

  /** Metadata of `id`. @throws UnknownIdError when absent. */
  require(id: Id): ItemInfo {
    return this.lookup(id, "not in the item catalog");
  }

  /** Title of `id`. @throws UnknownIdError when absent. */
  title(id: Id): string {
    return this.require(id).title;
  }

  /** All item ids, in insertion order. */
  ids(): string[] {
    return [...this.byId.keys()];
  }

  /** Sorted list of all genre names used by at least one item. */
  genres(): string[] {
    const set = new Set<string>();
    for (const info of this.byId.values()) for (const g of info.genres) set.add(g);
    return [...set].sort();
  }

  [Symbol.iterator](): Iterator<ItemInfo> {
    return this.byId.values();
  }

  /**
   * Finds items whose title contains `query`, ignoring case, accents and
   * punctuation, and ignoring a trailing year in the query. Exact title
   * matches come first, then titles starting with the query, then other
   * matches; ties keep catalog order.
   *
   * Titles in MovieLens' "Name, The (1995)" form also match "The Name".
   */
  findByTitle(query: string, limit = 10): ItemInfo[] {
    if (!(limit >= 1)) throw new InvalidArgumentError(`limit must be >= 1, got ${limit}`);
    const q = foldTitle(query);
    if (q === "") return [];
    const ranked: { rank: number; order: number; info: ItemInfo }[] = [];
    this.folded.forEach(({ key, info }, order) => {
      const variants = [key, ...articleVariants(key)];
      let rank = 3;
      for (const v of variants) {
        if (v === q) rank = Math.min(rank, 0);
        else if (v.startsWith(q)) rank = Math.min(rank, 1);
        else if (v.includes(q)) rank = Math.min(rank, 2);
      }
      if (rank < 3) ranked.push({ rank, order, info });
    });
    ranked.sort((a, b) => a.rank - b.rank || a.order - b.order);
    return ranked.slice(0, limit).map((r) => r.info);
  }
}

/** Lower-cases, strips accents and punctuation, drops a trailing "(yyyy)" year. */
export function foldTitle(title: string): string {
  return title
    .normalize("NFD")
    .replace(/[\u0300-\u036f]/g, "")
    .toLowerCase()
    .replace(/\(\s*\d{4}\s*\)\s*$/, "")
    .replace(/[^\p{L}\p{N}]+/gu, " ")
    .trim();
}

const ARTICLES = ["the", "a", "an", "les", "la", "le", "il", "el", "das", "der", "die"];

/** "toy story" has none; "american president the" → "the american president". */
function articleVariants(folded: string): string[] {
  const out: string[] = [];
  const words = folded.split(" ");
  // "Name, The (alt title)": the article may sit before a parenthesised part, already flattened;
  // try moving each article found after the first word to the front.
  for (let i = 1; i < words.length; i++) {
    if (ARTICLES.includes(words[i])) {
      out.push([words[i], ...words.slice(0, i), ...words.slice(i + 1)].join(" "));
      break;
    }
  }
  return out;
}

/** Extracts a release year from a MovieLens-style title "Name (1995)". */
export function yearFromTitle(title: string): number | undefined {
  const m = /\((\d{4})\)\s*$/.exec(title);
  return m ? Number(m[1]) : undefined;
}
