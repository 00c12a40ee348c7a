import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import {
  DataFormatError,
  IdIndex,
  Interactions,
  InvalidArgumentError,
  ItemCatalog,
  UnknownIdError,
  foldTitle,
  loadInteractionsCsv,
  loadItemsCsv,
  loadMovieLens100k,
  loadMovieLensRatings,
  MOVIELENS_100K_GENRES,
  parseInteractionsCsv,
  parseItemsCsv,
  parseMovieLensGenres,
  parseMovieLensItems,
  parseMovieLensRatings,
  readCsvRows as readCsv,
  transposeCsr,
} from "../src/recsys/index.js";
import { hasRealMl100k, ml100kDir, syntheticMovieLens } from "./helpers/data.js";

const here = dirname(fileURLToPath(import.meta.url));
const fixtures = join(here, "fixtures", "recsys");

function caught(fn: () => unknown): unknown {
  try {
    fn();
  } catch (e) {
    return e;
  }
  throw new Error("expected an exception");
}

describe("IdIndex", () => {
  it("maps ids to dense indices in order and back, accepting numbers", () => {
    const idx = new IdIndex("user", ["196", "186", "22"]);
    expect(idx.size).toBe(3);
    expect(idx.indexOf(186)).toBe(1);
    expect(idx.indexOf("22")).toBe(2);
    expect(idx.id(0)).toBe("196");
    expect(idx.get("7")).toBeUndefined();
    expect(idx.has(196)).toBe(true);
  });

  it("rejects duplicates and reports unknown ids with their kind", () => {
    expect(() => new IdIndex("item", ["a", "b", "a"])).toThrow(/duplicate item id "a"/);
    const err = caught(() => new IdIndex("item", ["a"]).indexOf("zz"));
    expect(err).toBeInstanceOf(UnknownIdError);
    expect((err as UnknownIdError).kind).toBe("item");
    expect((err as Error).message).toBe('unknown item id "zz"');
    expect(() => new IdIndex("item", ["a"]).id(1)).toThrow(InvalidArgumentError);
  });
});

describe("Interactions", () => {
  const data = Interactions.fromRecords([
    { user: "u1", item: "B", rating: 4, timestamp: 10 },
    { user: "u2", item: "A", rating: 2, timestamp: 5 },
    { user: "u1", item: "A", rating: 5, timestamp: 7 },
    { user: "u1", item: "B", rating: 1, timestamp: 12 }, // later duplicate of (u1, B)
  ]);

  it("indexes users and items in first-seen order over typed arrays", () => {
    expect(data.length).toBe(4);
    expect(data.users.ids()).toEqual(["u1", "u2"]);
    expect(data.items.ids()).toEqual(["B", "A"]);
    expect(Array.from(data.userIdx)).toEqual([0, 1, 0, 0]);
    expect(Array.from(data.itemIdx)).toEqual([0, 1, 1, 0]);
    expect(data.ratings).toBeInstanceOf(Float32Array);
    expect(data.record(2)).toEqual({ user: "u1", item: "A", rating: 5, timestamp: 7 });
  });

  it("builds a CSR user×item matrix with sorted columns, keeping the latest duplicate", () => {
    const m = data.userItemMatrix();
    expect(Array.from(m.indptr)).toEqual([0, 2, 3]);
    expect(Array.from(m.indices)).toEqual([0, 1, 1]);
    expect(Array.from(m.values)).toEqual([1, 5, 2]); // (u1,B) keeps rating 1 from timestamp 12
    const t = data.itemUserMatrix();
    expect(Array.from(t.indptr)).toEqual([0, 1, 3]);
    expect(Array.from(t.indices)).toEqual([0, 0, 1]);
    expect(Array.from(t.values)).toEqual([1, 5, 2]);
    expect(transposeCsr(t)).toEqual(m);
  });

  it("subsets share the id maps", () => {
    const s = data.subset([1, 2]);
    expect(s.users).toBe(data.users);
    expect(s.items).toBe(data.items);
    expect(s.record(0)).toEqual({ user: "u2", item: "A", rating: 2, timestamp: 5 });
    expect(() => data.subset([4])).toThrow(InvalidArgumentError);
  });

  it("fromRecords with fixed id maps rejects unknown ids", () => {
    const users = new IdIndex("user", ["x"]);
    const items = new IdIndex("item", ["i"]);
    const ok = Interactions.fromRecords([{ user: "x", item: "i" }], { users, items });
    expect(ok.users).toBe(users);
    expect(ok.ratings[0]).toBe(1); // default rating
    expect(() => Interactions.fromRecords([{ user: "y", item: "i" }], { users, items })).toThrow(/unknown user id "y"/);
  });
});

describe("CSV tokenizer", () => {
  it("handles quotes, escaped quotes, embedded newlines, CRLF, BOM and blank lines", () => {
    const text = '\ufeffa,b\r\n"x, y","say ""hi"""\r\n\r\n"two\nlines",z\n';
    expect([...readCsv(text, "t.csv")]).toEqual([
      { line: 1, fields: ["a", "b"] },
      { line: 2, fields: ["x, y", 'say "hi"'] },
      { line: 4, fields: ["two\nlines", "z"] },
    ]);
  });

  it("rejects a delimiter that cannot work", () => {
    expect(() => [...readCsv("a", "d.csv", '"')]).toThrow(InvalidArgumentError);
    expect(() => [...readCsv("a", "d.csv", ";;")]).toThrow(InvalidArgumentError);
  });

  it("reports an unterminated quote with its line", () => {
    expect(() => [...readCsv('a,b\n1,"oops\n2,3\n', "q.csv")]).toThrow('q.csv:2: field "column 2": unterminated quoted field');
  });
});

describe("interaction loaders", () => {
  const columns = { user: "userId", item: "movieId", rating: "stars", timestamp: "when" };

  it("loads CSV with configurable columns, naming file, line and field on the first bad row", async () => {
    const path = join(fixtures, "interactions.csv");
    const err = await loadInteractionsCsv(path, { columns }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(DataFormatError);
    const e = err as DataFormatError;
    expect([e.file, e.line, e.field, e.value]).toEqual([path, 4, "stars", "abc"]);
    expect(e.message).toBe(`${path}:4: field "stars": expected a number, got "abc"`);
  });

  it("collects bad rows instead of throwing when asked", async () => {
    const errors: DataFormatError[] = [];
    const data = await loadInteractionsCsv(join(fixtures, "interactions.csv"), { columns, errors });
    expect(errors.map((e) => [e.line, e.field])).toEqual([
      [4, "stars"],
      [5, "movieId"],
      [6, "row"],
      [7, "when"],
    ]);
    expect(data.length).toBe(3);
    expect([0, 1, 2].map((r) => data.record(r))).toEqual([
      { user: "1", item: "10", rating: 4.5, timestamp: 100 },
      { user: "1", item: "11", rating: 3, timestamp: 101 },
      { user: "4", item: "14", rating: 1, timestamp: 105 }, // record spanning lines 8–9
    ]);
  });

  it("supports implicit CSV without rating or timestamp columns", () => {
    const data = parseInteractionsCsv("u,i\na,x\nb,x\na,y\n", { columns: { user: "u", item: "i", rating: null, timestamp: null } });
    expect(Array.from(data.ratings)).toEqual([1, 1, 1]);
    expect(Array.from(data.timestamps)).toEqual([2, 3, 4]); // line numbers
  });

  it("fails on a header missing a column even when collecting", () => {
    const errors: DataFormatError[] = [];
    expect(() => parseInteractionsCsv("user,item,score\n1,2,3\n", { file: "h.csv", errors })).toThrow('h.csv:1: field "rating": column missing from the header (columns: user, item, score)');
    expect(() => parseInteractionsCsv("", { file: "e.csv" })).toThrow(/e.csv:1: .*empty/);
  });

  it("validates MovieLens u.data rows field by field", () => {
    const good = "196\t242\t3\t881250949\n186\t302\t3\t891717742\n";
    const data = parseMovieLensRatings(good);
    expect(data.record(1)).toEqual({ user: "186", item: "302", rating: 3, timestamp: 891717742 });
    const cases: [string, string][] = [
      ["1\t2\t3\n", "row"],
      ["x\t2\t3\t4\n", "user"],
      ["1\t0\t3\t4\n", "item"],
      ["1\t2\t6\t4\n", "rating"],
      ["1\t2\t3.5\t4\n", "rating"],
      ["1\t2\t3\t-4\n", "timestamp"],
    ];
    for (const [row, field] of cases) {
      const e = caught(() => parseMovieLensRatings(good + row, { file: "u.data" })) as DataFormatError;
      expect(e).toBeInstanceOf(DataFormatError);
      expect([e.file, e.line, e.field]).toEqual(["u.data", 3, field]);
    }
  });
});

describe("item loaders", () => {
  it("decodes u.item as Latin-1 and maps genre flags", () => {
    const flags = (on: number[]) => Array.from({ length: 19 }, (_, g) => (on.includes(g) ? "1" : "0")).join("|");
    const text = `543|Mis\u00e9rables, Les (1995)|01-Jan-1995||http://x|${flags([8, 17])}\n267|unknown||||${flags([0])}\n`;
    const bytes = Buffer.from(text, "latin1");
    expect(bytes.includes(0xe9)).toBe(true); // a real single Latin-1 byte, not UTF-8
    const catalog = parseMovieLensItems(bytes);
    expect(catalog.get(543)).toEqual({
      id: "543",
      title: "Misérables, Les (1995)",
      genres: ["Drama", "War"],
      year: 1995,
      releaseDate: "01-Jan-1995",
      url: "http://x",
    });
    expect(catalog.get("267")).toEqual({ id: "267", title: "unknown", genres: ["unknown"] });
    const bad = `1|T (1995)|||u|${flags([]).replace(/^0/, "2")}\n`;
    expect(() => parseMovieLensItems(bad, { file: "u.item" })).toThrow('u.item:1: field "genre unknown": expected 0 or 1, got "2"');
  });

  it("parses u.genre and rejects gaps", () => {
    expect(parseMovieLensGenres("unknown|0\nAction|1\n\n")).toEqual(["unknown", "Action"]);
    expect(() => parseMovieLensGenres("a|0\nb|2\n", { file: "u.genre" })).toThrow(/1 is missing/);
  });

  it("loads item CSV with quoted titles and |-separated genres, collecting bad rows", async () => {
    const errors: DataFormatError[] = [];
    const catalog = await loadItemsCsv(join(fixtures, "items.csv"), { errors });
    expect(catalog.ids()).toEqual(["10", "11", "12"]);
    expect(catalog.get(10)?.title).toBe("American President, The (1995)");
    expect(catalog.get(10)?.genres).toEqual(["Comedy", "Drama", "Romance"]);
    expect(catalog.get(12)?.genres).toEqual([]);
    expect(catalog.get(11)?.year).toBe(1995);
    expect(errors.map((e) => [e.line, e.field, e.message.includes("items.csv:")])).toEqual([
      [5, "item", true],
      [6, "item", true],
    ]);
    await expect(loadItemsCsv(join(fixtures, "items.csv"))).rejects.toThrow(/items\.csv:5: field "item": duplicate item id/);
  });

  it("decodes a Latin-1 item CSV when told so", () => {
    const catalog = parseItemsCsv(Buffer.from("item,title,genres\n1,Caf\u00e9 (2001),Drama\n", "latin1"), { encoding: "latin1" });
    expect(catalog.title(1)).toBe("Café (2001)");
    expect(() => catalog.title(2)).toThrow(UnknownIdError);
  });

  it("finds titles ignoring case, accents, punctuation, year and a moved article", () => {
    const catalog = new ItemCatalog([
      { id: "1", title: "Toy Story (1995)", genres: [] },
      { id: "2", title: "American President, The (1995)", genres: [] },
      { id: "3", title: "Misérables, Les (1995)", genres: [] },
      { id: "4", title: "Toy Story 2 (1999)", genres: [] },
    ]);
    expect(foldTitle("Misérables, Les (1995)")).toBe("miserables les");
    expect(catalog.findByTitle("toy story").map((i) => i.id)).toEqual(["1", "4"]);
    expect(catalog.findByTitle("The American President").map((i) => i.id)).toEqual(["2"]);
    expect(catalog.findByTitle("les miserables (1995)").map((i) => i.id)).toEqual(["3"]);
    expect(catalog.findByTitle("story").map((i) => i.id)).toEqual(["1", "4"]);
    expect(catalog.findByTitle("nothing like this")).toEqual([]);
  });
});

describe.skipIf(!hasRealMl100k)("MovieLens-100K (real data)", () => {
  it("loads the full dataset with correct counts, titles and genres", async () => {
    const errors: DataFormatError[] = [];
    const { interactions, items, genres } = await loadMovieLens100k(ml100kDir, { errors });
    expect(errors).toEqual([]);
    expect(interactions.length).toBe(100_000);
    expect(interactions.users.size).toBe(943);
    expect(interactions.items.size).toBe(1682);
    expect(interactions.record(0)).toEqual({ user: "196", item: "242", rating: 3, timestamp: 881250949 });
    expect(genres).toHaveLength(19);
    expect(items.size).toBe(1682);
    expect(items.get(1)).toMatchObject({ title: "Toy Story (1995)", genres: ["Animation", "Children's", "Comedy"], year: 1995 });
    expect(items.title(543)).toBe("Misérables, Les (1995)");
    expect(items.title(1104)).toBe("C'est arrivé près de chez vous (1992)");
    const ratings = interactions.ratings;
    let sum = 0;
    for (const r of ratings) sum += r;
    expect(sum / ratings.length).toBeCloseTo(3.52986, 5);
  });
});

describe("MovieLens-format data", () => {
  it("loads the generated data set with correct counts, titles and genres", async () => {
    const syn = await syntheticMovieLens();
    const errors: DataFormatError[] = [];
    const { interactions, items, genres } = await loadMovieLens100k(syn.dir, { errors });
    expect(errors).toEqual([]);
    expect(interactions.length).toBe(syn.ratings);
    expect(interactions.users.size).toBe(syn.users);
    expect(interactions.items.size).toBe(syn.items); // every item is rated at least once
    const [user, item, rating, timestamp] = readFileSync(join(syn.dir, "u.data"), "latin1").split("\n")[0].split("\t");
    expect(interactions.record(0)).toEqual({ user, item, rating: Number(rating), timestamp: Number(timestamp) });
    expect(genres).toEqual([...MOVIELENS_100K_GENRES]);
    expect(items.size).toBe(syn.items);
    expect(items.get(1)).toMatchObject({ title: "Toy Story (1995)", genres: ["Animation", "Children's", "Comedy"], year: 1995 });
    const les = items.findByTitle("Les Miserables")[0];
    expect(les.title).toBe("Misérables, Les (1995)"); // one Latin-1 byte in u.item
    expect(readFileSync(join(syn.dir, "u.item")).includes(Buffer.from(`${les.id}|Mis\u00e9rables, Les (1995)|`, "latin1"))).toBe(true);
    expect(items.get(syn.items)).toMatchObject({ title: "unknown", genres: ["unknown"] });
    const ratings = interactions.ratings;
    let sum = 0;
    for (const r of ratings) sum += r;
    expect(sum / ratings.length).toBeGreaterThan(3.3);
    expect(sum / ratings.length).toBeLessThan(3.8);
  });

  it("reports a bad row in a copy of the data with the file path", async () => {
    const dir = mkdtempSync(join(tmpdir(), "recsys-ml-"));
    const path = join(dir, "u.data");
    writeFileSync(path, "1\t2\t3\t4\n5\t6\tseven\t8\n");
    await expect(loadMovieLensRatings(path)).rejects.toThrow(`${path}:2: field "rating": expected an integer from 1 to 5, got "seven"`);
  });
});
