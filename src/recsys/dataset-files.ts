/**
 * Loaders for interaction logs and item metadata:
 *
 * - MovieLens-100K `u.data` (tab separated `user item rating timestamp`),
 *   `u.item` (pipe separated, **Latin-1** encoded) and `u.genre`;
 * - CSV interactions (`user,item,rating,timestamp` with a header; column
 *   names configurable) and CSV items (`item,title,genres`, genres separated
 *   by `|`).
 *
 * CSV files are read by src/io's CSV parser (quoted fields, CRLF, BOM,
 * per-record Windows-1252 fallback for bytes that are not UTF-8, recovery
 * after a stray quote); see {@link readCsvRows}.
 *
 * Every malformed row raises a {@link DataFormatError} naming file, line and
 * field. Pass `errors: []` in the options to collect those errors instead:
 * bad rows are then skipped and appended to that array. Problems that make
 * the whole file unusable (a missing header column) always throw.
 *
 * Each `parse*` function works on in-memory text (or a `Buffer`, decoded as
 * the format requires); each `load*` function reads a file and calls it.
 *
 * @module
 */

import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { delimiterByte, parseCsv } from "../io/csv.js";
import { DataFormatError, InvalidArgumentError } from "./errors.js";
import { type Interactions, InteractionsBuilder } from "./interactions.js";
import { ItemCatalog, type ItemInfo, yearFromTitle } from "./items.js";

/** Options shared by all parsers and loaders. */
export interface ParseOptions {
  /** File name used in error messages. `load*` functions default it to the path; `parse*` to `"<input>"`. */
  file?: string;
  /**
   * When given, malformed rows are skipped and their errors appended here
   * instead of being thrown.
   */
  errors?: DataFormatError[];
}

/** Column names of an interactions CSV file. */
export interface InteractionColumns {
  /** Default `"user"`. */
  user?: string;
  /** Default `"item"`. */
  item?: string;
  /** Default `"rating"`; `null`: no rating column, every rating is 1 (implicit feedback). */
  rating?: string | null;
  /** Default `"timestamp"`; `null`: no time column, the row number is used. */
  timestamp?: string | null;
}

/** Options of {@link parseInteractionsCsv}. */
export interface InteractionsCsvOptions extends ParseOptions {
  columns?: InteractionColumns;
  /** Field delimiter, default `","`. */
  delimiter?: string;
}

/** Column names of an items CSV file. */
export interface ItemColumns {
  /** Default `"item"`. */
  item?: string;
  /** Default `"title"`. */
  title?: string;
  /** Default `"genres"`; `null`: no genre column. */
  genres?: string | null;
}

/** Options of {@link parseItemsCsv}. */
export interface ItemsCsvOptions extends ParseOptions {
  columns?: ItemColumns;
  /** Field delimiter, default `","`. */
  delimiter?: string;
  /** Separator between genres inside the genres field, default `"|"`. */
  genreSeparator?: string;
  /**
   * Encoding used when a `Buffer` is given: `"latin1"` decodes the whole
   * buffer as Latin-1; `"utf8"` (default) decodes each record as UTF-8, or
   * as Windows-1252 when its bytes are not valid UTF-8.
   */
  encoding?: "utf8" | "latin1";
}

/** Options of {@link parseMovieLensItems}. */
export interface MovieLensItemsOptions extends ParseOptions {
  /** Genre names by flag position (from `u.genre`); default: the 19 MovieLens-100K genres. */
  genres?: readonly string[];
}

/** The 19 MovieLens-100K genres in `u.genre` order. */
export const MOVIELENS_100K_GENRES: readonly string[] = Object.freeze([
  "unknown",
  "Action",
  "Adventure",
  "Animation",
  "Children's",
  "Comedy",
  "Crime",
  "Documentary",
  "Drama",
  "Fantasy",
  "Film-Noir",
  "Horror",
  "Musical",
  "Mystery",
  "Romance",
  "Sci-Fi",
  "Thriller",
  "War",
  "Western",
]);

/** Collects or throws a row error. */
function report(err: DataFormatError, options: Pick<ParseOptions, "errors">): void {
  if (options.errors) options.errors.push(err);
  else throw err;
}

function* lines(text: string): Generator<{ line: number; text: string }> {
  const parts = text.split("\n");
  for (let i = 0; i < parts.length; i++) {
    let t = parts[i];
    if (t.endsWith("\r")) t = t.slice(0, -1);
    if (i === 0 && t.charCodeAt(0) === 0xfeff) t = t.slice(1);
    if (t.trim() === "") continue;
    yield { line: i + 1, text: t };
  }
}

function parseInteger(s: string): number | undefined {
  return /^[+-]?\d+$/.test(s.trim()) ? Number(s) : undefined;
}

function parseNumber(s: string): number | undefined {
  const t = s.trim();
  if (t === "") return undefined;
  const v = Number(t);
  return Number.isFinite(v) ? v : undefined;
}

function asText(input: string | Buffer, encoding: "utf8" | "latin1"): string {
  return typeof input === "string" ? input : input.toString(encoding);
}

/** One CSV record with the 1-based line number it starts on. */
export interface CsvRow {
  line: number;
  fields: string[];
}

/** Options of {@link readCsvRows}. */
export interface CsvRowsOptions {
  /** Field delimiter, default `","`. */
  delimiter?: string;
  /** How a `Buffer` is decoded, as {@link ItemsCsvOptions.encoding}. */
  encoding?: "utf8" | "latin1";
  /** When given, malformed records are skipped and their errors appended here instead of being thrown. */
  errors?: DataFormatError[];
}

/**
 * Splits CSV text into records with src/io's parser (no header handling, no
 * field count check). Blank lines are skipped.
 * @param file label used in error messages.
 * @throws InvalidArgumentError for a delimiter that cannot work.
 * @throws DataFormatError naming line and column of a malformed record (an
 *   unterminated quoted field, a stray quote) unless `options.errors` collects it;
 *   the records after it are still read.
 */
export function* readCsvRows(input: string | Buffer, file: string, options: CsvRowsOptions | string = {}): Generator<CsvRow> {
  const opts = typeof options === "string" ? { delimiter: options } : options;
  try {
    delimiterByte(opts.delimiter);
  } catch (e) {
    throw new InvalidArgumentError((e as Error).message);
  }
  const data = typeof input === "string" || opts.encoding !== "latin1" ? input : input.toString("latin1");
  for (const rec of parseCsv(data, { delimiter: opts.delimiter, header: false }).records) {
    const bad = rec.problems?.find((p) => p.column !== undefined);
    if (bad) {
      report(new DataFormatError(file, bad.line, `column ${bad.column}`, bad.problem), opts);
      continue;
    }
    yield { line: rec.line, fields: rec.fields };
  }
}

/**
 * The data rows of a CSV file with a header row, each with the positions of
 * the wanted columns. Rows whose field count differs from the header's are
 * reported (see {@link report}) and skipped, as are malformed records.
 * @throws DataFormatError (always, even when collecting) when the file is
 *   empty or the header lacks a wanted column.
 */
function* csvTable<K extends string>(input: string | Buffer, wanted: Record<K, string | null>, file: string, options: CsvRowsOptions): Generator<CsvRow & { col: Record<K, number> }> {
  let col: Record<K, number> | undefined;
  let width = 0;
  for (const { line, fields } of readCsvRows(input, file, options)) {
    if (!col) {
      col = headerPositions(fields, wanted, file);
      width = fields.length;
      continue;
    }
    if (fields.length !== width) {
      report(new DataFormatError(file, line, "row", `expected ${width} fields as in the header, found ${fields.length}`, fields.join(",")), options);
      continue;
    }
    yield { line, fields, col };
  }
  if (!col) throw new DataFormatError(file, 1, "header", "file is empty: expected a header row");
}

/** The integer fields of a `u.data` row, in order: name, the test a value must pass, and the error's "expected ...". */
const U_DATA_FIELDS: ReadonlyArray<readonly [field: string, valid: (v: number) => boolean, expected: string]> = [
  ["user", (v) => v >= 1, "expected a positive integer id"],
  ["item", (v) => v >= 1, "expected a positive integer id"],
  ["rating", (v) => v >= 1 && v <= 5, "expected an integer from 1 to 5"],
  ["timestamp", (v) => v >= 0, "expected a non-negative integer (unix seconds)"],
];

/**
 * Parses MovieLens-100K `u.data`: one `user \t item \t rating \t timestamp`
 * row per line. User and item ids are positive integers, ratings integers
 * 1–5, timestamps non-negative integers (unix seconds).
 */
export function parseMovieLensRatings(input: string | Buffer, options: ParseOptions = {}): Interactions {
  const file = options.file ?? "<input>";
  const b = new InteractionsBuilder();
  for (const { line, text } of lines(asText(input, "latin1"))) {
    const f = text.split("\t");
    if (f.length !== 4) {
      report(new DataFormatError(file, line, "row", `expected 4 tab-separated fields, found ${f.length}`, text), options);
      continue;
    }
    const values: number[] = [];
    for (const [c, [field, valid, expected]] of U_DATA_FIELDS.entries()) {
      const v = parseInteger(f[c]);
      if (v === undefined || !valid(v)) {
        report(new DataFormatError(file, line, field, expected, f[c]), options);
        break;
      }
      values.push(v);
    }
    if (values.length < U_DATA_FIELDS.length) continue;
    const [u, i, r, t] = values;
    b.add(String(u), String(i), r, t);
  }
  return b.build();
}

/** Reads and parses a MovieLens-100K `u.data` file. See {@link parseMovieLensRatings}. */
export async function loadMovieLensRatings(path: string, options: ParseOptions = {}): Promise<Interactions> {
  return parseMovieLensRatings(await readFile(path), { ...options, file: options.file ?? path });
}

/**
 * Finds the positions of the named columns in a CSV header.
 * @throws DataFormatError (always, even when collecting) when a column is missing.
 */
function headerPositions<K extends string>(header: string[], wanted: Record<K, string | null>, file: string): Record<K, number> {
  const names = header.map((h) => h.trim());
  const out = {} as Record<K, number>;
  for (const [role, name] of Object.entries(wanted) as [K, string | null][]) {
    if (name === null) continue;
    const pos = names.indexOf(name);
    if (pos < 0) {
      throw new DataFormatError(file, 1, name, `column missing from the header (columns: ${names.join(", ")})`);
    }
    out[role] = pos;
  }
  return out;
}

/**
 * Parses interactions from CSV with a header row. Extra columns are ignored.
 * Ids are taken verbatim (trimmed; must be non-empty); ratings and timestamps
 * must be finite numbers.
 */
export function parseInteractionsCsv(input: string | Buffer, options: InteractionsCsvOptions = {}): Interactions {
  const file = options.file ?? "<input>";
  const c = options.columns ?? {};
  const names = {
    user: c.user ?? "user",
    item: c.item ?? "item",
    rating: c.rating === undefined ? "rating" : c.rating,
    timestamp: c.timestamp === undefined ? "timestamp" : c.timestamp,
  };
  /** The number in the optional column (`fallback` when it is not read), or undefined, reported, when not a number. */
  const numberOr = (fields: string[], line: number, pos: number, column: "rating" | "timestamp", fallback: number): number | undefined => {
    const name = names[column];
    if (name === null) return fallback;
    const v = parseNumber(fields[pos]);
    if (v === undefined) report(new DataFormatError(file, line, name, "expected a number", fields[pos]), options);
    return v;
  };
  const b = new InteractionsBuilder();
  for (const { line, fields, col: pos } of csvTable(input, names, file, options)) {
    const user = fields[pos.user].trim();
    if (user === "") {
      report(new DataFormatError(file, line, names.user, "empty user id"), options);
      continue;
    }
    const item = fields[pos.item].trim();
    if (item === "") {
      report(new DataFormatError(file, line, names.item, "empty item id"), options);
      continue;
    }
    const rating = numberOr(fields, line, pos.rating, "rating", 1);
    if (rating === undefined) continue;
    const timestamp = numberOr(fields, line, pos.timestamp, "timestamp", line);
    if (timestamp === undefined) continue;
    b.add(user, item, rating, timestamp);
  }
  return b.build();
}

/** Reads and parses an interactions CSV file. See {@link parseInteractionsCsv}. */
export async function loadInteractionsCsv(path: string, options: InteractionsCsvOptions = {}): Promise<Interactions> {
  return parseInteractionsCsv(await readFile(path), { ...options, file: options.file ?? path });
}

/**
 * Parses MovieLens-100K `u.genre` (`name|index` per line) into genre names
 * ordered by index. Indices must be exactly `0..n-1`.
 */
export function parseMovieLensGenres(input: string | Buffer, options: ParseOptions = {}): string[] {
  const file = options.file ?? "<input>";
  const byIndex = new Map<number, string>();
  for (const { line, text } of lines(asText(input, "latin1"))) {
    const f = text.split("|");
    if (f.length !== 2 || f[0] === "") {
      report(new DataFormatError(file, line, "row", "expected name|index", text), options);
      continue;
    }
    const idx = parseInteger(f[1]);
    if (idx === undefined || idx < 0 || byIndex.has(idx)) {
      report(new DataFormatError(file, line, "index", "expected a new non-negative integer", f[1]), options);
      continue;
    }
    byIndex.set(idx, f[0]);
  }
  const out: string[] = [];
  for (let i = 0; i < byIndex.size; i++) {
    const g = byIndex.get(i);
    if (g === undefined) throw new DataFormatError(file, 0, "index", `genre indices are not contiguous: ${i} is missing`);
    out.push(g);
  }
  return out;
}

/**
 * Parses MovieLens-100K `u.item`:
 * `id|title|release date|video release date|IMDb URL|flag × genres`.
 * A `Buffer` is decoded as Latin-1 (ISO-8859-1), the file's encoding, so
 * titles such as "Misérables, Les (1995)" come out right.
 */
export function parseMovieLensItems(input: string | Buffer, options: MovieLensItemsOptions = {}): ItemCatalog {
  const file = options.file ?? "<input>";
  const genres = options.genres ?? MOVIELENS_100K_GENRES;
  const width = 5 + genres.length;
  const items: ItemInfo[] = [];
  const seen = new Set<string>();
  for (const { line, text } of lines(asText(input, "latin1"))) {
    const f = text.split("|");
    if (f.length !== width) {
      report(new DataFormatError(file, line, "row", `expected ${width} |-separated fields, found ${f.length}`, text), options);
      continue;
    }
    const id = parseInteger(f[0]);
    if (id === undefined || id < 1) {
      report(new DataFormatError(file, line, "id", "expected a positive integer id", f[0]), options);
      continue;
    }
    if (seen.has(String(id))) {
      report(new DataFormatError(file, line, "id", "duplicate item id", f[0]), options);
      continue;
    }
    const title = f[1].trim();
    if (title === "") {
      report(new DataFormatError(file, line, "title", "empty title"), options);
      continue;
    }
    const itemGenres: string[] = [];
    let bad = -1;
    for (let g = 0; g < genres.length; g++) {
      const flag = f[5 + g];
      if (flag === "1") itemGenres.push(genres[g]);
      else if (flag !== "0") {
        bad = g;
        break;
      }
    }
    if (bad >= 0) {
      report(new DataFormatError(file, line, `genre ${genres[bad]}`, "expected 0 or 1", f[5 + bad]), options);
      continue;
    }
    const releaseDate = f[2].trim();
    const dateYear = /(\d{4})$/.exec(releaseDate);
    const year = yearFromTitle(title) ?? (dateYear ? Number(dateYear[1]) : undefined);
    const url = f[4].trim();
    seen.add(String(id));
    items.push({
      id: String(id),
      title,
      genres: itemGenres,
      ...(year !== undefined ? { year } : {}),
      ...(releaseDate ? { releaseDate } : {}),
      ...(url ? { url } : {}),
    });
  }
  return new ItemCatalog(items);
}

/** Reads and parses a MovieLens-100K `u.item` file. See {@link parseMovieLensItems}. */
export async function loadMovieLensItems(path: string, options: MovieLensItemsOptions = {}): Promise<ItemCatalog> {
  return parseMovieLensItems(await readFile(path), { ...options, file: options.file ?? path });
}

/**
 * Parses item metadata from CSV with a header (`item,title,genres` by
 * default; genres separated by `|`, may be empty). A trailing `(yyyy)` in the
 * title gives the year.
 */
export function parseItemsCsv(input: string | Buffer, options: ItemsCsvOptions = {}): ItemCatalog {
  const file = options.file ?? "<input>";
  const c = options.columns ?? {};
  const names = { item: c.item ?? "item", title: c.title ?? "title", genres: c.genres === undefined ? "genres" : c.genres };
  const sep = options.genreSeparator ?? "|";
  const items: ItemInfo[] = [];
  const seen = new Set<string>();
  for (const { line, fields, col: pos } of csvTable(input, names, file, options)) {
    const id = fields[pos.item].trim();
    if (id === "") {
      report(new DataFormatError(file, line, names.item, "empty item id"), options);
      continue;
    }
    if (seen.has(id)) {
      report(new DataFormatError(file, line, names.item, "duplicate item id", id), options);
      continue;
    }
    const title = fields[pos.title].trim();
    if (title === "") {
      report(new DataFormatError(file, line, names.title, "empty title"), options);
      continue;
    }
    const genres =
      names.genres === null
        ? []
        : fields[pos.genres]
            .split(sep)
            .map((g) => g.trim())
            .filter((g) => g !== "" && g !== "(no genres listed)");
    const year = yearFromTitle(title);
    seen.add(id);
    items.push({ id, title, genres, ...(year !== undefined ? { year } : {}) });
  }
  return new ItemCatalog(items);
}

/** Reads and parses an items CSV file. See {@link parseItemsCsv}. */
export async function loadItemsCsv(path: string, options: ItemsCsvOptions = {}): Promise<ItemCatalog> {
  return parseItemsCsv(await readFile(path), { ...options, file: options.file ?? path });
}

/** The MovieLens-100K dataset: ratings, item metadata and genre names. */
export interface MovieLens100k {
  interactions: Interactions;
  items: ItemCatalog;
  genres: string[];
}

/**
 * Loads `u.data`, `u.item` and `u.genre` from a MovieLens-100K folder.
 * `options.errors`, when given, collects row errors of all three files.
 */
export async function loadMovieLens100k(dir: string, options: Pick<ParseOptions, "errors"> = {}): Promise<MovieLens100k> {
  const [data, item, genre] = await Promise.all(["u.data", "u.item", "u.genre"].map((f) => readFile(join(dir, f))));
  const genres = parseMovieLensGenres(genre, { ...options, file: join(dir, "u.genre") });
  const items = parseMovieLensItems(item, { ...options, file: join(dir, "u.item"), genres });
  const interactions = parseMovieLensRatings(data, { ...options, file: join(dir, "u.data") });
  return { interactions, items, genres };
}
