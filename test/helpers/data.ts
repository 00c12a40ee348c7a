/** Where the reference data lives: ../shared/data beside the checkout (TALLREC_DATA overrides). */
import { readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

export const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
export const dataDir = process.env.TALLREC_DATA ? resolve(process.env.TALLREC_DATA) : resolve(repoRoot, "../shared/data");
export const modelsDir = join(repoRoot, "models");

export interface TallrecRow {
  instruction: string;
  input: string;
  output: string;
}

const cache = new Map<string, TallrecRow[]>();

/** TALLRec rows of a domain and split, e.g. tallrecRows("movie", "test"). */
export function tallrecRows(domain: "movie" | "book", split: "test" | "valid"): TallrecRow[] {
  const key = `${domain}/${split}`;
  let rows = cache.get(key);
  if (!rows) {
    rows = JSON.parse(readFileSync(join(dataDir, "tallrec", domain, `${split}.json`), "utf8")) as TallrecRow[];
    cache.set(key, rows);
  }
  return rows;
}
