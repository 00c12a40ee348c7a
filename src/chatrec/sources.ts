/**
 * Loading what Chat-REC runs on: interactions (MovieLens-100K `u.data` or a
 * `user,item,rating,timestamp` CSV), item metadata (`u.item` or an `item,title,genres` CSV), and a
 * candidate generator, fitted in-process or loaded from a model file.
 *
 * @module
 */
import { existsSync, statSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { basename, join } from "node:path";

import { codeOf } from "../errors.js";
import type { Recommender } from "../recsys/base.js";
import { loadInteractionsCsv, loadItemsCsv, loadMovieLens100k, loadMovieLensItems, loadMovieLensRatings } from "../recsys/dataset-files.js";
import { RecsysError } from "../recsys/errors.js";
import type { Interactions } from "../recsys/interactions.js";
import { ItemCatalog } from "../recsys/items.js";
import { ItemKnnRecommender } from "../recsys/knn.js";
import { loadRecommender } from "../recsys/load.js";
import { BiasedMfPredictor, BprRecommender } from "../recsys/mf.js";
import { PopularityRecommender } from "../recsys/popularity.js";
import { ChatRecError } from "./errors.js";

/** Where the data comes from: a MovieLens-100K folder, or files. */
export interface DataSource {
  /** A MovieLens-100K folder (u.data, u.item, u.genre). */
  ml100k?: string;
  /** Interactions: a MovieLens `u.data` file (tab separated) or a CSV with a header `user,item,rating,timestamp`. */
  ratings?: string;
  /** Items: a MovieLens `u.item` file or a CSV with a header `item,title,genres` (genres separated by `|`). */
  items?: string;
}

/** Loaded data. */
export interface LoadedData {
  interactions: Interactions;
  catalog: ItemCatalog;
  /** Where it came from, in words. */
  description: string;
  /** True when there was no item file: titles are the item ids. */
  titlesMissing: boolean;
  /** User profiles in words by user id (MovieLens-100K's u.user, when present). */
  profiles?: Map<string, string>;
}

/**
 * Parses MovieLens-100K `u.user` (`id|age|gender|occupation|zip`) into profiles in words
 * ("a 30-year-old man, administrator"). Malformed lines are skipped.
 */
export function parseMovieLensUsers(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of text.split(/\r?\n/)) {
    const f = line.split("|");
    if (f.length !== 5 || !/^\d+$/.test(f[0]) || !/^\d+$/.test(f[1])) continue;
    const who = f[2] === "M" ? "man" : f[2] === "F" ? "woman" : "person";
    const job = f[3].trim() && f[3].trim() !== "none" && f[3].trim() !== "other" ? `, ${f[3].trim()}` : "";
    out.set(f[0], `a ${Number(f[1])}-year-old ${who}${job}`);
  }
  return out;
}

function isMovieLensFile(path: string, name: string): boolean {
  const b = basename(path);
  return b === name || b.endsWith(`.${name.split(".")[1]}`);
}

/** `read()`, with a failure to read `what` (a bad row, a missing file) as a ChatRecError naming it. */
async function reading<T>(what: string, read: () => Promise<T>): Promise<T> {
  try {
    return await read();
  } catch (err) {
    wrap(err, what);
  }
}

function wrap(err: unknown, what: string): never {
  // a recommender error keeps its code where it has one of the vocabulary (e.g. invalid_data)
  if (err instanceof RecsysError) {
    const code = codeOf(err);
    throw new ChatRecError(code === "internal" ? "invalid_input" : code, `${what}: ${err.message}`, { cause: err });
  }
  const e = err as NodeJS.ErrnoException;
  if (e && (e.code === "ENOENT" || e.code === "EISDIR" || e.code === "EACCES")) throw new ChatRecError("invalid_input", `${what}: cannot read ${e.path ?? "the file"} (${e.code})`);
  throw err;
}

/**
 * Loads interactions and items.
 * @throws ChatRecError (invalid_input) naming the file and the problem.
 */
export async function loadData(source: DataSource): Promise<LoadedData> {
  if (source.ml100k) {
    const dir = source.ml100k;
    if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new ChatRecError("invalid_input", `--data ${dir}: not a folder (expected MovieLens-100K's ml-100k folder with u.data, u.item, u.genre)`);
    for (const f of ["u.data", "u.item", "u.genre"]) if (!existsSync(join(dir, f))) throw new ChatRecError("invalid_input", `--data ${dir}: ${f} is missing (expected MovieLens-100K's ml-100k folder)`);
    return reading(dir, async () => {
      const ds = await loadMovieLens100k(dir);
      const users = join(dir, "u.user");
      const profiles = existsSync(users) ? parseMovieLensUsers(await readFile(users, "latin1")) : undefined;
      return { interactions: ds.interactions, catalog: ds.items, description: `MovieLens-100K at ${dir}`, titlesMissing: false, ...(profiles ? { profiles } : {}) };
    });
  }
  if (!source.ratings) throw new ChatRecError("invalid_input", "no data: pass --data DIR (MovieLens-100K) or --ratings FILE [--items FILE]");
  const ratings = source.ratings;
  const interactions = await reading(ratings, () => (isMovieLensFile(ratings, "u.data") ? loadMovieLensRatings(ratings) : loadInteractionsCsv(ratings)));
  if (interactions.length === 0) throw new ChatRecError("invalid_input", `${source.ratings}: no interactions`);
  let catalog: ItemCatalog;
  let titlesMissing = false;
  const items = source.items;
  if (items) {
    catalog = await reading(items, () => (isMovieLensFile(items, "u.item") ? loadMovieLensItems(items) : loadItemsCsv(items)));
  } else {
    catalog = new ItemCatalog(interactions.items.ids().map((id) => ({ id, title: id, genres: [] })));
    titlesMissing = true;
  }
  return { interactions, catalog, description: `${source.ratings}${source.items ? ` with ${source.items}` : ""}`, titlesMissing };
}

/** The candidate generators that can be fitted in-process. */
export type RecommenderKind = "popularity" | "knn" | "bpr" | "mf";

/** All of them, in table order. */
export const RECOMMENDER_KINDS: readonly RecommenderKind[] = ["popularity", "knn", "bpr", "mf"];

/** Names of the kinds in tables. */
export const RECOMMENDER_NAMES: Readonly<Record<RecommenderKind, string>> = {
  popularity: "Popularity",
  knn: "Item-kNN",
  bpr: "BPR-MF",
  mf: "Biased MF",
};

/**
 * Fits a recommender with its default hyper-parameters (chosen on validation splits of
 * MovieLens-100K's training data by src/recsys): "knn" item-based kNN (implicit cosine, 50
 * neighbours), "bpr" BPR-MF (32 factors), "mf" biased MF ranking by predicted rating, "popularity".
 */
export function fitRecommender(kind: RecommenderKind, train: Interactions, options: { seed?: number } = {}): Recommender {
  switch (kind) {
    case "popularity":
      return new PopularityRecommender().fit(train);
    case "knn":
      return new ItemKnnRecommender().fit(train);
    case "bpr":
      return new BprRecommender({ seed: options.seed }).fit(train);
    case "mf":
      return new BiasedMfPredictor({ seed: options.seed }).fit(train);
    default:
      throw new ChatRecError("invalid_input", `unknown recommender ${JSON.stringify(kind)} (choose ${RECOMMENDER_KINDS.join(", ")})`);
  }
}

/**
 * Loads a recommender saved with `save()` (any kind).
 * @throws ChatRecError (invalid_input) for a missing or unreadable file.
 */
export async function loadRecommenderFile(path: string): Promise<Recommender> {
  return reading(path, () => loadRecommender(path));
}
