/**
 * The generated MovieLens-format data (src/recsys/synthetic-movielens.ts): deterministic, in
 * ml-100k's formats and encodings, with MovieLens-like structure. (That recommenders learn from
 * it is checked in recsys-ml100k.test.ts, and Chat-REC runs on it in the chatrec tests.)
 */
import { describe, expect, it } from "vitest";

import { parseMovieLensUsers } from "../src/chatrec/index.js";
import { generateSyntheticMovieLens, InvalidArgumentError, MOVIELENS_100K_GENRES, parseMovieLensGenres, parseMovieLensItems, parseMovieLensRatings } from "../src/recsys/index.js";
import { SYNTHETIC_OPTIONS } from "./helpers/data.js";

const data = generateSyntheticMovieLens(SYNTHETIC_OPTIONS);

describe("generated MovieLens-format data", () => {
  it("is the same bytes for the same options, and different for another seed", () => {
    const again = generateSyntheticMovieLens(SYNTHETIC_OPTIONS);
    for (const [name, bytes] of Object.entries(data.files)) expect(again.files[name as keyof typeof data.files].equals(bytes), name).toBe(true);
    const other = generateSyntheticMovieLens({ ...SYNTHETIC_OPTIONS, seed: 7 });
    expect(other.files["u.data"].equals(data.files["u.data"])).toBe(false);
    expect(other.files["u.item"].equals(data.files["u.item"])).toBe(false);
  });

  it("writes u.item in Latin-1 with 19 genre flags, titles 'Name (YEAR)' and release dates", () => {
    const bytes = data.files["u.item"];
    expect(bytes.includes(Buffer.from([0xe9]))).toBe(true); // é as one Latin-1 byte...
    expect(bytes.includes(Buffer.from([0xc3, 0xa9]))).toBe(false); // ...never as UTF-8
    const errors: never[] = [];
    const items = parseMovieLensItems(bytes, { errors });
    expect(errors).toEqual([]);
    expect(items.size).toBe(1000);
    const titles = new Set<string>();
    let accented = 0;
    for (const it of items) {
      titles.add(it.title);
      if (it.title === "unknown") continue;
      expect(it.title).toMatch(/^\S.* \((19[2-9]\d)\)$/);
      expect(it.releaseDate).toMatch(new RegExp(`^\\d\\d-(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)-${it.year}$`));
      expect(it.genres.length).toBeGreaterThanOrEqual(1);
      expect(it.genres).not.toContain("unknown");
      if (/[^\x00-\x7f]/.test(it.title)) accented++;
    }
    expect(titles.size).toBe(items.size);
    expect(accented).toBeGreaterThan(10);
    expect(items.title(5)).toBe("Star Wars (1977)"); // the named titles come first
    for (const g of MOVIELENS_100K_GENRES.slice(1))
      expect(
        [...items].some((it) => it.genres.includes(g)),
        g,
      ).toBe(true);
    expect([...items].filter((it) => /, The \(\d{4}\)$/.test(it.title)).length).toBeGreaterThan(50);
    // series: a film and its sequels
    const series = data.truth.series.find((s) => s.name !== "Star Wars" && s.name !== "Godfather")!;
    expect(items.title(series.items[1])).toMatch(/ 2 \(\d{4}\)$/);
  });

  it("writes u.genre, u.occupation, u.info and u.user as ml-100k does", () => {
    expect(parseMovieLensGenres(data.files["u.genre"])).toEqual([...MOVIELENS_100K_GENRES]);
    const occupations = data.files["u.occupation"].toString("latin1").trim().split("\n");
    expect(occupations).toHaveLength(21);
    expect(data.files["u.info"].toString()).toBe(`600 users\n1000 items\n${data.ratings} ratings\n`);
    const lines = data.files["u.user"].toString("latin1").trim().split("\n");
    expect(lines).toHaveLength(600);
    const ages: number[] = [];
    let women = 0;
    lines.forEach((line, i) => {
      const [id, age, gender, occupation, zip] = line.split("|");
      expect(id).toBe(String(i + 1));
      expect(Number(age)).toBeGreaterThanOrEqual(7);
      expect(Number(age)).toBeLessThanOrEqual(73);
      expect(["M", "F"]).toContain(gender);
      expect(occupations).toContain(occupation);
      expect(zip).toMatch(/^[0-9A-Z]{5}$/);
      ages.push(Number(age));
      if (gender === "F") women++;
    });
    expect(women / lines.length).toBeGreaterThan(0.2);
    expect(women / lines.length).toBeLessThan(0.4);
    expect(Math.min(...ages)).toBeLessThan(18);
    expect(Math.max(...ages)).toBeGreaterThan(60);
    expect(parseMovieLensUsers(data.files["u.user"].toString("latin1")).size).toBe(600);
  });

  it("has MovieLens-like ratings: 1–5 with timestamps, skewed popularity, varied activity", () => {
    const I = parseMovieLensRatings(data.files["u.data"]);
    expect(I.length).toBe(data.ratings);
    const perUser = new Map<number, number>();
    const perItem = new Map<number, number>();
    const stars = [0, 0, 0, 0, 0, 0];
    for (let r = 0; r < I.length; r++) {
      perUser.set(I.userIdx[r], (perUser.get(I.userIdx[r]) ?? 0) + 1);
      perItem.set(I.itemIdx[r], (perItem.get(I.itemIdx[r]) ?? 0) + 1);
      stars[I.ratings[r]]++;
      expect(I.timestamps[r]).toBeGreaterThanOrEqual(874724710);
      expect(I.timestamps[r]).toBeLessThanOrEqual(893286638);
    }
    // each (user, item) at most once
    expect(new Set(Array.from({ length: I.length }, (_, r) => I.userIdx[r] * 10000 + I.itemIdx[r])).size).toBe(I.length);
    for (let s = 1; s <= 5; s++) expect(stars[s] / I.length, `${s} stars`).toBeGreaterThan(0.02);
    expect(stars[4]).toBeGreaterThan(stars[2]);
    const activity = [...perUser.values()].sort((a, b) => a - b);
    expect(activity[0]).toBe(20);
    expect(activity[Math.floor(activity.length / 2)]).toBeLessThan(80);
    expect(activity[activity.length - 1]).toBeGreaterThan(300);
    const popularity = [...perItem.values()].sort((a, b) => b - a);
    const top10 = popularity.slice(0, 100).reduce((s, x) => s + x, 0);
    expect(top10 / I.length).toBeGreaterThan(0.3); // a tenth of the items, a third of the ratings
    expect(popularity[popularity.length - 1]).toBeLessThan(10);
  });

  it("rejects bad options", () => {
    expect(() => generateSyntheticMovieLens({ users: 0 })).toThrow(InvalidArgumentError);
    expect(() => generateSyntheticMovieLens({ items: 10, minRatingsPerUser: 20 })).toThrow(/exceeds items/);
    expect(() => generateSyntheticMovieLens({ titles: [{ title: "No Year", genres: [] }] })).toThrow(/\(YEAR\)/);
    expect(() => generateSyntheticMovieLens({ titles: [{ title: "X (1990)", genres: ["Space Opera"] }] })).toThrow(/unknown genre "Space Opera"/);
    expect(() => generateSyntheticMovieLens({ titles: [{ title: "Œuvre (1990)", genres: [] }] })).toThrow(/Latin-1/);
  });
});
