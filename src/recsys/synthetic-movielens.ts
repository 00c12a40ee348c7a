/**
 * Generated MovieLens-format data: a seeded, deterministic stand-in for MovieLens-100K (which
 * may not be redistributed) with the same files and formats and a similar structure, so that
 * tests, demos and benchmarks run anywhere through the ordinary loaders
 * ({@link loadMovieLens100k}, Chat-REC's `loadData`).
 *
 * Files, as in `ml-100k/`: `u.data` (tab separated `user item rating timestamp`, rows in no
 * particular order), `u.item` (pipe separated `id|title|release date|video release date|URL|19
 * genre flags`, Latin-1), `u.user` (`id|age|gender|occupation|zip`), `u.genre`, `u.occupation`,
 * `u.info`, and a README saying what the folder is.
 *
 * The model behind the ratings:
 * - items have 1–4 of the 19 MovieLens genres (drawn with MovieLens-like frequencies), a title
 *   "Name (YEAR)" (articles moved to the end as MovieLens writes them, a few non-English titles
 *   with Latin-1 letters, series such as "Name 2 (YEAR)"), a release date, a Zipf-like
 *   popularity (weight ∝ (rank + 8)^-1.1) and a hidden quality;
 * - users have an age, gender, occupation and zip code, a number of ratings (at least 20,
 *   log-normally spread: a few users rate hundreds of items), and genre tastes (2–4 favourite
 *   genres, 1–2 disliked ones, shifted a little by age and gender); some users are fans of a
 *   series and watch and like its films;
 * - a user picks items with probability ∝ popularity × exp(2.2 × taste), so item co-occurrence
 *   carries taste and item-kNN or matrix factorisation beat popularity, and rates them
 *   round(2.85 + user bias + item quality + 0.8 × taste + noise), clamped to 1–5;
 * - each user's ratings fall in a few sessions within MovieLens-100K's time span
 *   (September 1997 – April 1998).
 *
 * Everything comes from one {@link Rng}: the same options give the same bytes on every machine.
 *
 * @module
 */

import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";

import { MOVIELENS_100K_GENRES } from "./dataset-files.js";
import { InvalidArgumentError } from "./errors.js";
import { foldTitle } from "./items.js";
import { DEFAULT_SEED, Rng } from "./seed.js";

/** An item to include by name (e.g. well-known films that a test refers to). */
export interface SyntheticTitle {
  /** The title as MovieLens writes it, with its year: `"Godfather, The (1972)"`. */
  title: string;
  /** MovieLens genre names. */
  genres: readonly string[];
  /** Items with the same series name form a series (watched and liked together by its fans). */
  series?: string;
}

/** Options of {@link generateSyntheticMovieLens}. */
export interface SyntheticMovieLensOptions {
  /** Number of users (ids 1..users). Default 600. */
  users?: number;
  /** Number of items (ids 1..items), including `titles`. Default 1000. */
  items?: number;
  /** Seed of the generator. Default {@link DEFAULT_SEED}. */
  seed?: number;
  /** Items given by name: ids 1..titles.length, each among the most popular 15% of items. */
  titles?: readonly SyntheticTitle[];
  /** Fewest ratings a user has (MovieLens-100K: 20). Default 20. */
  minRatingsPerUser?: number;
}

/** The generated files, and what they were generated from. */
export interface SyntheticMovieLens {
  /** File name → contents, in the encodings of MovieLens-100K (u.item is Latin-1). */
  files: Record<SyntheticMovieLensFile, Buffer>;
  /** Counts. */
  users: number;
  items: number;
  ratings: number;
  /** The hidden structure, for tests: series (item ids, in order) and each user's favourite genres. */
  truth: {
    series: Array<{ name: string; items: string[] }>;
    favouriteGenres: Map<string, string[]>;
  };
}

/** The files written. */
export type SyntheticMovieLensFile = "u.data" | "u.item" | "u.user" | "u.genre" | "u.occupation" | "u.info" | "README";

/** MovieLens-100K's occupations (u.occupation), with roughly its shares of users. */
const OCCUPATIONS: ReadonlyArray<readonly [string, number]> = [
  ["administrator", 79],
  ["artist", 28],
  ["doctor", 7],
  ["educator", 95],
  ["engineer", 67],
  ["entertainment", 18],
  ["executive", 32],
  ["healthcare", 16],
  ["homemaker", 7],
  ["lawyer", 12],
  ["librarian", 51],
  ["marketing", 26],
  ["none", 9],
  ["other", 105],
  ["programmer", 66],
  ["retired", 14],
  ["salesman", 12],
  ["scientist", 31],
  ["student", 196],
  ["technician", 27],
  ["writer", 45],
];

/** Relative frequencies of the genres on items (index = u.genre position; "unknown" never drawn). */
const GENRE_WEIGHTS = [0, 251, 135, 42, 122, 505, 109, 50, 725, 22, 24, 92, 56, 61, 247, 101, 251, 71, 27];
const G = MOVIELENS_100K_GENRES.length;
const genreIndex = new Map(MOVIELENS_100K_GENRES.map((g, i) => [g, i]));
const gi = (name: string): number => genreIndex.get(name)!;

/** Release decades and their weights; the 1990s by year. */
const DECADES: ReadonlyArray<readonly [number, number]> = [
  [1920, 2],
  [1930, 29],
  [1940, 45],
  [1950, 57],
  [1960, 46],
  [1970, 55],
  [1980, 110],
];
const NINETIES: readonly number[] = [40, 45, 55, 70, 110, 250, 290, 260, 60]; // 1990..1998

const ADJECTIVES = (
  "Silent Broken Golden Last Lost Hidden Crimson Midnight Wild Secret Bright Frozen Burning Distant Hollow Quiet Restless " +
  "Savage Sweet Bitter Lonely Electric Iron Velvet Paper Glass Stolen Forgotten Endless Northern Southern Little Crooked " +
  "Perfect Strange Brave Twisted Scarlet Emerald Painted Sleeping Wandering Reckless Gentle Final Secondhand Borrowed"
).split(" ");
const NOUNS = (
  "River Harbor Summer Winter Highway Kingdom Garden Mirror Engine Island Horizon Shadow Promise Letter Station Canyon " +
  "Tide Orchard Frontier Circus Stranger Detective Dancer Sheriff Captain Witness Daughter Brothers Angels Thieves Wolves " +
  "Hearts Bones Streets Dreams Nights Games Lantern Compass Carnival Lighthouse Valley Bridge Country Season Voyage Alibi"
).split(" ");
const NAMES = "Charlie Rosa Max Eddie Lucy Frank Nora Billy Vera Otto Hank Stella Walter Ruby Jack Molly Gus Iris Leo Mabel".split(" ");
const PLACES = "Paris Memphis Tangier Brooklyn Reno Havana Montana Vienna Texas Dublin Berlin Tokyo Lisbon Alaska Chicago Marseille".split(" ");
/** Words with Latin-1 letters for non-English titles, and their articles. */
const FOREIGN = "Rêve Été Château Café Garçon Fräulein Señorita Mañana Façade Forêt Île Bête Fête Noël Mémoire Déjà Niño Smörgås Øresund Straße".split(" ");
const FOREIGN_ARTICLES = ["Le", "La", "Les", "L'", "Der", "Die", "El", "Il"];

/** MovieLens-100K's first and last timestamps (1997-09-20, 1998-04-22). */
const T_START = 874724710;
const T_END = 893286638;

function pick<T>(rng: Rng, xs: readonly T[]): T {
  return xs[rng.nextInt(xs.length)];
}

function pickWeighted(rng: Rng, weights: readonly number[]): number {
  let total = 0;
  for (const w of weights) total += w;
  let x = rng.next() * total;
  for (let i = 0; i < weights.length; i++) {
    x -= weights[i];
    if (x < 0 && weights[i] > 0) return i;
  }
  for (let i = weights.length - 1; i >= 0; i--) if (weights[i] > 0) return i;
  return 0;
}

function checkCount(name: string, v: number, min: number): number {
  if (!(Number.isInteger(v) && v >= min)) throw new InvalidArgumentError(`${name} must be an integer >= ${min}, got ${v}`);
  return v;
}

const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

interface Item {
  id: number;
  title: string;
  year?: number;
  date: string;
  genres: number[];
  popularity: number;
  quality: number;
  series: number; // -1: none
}

/** A title in MovieLens's style, without its year. */
function makeName(rng: Rng): string {
  const r = rng.next();
  if (r < 0.28) return `${pick(rng, ADJECTIVES)} ${pick(rng, NOUNS)}`;
  if (r < 0.46) return `${pick(rng, ADJECTIVES)} ${pick(rng, NOUNS)}, The`;
  if (r < 0.56) return `${pick(rng, NOUNS)} of the ${pick(rng, ADJECTIVES)} ${pick(rng, NOUNS)}`;
  if (r < 0.64) return `${pick(rng, NAMES)}'s ${pick(rng, NOUNS)}`;
  if (r < 0.72) return `${pick(rng, NOUNS)} in ${pick(rng, PLACES)}, A`;
  if (r < 0.8) return `${pick(rng, PLACES)} ${pick(rng, NOUNS)}`;
  if (r < 0.86) return `${pick(rng, NAMES)} and ${pick(rng, NAMES)}`;
  if (r < 0.94) return `${pick(rng, NOUNS)} ${pick(rng, ["Road", "Blues", "Story", "Affair", "Express", "Club"])}`;
  const a = pick(rng, FOREIGN);
  let b = pick(rng, FOREIGN);
  while (b === a) b = pick(rng, FOREIGN);
  return `${a} ${rng.next() < 0.5 ? "de " : ""}${b}, ${pick(rng, FOREIGN_ARTICLES)}`;
}

function drawYear(rng: Rng, genres: readonly number[]): number {
  if (genres.includes(gi("Film-Noir"))) return 1940 + rng.nextInt(19);
  if (rng.next() < 0.78) return 1990 + pickWeighted(rng, NINETIES);
  const [decade] =
    DECADES[
      pickWeighted(
        rng,
        DECADES.map(([, w]) => w),
      )
    ];
  return decade + rng.nextInt(10);
}

function drawGenres(rng: Rng): number[] {
  const n = 1 + pickWeighted(rng, [50, 34, 13, 3]);
  const w = [...GENRE_WEIGHTS];
  const out: number[] = [];
  while (out.length < n) {
    const g = pickWeighted(rng, w);
    out.push(g);
    w[g] = 0;
    // a few genres travel together
    if (g === gi("Animation") && w[gi("Children's")] > 0 && rng.next() < 0.7) w[gi("Children's")] *= 20;
    if (g === gi("Crime") && w[gi("Thriller")] > 0) w[gi("Thriller")] *= 3;
    if (g === gi("Romance") && w[gi("Comedy")] > 0) w[gi("Comedy")] *= 2;
  }
  return out.sort((a, b) => a - b);
}

function releaseDate(rng: Rng, year: number): string {
  if (year < 1990) return `01-Jan-${year}`;
  const day = 1 + rng.nextInt(28);
  return `${String(day).padStart(2, "0")}-${MONTHS[rng.nextInt(12)]}-${year}`;
}

/**
 * Generates MovieLens-format data in memory. See the module description for the model.
 * @throws InvalidArgumentError on bad counts or unknown genres in `titles`.
 */
export function generateSyntheticMovieLens(options: SyntheticMovieLensOptions = {}): SyntheticMovieLens {
  const nUsers = checkCount("users", options.users ?? 600, 1);
  const titles = options.titles ?? [];
  const nItems = checkCount("items", options.items ?? 1000, titles.length + 2);
  const minRatings = checkCount("minRatingsPerUser", options.minRatingsPerUser ?? 20, 1);
  if (minRatings > nItems) throw new InvalidArgumentError(`minRatingsPerUser (${minRatings}) exceeds items (${nItems})`);
  const rng = new Rng(options.seed ?? DEFAULT_SEED);

  // ---- items ------------------------------------------------------------------------------
  // popularity ranks: the named titles among the top 15%, the "unknown" item (last id) near the bottom
  const ranks = new Array<number>(nItems).fill(-1);
  const topSlots = rng.shuffle(Array.from({ length: Math.max(titles.length, Math.floor(nItems * 0.15)) }, (_, i) => i));
  titles.forEach((_, k) => (ranks[k] = topSlots[k]));
  const taken = new Set(ranks.filter((r) => r >= 0));
  const rest = rng.shuffle(Array.from({ length: nItems }, (_, r) => r).filter((r) => !taken.has(r) && r !== nItems - 1));
  ranks[nItems - 1] = nItems - 1;
  for (let i = 0, k = 0; i < nItems; i++) if (ranks[i] < 0) ranks[i] = rest[k++];

  const items: Item[] = [];
  const used = new Set<string>();
  const seriesNames: string[] = [];
  const seriesIdx = new Map<string, number>();
  const popularity = (rank: number) => Math.pow(rank + 8, -1.1);
  for (const [k, t] of titles.entries()) {
    const genres = t.genres.map((g) => {
      const i = genreIndex.get(g);
      if (i === undefined) throw new InvalidArgumentError(`titles[${k}]: unknown genre ${JSON.stringify(g)} (MovieLens genres: ${MOVIELENS_100K_GENRES.join(", ")})`);
      return i;
    });
    const year = /\((\d{4})\)\s*$/.exec(t.title);
    if (!year) throw new InvalidArgumentError(`titles[${k}]: expected a title ending in "(YEAR)", got ${JSON.stringify(t.title)}`);
    if (/[^\u0000-\u00ff]/.test(t.title)) throw new InvalidArgumentError(`titles[${k}]: ${JSON.stringify(t.title)} has characters outside Latin-1 (u.item is Latin-1)`);
    if (t.title.includes("|") || /[\r\n]/.test(t.title)) throw new InvalidArgumentError(`titles[${k}]: ${JSON.stringify(t.title)} has a "|" or a line break`);
    if (used.has(foldTitle(t.title))) throw new InvalidArgumentError(`titles[${k}]: duplicate title ${JSON.stringify(t.title)}`);
    used.add(foldTitle(t.title));
    let series = -1;
    if (t.series !== undefined) {
      if (!seriesIdx.has(t.series)) seriesIdx.set(t.series, seriesNames.push(t.series) - 1);
      series = seriesIdx.get(t.series)!;
    }
    items.push({
      id: k + 1,
      title: t.title,
      year: Number(year[1]),
      date: releaseDate(rng, Number(year[1])),
      genres: genres.sort((a, b) => a - b),
      popularity: popularity(ranks[k]),
      quality: 0.35 + 0.25 * rng.normal(),
      series,
    });
  }
  // generated series: a base title and sequels, about one item in twelve
  const free = nItems - 1 - titles.length;
  let id = titles.length + 1;
  const nSeries = Math.floor(free / 40);
  const addItem = (title: string, year: number, genres: number[], series: number) => {
    items.push({ id, title: `${title} (${year})`, year, date: releaseDate(rng, year), genres, popularity: popularity(ranks[id - 1]), quality: 0.3 - (0.6 * ranks[id - 1]) / nItems + 0.4 * rng.normal(), series });
    id++;
  };
  const freshName = (): string => {
    for (;;) {
      const name = makeName(rng);
      if (!used.has(foldTitle(name))) {
        used.add(foldTitle(name));
        return name;
      }
    }
  };
  for (let s = 0; s < nSeries; s++) {
    const size = 2 + pickWeighted(rng, [50, 35, 15]);
    let base = freshName();
    const article = /, (The|A|Le|La|Les|L'|Der|Die|El|Il)$/.exec(base);
    if (article) base = base.slice(0, -article[0].length);
    const genres = drawGenres(rng);
    let year = Math.min(1996, drawYear(rng, genres));
    const name = seriesNames.push(base) - 1;
    for (let k = 0; k < size && id <= nItems - 1; k++) {
      const title = k === 0 ? base : k < 3 ? `${base} ${k + 1}` : `${base}: ${pick(rng, ADJECTIVES)} ${pick(rng, NOUNS)}`;
      used.add(foldTitle(title));
      addItem(article && k === 0 ? `${title}, ${article[1]}` : title, year, genres, name);
      year = Math.min(1998, year + 1 + rng.nextInt(4));
    }
  }
  while (id <= nItems - 1) {
    const genres = drawGenres(rng);
    addItem(freshName(), drawYear(rng, genres), genres, -1);
  }
  // MovieLens-100K has an item titled "unknown" with no date and only the "unknown" genre
  items.push({ id: nItems, title: "unknown", date: "", genres: [gi("unknown")], popularity: popularity(nItems - 1), quality: -0.5, series: -1 });

  // ---- users ------------------------------------------------------------------------------
  const userLines: string[] = [];
  const favouriteGenres = new Map<string, string[]>();
  const taste: Float64Array[] = [];
  const fans: Array<Set<number>> = [];
  const counts: number[] = [];
  const bias: number[] = [];
  const occWeights = OCCUPATIONS.map(([, w]) => w);
  const drawable = GENRE_WEIGHTS.map((w) => Math.pow(w, 0.7));
  const maxRatings = Math.max(minRatings, Math.floor(nItems * 0.5));
  for (let u = 1; u <= nUsers; u++) {
    const age = Math.max(7, Math.min(73, Math.round(rng.next() < 0.08 ? 14 + 4 * rng.normal() : 33 + 11 * rng.normal())));
    const gender = rng.next() < 0.71 ? "M" : "F";
    let occupation = OCCUPATIONS[pickWeighted(rng, occWeights)][0];
    if (age < 18 && occupation !== "none") occupation = rng.next() < 0.9 ? "student" : "none";
    if (age > 64 && rng.next() < 0.6) occupation = "retired";
    const zip =
      rng.next() < 0.02
        ? `${pick(rng, ["T", "V", "K", "L", "M", "E"])}${rng.nextInt(10)}${pick(rng, ["H", "A", "R", "S"])}${rng.nextInt(10)}${pick(rng, ["N", "B", "J", "X"])}`
        : String(rng.nextInt(100000)).padStart(5, "0");
    userLines.push(`${u}|${age}|${gender}|${occupation}|${zip}`);

    const t = new Float64Array(G);
    for (let g = 1; g < G; g++) t[g] = 0.25 * rng.normal();
    const w = [...drawable];
    const favs: number[] = [];
    const nFav = 2 + pickWeighted(rng, [35, 40, 25]);
    for (let k = 0; k < nFav; k++) {
      const g = pickWeighted(rng, w);
      w[g] = 0;
      t[g] = 1 + 0.5 * rng.next();
      favs.push(g);
    }
    const nBad = 1 + pickWeighted(rng, [60, 40]);
    for (let k = 0; k < nBad; k++) {
      const g = pickWeighted(rng, w);
      w[g] = 0;
      t[g] = -1 - 0.3 * rng.next();
    }
    if (age < 18) for (const g of ["Children's", "Animation"]) t[gi(g)] += 0.8;
    if (age >= 50) for (const g of ["Drama", "War", "Film-Noir", "Western"]) t[gi(g)] += 0.5;
    if (gender === "F") t[gi("Romance")] += 0.4;
    else for (const g of ["Action", "Sci-Fi"]) t[gi(g)] += 0.3;
    taste.push(t);
    favouriteGenres.set(
      String(u),
      favs.sort((a, b) => a - b).map((g) => MOVIELENS_100K_GENRES[g]),
    );
    counts.push(Math.min(maxRatings, minRatings + Math.max(0, Math.round(Math.exp(Math.log(32) + 1.0 * rng.normal()) - 6))));
    bias.push(0.5 * rng.normal());
    fans.push(new Set());
  }
  const affinity = (u: number, it: Item): number => {
    let s = 0;
    for (const g of it.genres) s += taste[u][g];
    return s / it.genres.length;
  };
  // series fans: more likely among users who like the series' genres
  const seriesBase = seriesNames.map((_, s) => items.find((it) => it.series === s)!);
  for (let u = 0; u < nUsers; u++) {
    seriesBase.forEach((it, s) => {
      if (rng.next() < 0.04 + 0.15 * Math.max(0, affinity(u, it))) fans[u].add(s);
    });
  }

  // ---- ratings ----------------------------------------------------------------------------
  const rows: string[] = [];
  const keys = new Float64Array(nItems);
  const order = new Int32Array(nItems);
  for (let u = 0; u < nUsers; u++) {
    // weighted sampling without replacement (Efraimidis–Spirakis: the n largest log(U)/w)
    for (let i = 0; i < nItems; i++) {
      const it = items[i];
      const fan = it.series >= 0 && fans[u].has(it.series);
      const w = it.popularity * Math.exp(2.2 * affinity(u, it)) * (fan ? 20 : 1);
      let x = 0;
      while (x === 0) x = rng.next();
      keys[i] = Math.log(x) / w;
      order[i] = i;
    }
    const chosen = Array.from(order)
      .sort((a, b) => keys[b] - keys[a] || a - b)
      .slice(0, counts[u]);
    rng.shuffle(chosen); // the order they were watched in
    const span = Math.min(T_END - T_START - 1, Math.floor(86400 * (1 + 60 * rng.next() * rng.next())));
    let t = T_START + rng.nextInt(T_END - T_START - span);
    for (const i of chosen) {
      const it = items[i];
      const fan = it.series >= 0 && fans[u].has(it.series) ? 0.7 : 0;
      const r = 2.85 + bias[u] + it.quality + 0.8 * affinity(u, it) + fan + 0.85 * rng.normal();
      const rating = Math.max(1, Math.min(5, Math.round(r)));
      rows.push(`${u + 1}\t${it.id}\t${rating}\t${t}`);
      t = Math.min(T_END, t + (rng.next() < 0.93 ? 20 + Math.floor(-120 * Math.log(1 - rng.next())) : Math.floor(-span * 0.2 * Math.log(1 - rng.next()))));
    }
  }
  rng.shuffle(rows);

  // ---- files ------------------------------------------------------------------------------
  const itemLines = items.map((it) => {
    const flags = Array.from({ length: G }, (_, g) => (it.genres.includes(g) ? "1" : "0")).join("|");
    return `${it.id}|${it.title}|${it.date}|||${flags}`;
  });
  const seed = options.seed ?? DEFAULT_SEED;
  const readme =
    "SYNTHETIC DATA in the formats of MovieLens-100K (ml-100k), generated by tallrec's\n" +
    `src/recsys/synthetic-movielens.ts (seed ${seed}, ${nUsers} users, ${nItems} items, ${rows.length} ratings).\n` +
    "It is not MovieLens data: users, titles, genres and ratings come from a random model.\n" +
    "u.data: user id | item id | rating | timestamp (tab separated); u.item: Latin-1, pipe separated;\n" +
    "u.user: user id | age | gender | occupation | zip code; u.genre, u.occupation: as in ml-100k.\n";
  const files: Record<SyntheticMovieLensFile, Buffer> = {
    "u.data": Buffer.from(rows.join("\n") + "\n", "latin1"),
    "u.item": Buffer.from(itemLines.join("\n") + "\n", "latin1"),
    "u.user": Buffer.from(userLines.join("\n") + "\n", "latin1"),
    "u.genre": Buffer.from(MOVIELENS_100K_GENRES.map((g, i) => `${g}|${i}`).join("\n") + "\n\n", "latin1"),
    "u.occupation": Buffer.from(OCCUPATIONS.map(([o]) => o).join("\n") + "\n", "latin1"),
    "u.info": Buffer.from(`${nUsers} users\n${nItems} items\n${rows.length} ratings\n`, "latin1"),
    README: Buffer.from(readme, "latin1"),
  };
  const series = seriesNames.map((name, s) => ({ name, items: items.filter((it) => it.series === s).map((it) => String(it.id)) }));
  return { files, users: nUsers, items: nItems, ratings: rows.length, truth: { series, favouriteGenres } };
}

/**
 * Generates MovieLens-format data (see {@link generateSyntheticMovieLens}) and writes its files
 * into `dir` (created if needed), ready for {@link loadMovieLens100k}.
 */
export async function writeSyntheticMovieLens(dir: string, options: SyntheticMovieLensOptions = {}): Promise<SyntheticMovieLens> {
  const data = generateSyntheticMovieLens(options);
  await mkdir(dir, { recursive: true });
  for (const [name, bytes] of Object.entries(data.files)) await writeFile(join(dir, name), bytes);
  return data;
}
