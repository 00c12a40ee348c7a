/**
 * Chat-REC pieces that need no model: histories as TALLRec renders them, the request parser, the
 * re-ranking order, the session store, the model-intent validator, the kNN rating predictor and
 * the evaluation protocol.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { beforeAll, describe, expect, it } from "vitest";

import {
  ChatRec,
  ChatRecError,
  emptyFilters,
  findTitle,
  GlobalMeanPredictor,
  HistoryIndex,
  ItemKnnRatingPredictor,
  loadData,
  parseMovieLensUsers,
  matchesFilters,
  mergeModelIntent,
  orderCandidates,
  parseIntent,
  parseModelIntent,
  runRecsysEval,
  SessionStore,
  splitRecent,
  tallrecPrompt,
  titledHistory,
  zScores,
  type Intent,
} from "../src/chatrec/index.js";
import { parseInput, renderInput } from "../src/engine/prompt.js";
import { evaluateRanking, evaluateRatings, Interactions, ItemKnnRecommender, leaveLastOut, loadMovieLens100k, PopularityRecommender, randomSplit, type MovieLens100k } from "../src/recsys/index.js";
import { hasRealMl100k, ml100kDir, sampleRows, syntheticMovieLens } from "./helpers/data.js";

/**
 * The MovieLens-format data sets: the generated one always, MovieLens-100K when the real data is
 * there. Suites about behaviour run on each (see eachDataSet); suites about MovieLens-100K's own
 * facts run on the real data only.
 */
const DATA_SETS = [
  { name: "generated data", skip: false, load: once(async () => loadMovieLens100k((await syntheticMovieLens()).dir)) },
  { name: "real data", skip: !hasRealMl100k, load: once(() => loadMovieLens100k(ml100kDir)) },
];

function once<T>(f: () => Promise<T>): () => Promise<T> {
  let p: Promise<T> | undefined;
  return () => (p ??= f());
}

/** The data set of the suite that is running (set by eachDataSet's beforeAll). */
let ml: MovieLens100k;

/** Declares a suite once per data set, with `ml` that data set while its tests run. */
function eachDataSet(title: string, body: () => void): void {
  for (const d of DATA_SETS) {
    describe.skipIf(d.skip)(`${title} (${d.name})`, () => {
      beforeAll(async () => {
        ml = await d.load();
      });
      body();
    });
  }
}

describe("histories", () => {
  const records = [
    // user a: 12 ratings; item 3 is rated twice (the later rating counts); 5 and 6 share a timestamp
    { user: "a", item: "1", rating: 5, timestamp: 10 },
    { user: "a", item: "2", rating: 1, timestamp: 20 },
    { user: "a", item: "3", rating: 2, timestamp: 30 },
    { user: "a", item: "4", rating: 4, timestamp: 40 },
    { user: "a", item: "6", rating: 3, timestamp: 50 },
    { user: "a", item: "5", rating: 5, timestamp: 50 },
    { user: "a", item: "7", rating: 4, timestamp: 70 },
    { user: "a", item: "8", rating: 2, timestamp: 80 },
    { user: "a", item: "9", rating: 5, timestamp: 90 },
    { user: "a", item: "10", rating: 3, timestamp: 100 },
    { user: "a", item: "11", rating: 4, timestamp: 110 },
    { user: "a", item: "3", rating: 5, timestamp: 120 },
    { user: "b", item: "1", rating: 4, timestamp: 5 },
  ];
  const data = Interactions.fromRecords(records);

  it("takes the 10 most recent items, oldest first, liked when rated >= 4 and disliked otherwise (TALLRec's split)", () => {
    const h = new HistoryIndex(data).get("a");
    expect(h.interactions.map((x) => x.item)).toEqual(["1", "2", "4", "6", "5", "7", "8", "9", "10", "11", "3"]);
    expect(h.interactions.find((x) => x.item === "3")!.rating).toBe(5);
    // the last 10 of 11 distinct items drop item 1; ties keep file order (6 before 5)
    expect(h.liked).toEqual(["4", "5", "7", "9", "11", "3"]);
    expect(h.disliked).toEqual(["2", "6", "8", "10"]);
  });

  it("honours recent and thresholds, and rejects bad ones", () => {
    const h = new HistoryIndex(data, { recent: 4, dislikeThreshold: 2 }).get("a");
    expect(h.liked).toEqual(["9", "11", "3"]);
    expect(h.disliked).toEqual([]); // 10 was rated 3: neutral
    expect(splitRecent(h.interactions, { recent: 3, likeThreshold: 5 })).toEqual({ liked: ["3"], disliked: ["10", "11"] });
    expect(() => new HistoryIndex(data, { recent: 0 })).toThrow(/recent must be a positive integer/);
    expect(() => new HistoryIndex(data, { likeThreshold: 3, dislikeThreshold: 3 })).toThrow(/must be below likeThreshold/);
  });

  it("answers an unknown user with a ChatRecError naming it", () => {
    const idx = new HistoryIndex(data);
    expect(idx.has("b")).toBe(true);
    expect(() => idx.get("zz")).toThrow(ChatRecError);
    expect(() => idx.get("zz")).toThrow(/unknown user "zz"/);
  });

  it.skipIf(!hasRealMl100k)("reproduces TALLRec's MovieLens test prompts exactly from ML-100K ratings (real data)", async () => {
    // for each TALLRec row, find the ML-100K user whose 10 ratings before the target are the
    // row's history, and rebuild the row's input from those ratings alone
    const ml = await DATA_SETS[1].load();
    const I = ml.interactions;
    const perUser = new Map<number, number[]>();
    for (let r = 0; r < I.length; r++) {
      const u = I.userIdx[r];
      let list = perUser.get(u);
      if (!list) perUser.set(u, (list = []));
      list.push(r);
    }
    for (const l of perUser.values()) l.sort((a, b) => I.timestamps[a] - I.timestamps[b] || a - b);
    const rows = sampleRows("movie").slice(0, 40);
    let matched = 0;
    for (const row of rows) {
      const p = parseInput(row.input)!;
      const want = new Set([...p.liked, ...p.disliked] as string[]);
      for (const list of perUser.values()) {
        const titles = list.map((r) => ml.items.title(I.items.id(I.itemIdx[r])));
        const at = titles.indexOf(p.target as string);
        if (at < 10 || !titles.slice(at - 10, at).every((t) => want.has(t))) continue;
        const before = Interactions.fromRecords(list.slice(0, at).map((r) => ({ user: "u", item: I.items.id(I.itemIdx[r]), rating: I.ratings[r], timestamp: I.timestamps[r] })));
        const h = new HistoryIndex(before).get("u");
        expect(renderInput(tallrecPrompt(titledHistory(ml.items, h), p.target as string))).toBe(row.input);
        matched++;
        break;
      }
    }
    expect(matched).toBe(rows.length);
  });

  it("renders TALLRec's prompt from generated MovieLens-format ratings: the 10 latest before the target, liked when rated >= 4", async () => {
    const data = await DATA_SETS[0].load();
    const I = data.interactions;
    const perUser = new Map<number, number[]>();
    for (let r = 0; r < I.length; r++) {
      const u = I.userIdx[r];
      let list = perUser.get(u);
      if (!list) perUser.set(u, (list = []));
      list.push(r);
    }
    let checked = 0;
    for (const list of [...perUser.values()].slice(0, 60)) {
      list.sort((a, b) => I.timestamps[a] - I.timestamps[b] || a - b);
      const at = 10 + (list.length % (list.length - 10)); // some position after the first ten
      const title = (r: number) => data.items.title(I.items.id(I.itemIdx[r]));
      const target = title(list[at]);
      const before = Interactions.fromRecords(list.slice(0, at).map((r) => ({ user: "u", item: I.items.id(I.itemIdx[r]), rating: I.ratings[r], timestamp: I.timestamps[r] })));
      const input = renderInput(tallrecPrompt(titledHistory(data.items, new HistoryIndex(before).get("u")), target));
      const last10 = list.slice(at - 10, at);
      const quoted = (rs: number[]) => rs.map((r) => `"${title(r)}"`).join(", ");
      expect(input).toBe(
        `User Preference: ${quoted(last10.filter((r) => I.ratings[r] >= 4))}\nUser Unpreference: ${quoted(last10.filter((r) => I.ratings[r] < 4))}\n` + `Whether the user will like the target movie "${target}"?`,
      );
      expect(renderInput(parseInput(input)!)).toBe(input);
      checked++;
    }
    expect(checked).toBe(60);
  });
});

eachDataSet("reading requests", () => {
  const parse = (m: string) => parseIntent(m, { catalog: ml.items });
  const kinds = (i: Intent, f: "exclude" | "similarTo" | "liked" | "disliked" | "mentioned") => i[f].map((r) => (r.kind === "item" ? ml.items.title(r.item) : r.kind === "ordinal" ? `#${r.index + 1}` : r.kind));

  it("finds genres, negated genres, moods and eras", () => {
    expect(parse("action movies from the 90s")).toMatchObject({ genres: ["Action"], yearMin: 1990, yearMax: 1999 });
    expect(parse("a comedy before 1980")).toMatchObject({ genres: ["Comedy"], yearMax: 1979 });
    expect(parse("romcoms between 1985 and 1995")).toMatchObject({ genres: ["Romance", "Comedy"], yearMin: 1985, yearMax: 1995 });
    expect(parse("no horror").excludeGenres).toEqual(["Horror"]);
    expect(parse("nothing scary, no war movies").excludeGenres.sort()).toEqual(["Horror", "War"]);
    expect(parse("I'm not in the mood for horror").excludeGenres).toEqual(["Horror"]);
    expect(parse("do not show me horror")).toMatchObject({ excludeGenres: ["Horror"], exclude: [] });
    expect(parse("something lighter").mood).toBe("lighter");
    expect(parse("not so dark please").mood).toBe("lighter");
    expect(parse("darker, more serious").mood).toBe("darker");
    expect(parse("newer ones").era).toBe("newer");
    expect(parse("something older").era).toBe("older");
    expect(parse("films from the fifties")).toMatchObject({ yearMin: 1950, yearMax: 1959 });
    expect(parse("give me 3 sci-fi movies")).toMatchObject({ genres: ["Sci-Fi"], count: 3 });
    expect(parse("start over").reset).toBe(true);
    expect(parse("something else").more).toBe(true);
    expect(parse("more like Fargo").more).toBe(false);
  });

  it("reads follow-ups that point at the last answer or at titles", () => {
    expect(kinds(parse("not that one"), "exclude")).toEqual(["that"]);
    expect(kinds(parse("Not the second one, something darker"), "exclude")).toEqual(["#2"]);
    expect(parse("Not the second one, something darker").mood).toBe("darker");
    expect(kinds(parse("skip the last one"), "exclude")).toEqual(["last"]);
    expect(kinds(parse("more like the second"), "similarTo")).toEqual(["#2"]);
    expect(kinds(parse("more like Fargo"), "similarTo")).toEqual(["Fargo (1996)"]);
    expect(kinds(parse("films like The Godfather"), "similarTo")).toEqual(["Godfather, The (1972)"]);
    expect(kinds(parse('not "Star Wars"'), "exclude")).toEqual(["Star Wars (1977)"]);
    expect(kinds(parse("I hated Toy Story and Jumanji"), "disliked")).toEqual(["Toy Story (1995)", "Jumanji (1995)"]);
    expect(kinds(parse("I loved Heat"), "liked")).toEqual(["Heat (1995)"]);
    expect(kinds(parse("why the first?"), "mentioned")).toEqual(["#1"]);
    expect(kinds(parse("tell me about Casablanca"), "mentioned")).toEqual(["Casablanca (1942)"]);
  });

  it("reports titles it cannot find, as written, and never matches loosely", () => {
    expect(parse("not Foobar Quux").unresolved).toEqual(["Foobar Quux"]);
    expect(parse("not Foobar Quux").exclude).toEqual([]);
    expect(findTitle("in the", ml.items)).toBeNull(); // not "In the Line of Fire"
    expect(findTitle("in the line of fire", ml.items)).toBe(ml.items.findByTitle("In the Line of Fire")[0].id);
    expect(findTitle("godfather", ml.items)).toBe(ml.items.findByTitle("Godfather, The")[0].id);
  });

  it("never throws, whatever the message", () => {
    for (const m of ["", "   ", "???", "\u0000\uffff", "not", "more like", "the second", "x".repeat(5000), '"unclosed', "1999s 3000 before 12"]) {
      expect(() => parse(m)).not.toThrow();
    }
    expect(parse("")).toEqual(parseIntent("", {}));
  });
});

describe("reading requests with a model", () => {
  it("validates the model's JSON and merges it without overriding the parser", () => {
    const genres = ["Action", "Comedy", "Horror", "Sci-Fi"];
    expect(parseModelIntent('Sure! {"genres": ["comedy"], "exclude_genres": ["Horror"], "year_min": 1990, "year_max": null, "mood": "lighter"} done', genres)).toEqual({
      genres: ["Comedy"],
      excludeGenres: ["Horror"],
      yearMin: 1990,
      mood: "lighter",
    });
    for (const bad of [
      "no json here",
      "{not json}",
      '{"genres": ["Space Opera"]}',
      '{"genres": "Comedy"}',
      '{"year_min": 1990.5}',
      '{"year_min": 2000, "year_max": 1990}',
      '{"mood": "happy"}',
      '{"genres": [], "extra": 1}',
      "[1, 2]",
    ]) {
      expect(parseModelIntent(bad, genres)).toBeNull();
    }
    const parsed = parseIntent("a comedy before 1980", {});
    const merged = mergeModelIntent(parsed, { genres: ["Action"], excludeGenres: ["Comedy"], yearMin: 2000, mood: "darker" });
    expect(merged.genres).toEqual(["Action"]); // the model's exclusion wins over a wanted genre
    expect(merged.excludeGenres).toEqual(["Comedy"]);
    expect(merged.yearMax).toBe(1979); // the parser's years stay
    expect(merged.yearMin).toBeUndefined();
    expect(merged.mood).toBe("darker");
    expect(mergeModelIntent(parsed, null)).toBe(parsed);
  });
});

describe("filters", () => {
  const heat = { id: "5", title: "Heat (1995)", genres: ["Action", "Crime", "Thriller"], year: 1995 };
  const toy = { id: "1", title: "Toy Story (1995)", genres: ["Animation", "Children's", "Comedy"], year: 1995 };
  it("apply genres, exclusions, years and moods", () => {
    const f = emptyFilters();
    expect(matchesFilters(heat, f)).toBe(true);
    expect(matchesFilters(heat, { ...f, genres: ["Comedy"] })).toBe(false);
    expect(matchesFilters(toy, { ...f, genres: ["Comedy", "Drama"] })).toBe(true);
    expect(matchesFilters(heat, { ...f, excludeGenres: ["Crime"] })).toBe(false);
    expect(matchesFilters(heat, { ...f, yearMin: 1996 })).toBe(false);
    expect(matchesFilters(heat, { ...f, yearMin: 1990, yearMax: 1995 })).toBe(true);
    expect(matchesFilters({ ...heat, year: undefined }, { ...f, yearMax: 2000 })).toBe(false);
    expect(matchesFilters(heat, { ...f, mood: "lighter" })).toBe(false);
    expect(matchesFilters(toy, { ...f, mood: "lighter" })).toBe(true);
    expect(matchesFilters(toy, { ...f, mood: "darker" })).toBe(false);
    expect(matchesFilters(undefined, f)).toBe(true);
    expect(matchesFilters(undefined, { ...f, genres: ["Comedy"] })).toBe(false);
  });
});

describe("re-ranking order", () => {
  const c = (item: string, pYes: number, recScore = 0, hint?: number) => {
    const logitYes = Math.log(pYes);
    const logitNo = Math.log(1 - pYes);
    return { item, title: item, recScore, pYes, logitYes, logitNo, ...(hint !== undefined ? { hint } : {}) };
  };

  it("is pYes, descending, exactly; ties keep the candidates' order", () => {
    const scored = [c("a", 0.2), c("b", 0.9), c("c", 0.5), c("d", 0.9), c("e", 0.7)];
    const r = orderCandidates(scored);
    expect(r.map((x) => x.item)).toEqual(["b", "d", "e", "c", "a"]);
    expect(r.map((x) => x.rank)).toEqual([1, 2, 3, 4, 5]);
    expect(r.map((x) => x.score)).toEqual([0.9, 0.9, 0.7, 0.5, 0.2]);
  });

  it("blends z-scores of the recommender and of TALLRec's log-odds with alpha", () => {
    const scored = [c("a", 0.9, 1), c("b", 0.5, 10), c("c", 0.1, 5)];
    expect(orderCandidates(scored, { alpha: 1 }).map((x) => x.item)).toEqual(["b", "c", "a"]);
    expect(orderCandidates(scored, { alpha: 0 }).map((x) => x.item)).toEqual(["a", "b", "c"]);
    const half = orderCandidates(scored, { alpha: 0.5 });
    const zr = zScores([1, 10, 5]);
    const zl = zScores(scored.map((x) => x.logitYes - x.logitNo));
    for (const x of half) {
      const i = scored.findIndex((s) => s.item === x.item);
      expect(x.score).toBeCloseTo(0.5 * zr[i] + 0.5 * zl[i], 12);
    }
    expect(() => orderCandidates(scored, { alpha: 1.5 })).toThrow(/alpha/);
  });

  it("lets a hint move a candidate, and gives a cold item (NaN score) a neutral z", () => {
    const scored = [c("a", 0.6), c("b", 0.59, 0, 1), c("c", 0.1)];
    expect(orderCandidates(scored).map((x) => x.item)).toEqual(["b", "a", "c"]);
    expect(orderCandidates(scored, { hintWeight: 0 }).map((x) => x.item)).toEqual(["a", "b", "c"]);
    expect(zScores([1, NaN, 3])).toEqual([-1, 0, 1]);
    expect(zScores([2, 2])).toEqual([0, 0]);
  });
});

describe("session store", () => {
  it("evicts the least recently used session beyond maxSessions", () => {
    const store = new SessionStore({ maxSessions: 2 });
    const a = store.create("1");
    const b = store.create("2");
    expect(store.get(a.id)).toBe(a); // a is now the most recently used
    const c = store.create("3");
    expect(store.get(b.id)).toBeUndefined();
    expect(store.get(a.id)).toBe(a);
    expect(store.get(c.id)).toBe(c);
    expect(store.size).toBe(2);
    expect(store.dropped.evicted).toBe(1);
  });

  it("expires sessions ttl after their last use, and says so", () => {
    let now = 1000;
    const store = new SessionStore({ ttlMs: 100, now: () => now });
    const a = store.create("1");
    const b = store.create("2");
    now = 1090;
    store.get(a.id);
    now = 1150; // b: 150 ms idle, a: 60 ms
    expect(store.get(b.id)).toBeUndefined();
    expect(store.get(a.id)).toBe(a);
    now = 1260;
    expect(store.size).toBe(0);
    expect(store.dropped.expired).toBe(2);
    expect(() => store.require(a.id)).toThrow(/unknown session .* expired/);
    expect(() => store.require("")).toThrow(/non-empty/);
  });

  it("keeps at most maxTurns turns", () => {
    const store = new SessionStore({ maxTurns: 3 });
    const s = store.create("1");
    for (let i = 0; i < 5; i++) store.addTurn(s, { role: "user", content: `m${i}` });
    expect(s.turns.map((t) => t.content)).toEqual(["m2", "m3", "m4"]);
    expect(() => new SessionStore({ maxSessions: 0 })).toThrow(/maxSessions/);
  });
});

describe("item-kNN rating prediction", () => {
  it("predicts the item mean plus the similarity-weighted deviations of the user's ratings", () => {
    // items x and y agree across users; z disagrees with x
    const recs = [
      { user: "1", item: "x", rating: 5 },
      { user: "1", item: "y", rating: 5 },
      { user: "1", item: "z", rating: 1 },
      { user: "2", item: "x", rating: 1 },
      { user: "2", item: "y", rating: 1 },
      { user: "2", item: "z", rating: 5 },
      { user: "3", item: "x", rating: 4 },
      { user: "3", item: "y", rating: 4 },
      { user: "3", item: "z", rating: 2 },
      { user: "4", item: "y", rating: 5 },
    ];
    const data = Interactions.fromRecords(recs);
    const p = new ItemKnnRatingPredictor({ k: 5, shrinkage: 0 }).fit(data);
    // user 4 rated only y: x is predicted from y (similarity 1): mean(x) + (5 - mean(y))
    const meanX = (5 + 1 + 4) / 3;
    const meanY = (5 + 1 + 4 + 5) / 4;
    expect(p.predict("4", "x")).toBeCloseTo(meanX + (5 - meanY), 5);
    // z's similarity to y is negative: no neighbour, so z's mean
    expect(p.predict("4", "z")).toBeCloseTo((1 + 5 + 2) / 3, 5);
    expect(new GlobalMeanPredictor().fit(data).predict("1", "x")).toBeCloseTo(data.ratings.reduce((s, r) => s + r, 0) / data.length, 6);
    expect(() => p.predict("nobody", "x")).toThrow(/unknown user/);
  });
});

eachDataSet("item-kNN rating prediction", () => {
  it("is a real baseline: far better than the global mean", () => {
    const { train, test } = randomSplit(ml.interactions, { seed: 42 });
    const knn = evaluateRatings(new ItemKnnRatingPredictor().fit(train), test);
    const mean = evaluateRatings(new GlobalMeanPredictor().fit(train), test);
    expect(knn.rmse).toBeLessThan(0.95);
    expect(knn.rmse).toBeLessThan(mean.rmse - 0.15);
    expect(knn.mae).toBeLessThan(mean.mae - 0.15);
  });
});

eachDataSet("evaluation protocol", () => {
  it("gives evaluateRanking's numbers for the plain rows, on random and leave-last-out splits", async () => {
    for (const split of ["random", "leave-last-out"] as const) {
      const r = await runRecsysEval(ml.interactions, { split, models: ["popularity", "knn"], ratings: false });
      const { train, test } = split === "random" ? randomSplit(ml.interactions, { seed: 42 }) : leaveLastOut(ml.interactions);
      const ref = {
        popularity: evaluateRanking(new PopularityRecommender().fit(train), train, test),
        knn: evaluateRanking(new ItemKnnRecommender().fit(train), train, test),
      };
      for (const row of r.ranking) {
        const want = ref[row.model as "popularity" | "knn"];
        expect(row.users).toBe(want.users);
        for (const k of [5, 10]) {
          expect(row.at[k].precision).toBeCloseTo(want.at[k].precision, 12);
          expect(row.at[k].recall).toBeCloseTo(want.at[k].recall, 12);
          expect(row.at[k].ndcg).toBeCloseTo(want.at[k].ndcg, 12);
        }
      }
      expect(r.ranking.find((x) => x.model === "knn")!.at[5].ndcg).toBeGreaterThan(r.ranking.find((x) => x.model === "popularity")!.at[5].ndcg);
    }
  });

  it("re-ranks each model's own candidates: alpha 1 keeps the model's numbers, an oracle scorer lifts them", async () => {
    const { train, test } = randomSplit(ml.interactions, { seed: 42 });
    const histories = new HistoryIndex(train);
    // the oracle knows each user's held-out items; it recognises the user by the history in the prompt
    const byHistory = new Map<string, string>();
    for (const u of train.users.ids()) {
      const h = titledHistory(ml.items, histories.get(u));
      byHistory.set(JSON.stringify([h.liked, h.disliked]), u);
    }
    const heldOut = new Map<string, Set<string>>();
    for (let r = 0; r < test.length; r++) {
      const u = test.users.id(test.userIdx[r]);
      if (!heldOut.has(u)) heldOut.set(u, new Set());
      heldOut.get(u)!.add(ml.items.title(test.items.id(test.itemIdx[r])));
    }
    let calls = 0;
    const oracle = {
      score: async (inputs: readonly unknown[]) => {
        calls++;
        return inputs.map((x) => {
          const p = x as { liked: string[]; disliked: string[]; target: string };
          const u = byHistory.get(JSON.stringify([p.liked, p.disliked]))!;
          const pYes = heldOut.get(u)?.has(p.target) ? 0.9 : 0.1;
          return { pYes, logitYes: Math.log(pYes), logitNo: Math.log(1 - pYes), tokens: 100 };
        });
      },
    };
    const opts = { models: ["popularity", "knn"] as ("popularity" | "knn")[], users: 200, ratings: false };
    const lifted = await runRecsysEval(ml.interactions, { ...opts, rerank: { engine: oracle, catalog: ml.items, usersPerCall: 50 } });
    expect(calls).toBe(4);
    expect(lifted.rerank!.prompts).toBeGreaterThan(200 * 20);
    for (const kind of ["popularity", "knn"]) {
      const plain = lifted.ranking.find((r) => r.model === kind && !r.reranked)!;
      const re = lifted.ranking.find((r) => r.model === kind && r.reranked)!;
      expect(re.users).toBe(plain.users);
      // moving held-out items of the top 20 to the front can only add hits at 5 and 10
      expect(re.at[5].precision).toBeGreaterThan(plain.at[5].precision + 0.05);
      expect(re.at[10].ndcg).toBeGreaterThan(plain.at[10].ndcg);
    }
    const kept = await runRecsysEval(ml.interactions, { ...opts, rerank: { engine: oracle, catalog: ml.items, alpha: 1 } });
    for (const kind of ["popularity", "knn"]) {
      const plain = kept.ranking.find((r) => r.model === kind && !r.reranked)!;
      expect(kept.ranking.find((r) => r.model === kind && r.reranked)!.at).toEqual(plain.at);
    }
  });

  it("samples users reproducibly and rejects bad settings", async () => {
    const a = await runRecsysEval(ml.interactions, { models: ["popularity"], users: 50, ratings: false, seed: 7 });
    const b = await runRecsysEval(ml.interactions, { models: ["popularity"], users: 50, ratings: false, seed: 7 });
    expect(a.users).toBe(50);
    expect(a.ranking[0].at).toEqual(b.ranking[0].at);
    await expect(runRecsysEval(ml.interactions, { candidates: 5, ks: [10] })).rejects.toThrow(/candidates/);
    await expect(runRecsysEval(ml.interactions, { ks: [0] })).rejects.toThrow(/cut-offs/);
  });
});

eachDataSet("the service without a model", () => {
  /** A stand-in scorer: pYes from a hash of the target title; fails while `broken` is set. */
  const fake = (state: { broken: boolean }) => ({
    score: async (inputs: readonly unknown[]) => {
      await new Promise((r) => setTimeout(r, 5));
      if (state.broken) throw new Error("engine failure");
      return inputs.map((x) => {
        let h = 7;
        for (const ch of (x as { target: string }).target) h = (h * 31 + ch.charCodeAt(0)) >>> 0;
        const pYes = (h % 1000) / 1000;
        return { pYes, logitYes: Math.log(pYes + 1e-9), logitNo: Math.log(1 - pYes + 1e-9), tokens: 1 };
      });
    },
    generate: async () => {
      throw new Error("explanations are off");
    },
  });

  it("runs one session's turns in order, and a failed turn leaves the session as it was", async () => {
    const state = { broken: false };
    const knn = new ItemKnnRecommender().fit(ml.interactions);
    const chat = new ChatRec({ engine: fake(state), interactions: ml.interactions, catalog: ml.items, recommender: knn, explain: false });
    const { sessionId } = chat.startSession("42");
    const first = await chat.turn(sessionId, "");
    // sent together: the second reads the first's answer
    const [a, b] = await Promise.all([chat.turn(sessionId, "not that one"), chat.turn(sessionId, "not that one")]);
    expect(a.turn).toBe(2);
    expect(b.turn).toBe(3);
    expect(b.filters.excludeItems).toEqual([first.recommendations[0].item, a.recommendations[0].item]);
    state.broken = true;
    await expect(chat.turn(sessionId, "no comedy, something lighter, not the second")).rejects.toThrow(/engine failure/);
    const after = chat.session(sessionId);
    expect(after.turns).toBe(3);
    expect(after.filters).toEqual(b.filters);
    state.broken = false;
    const c = await chat.turn(sessionId, "");
    expect(c.turn).toBe(4);
    expect(c.recommendations.map((x) => x.item)).toEqual(b.recommendations.map((x) => x.item));
  });
});

describe("loading data", () => {
  it.skipIf(!hasRealMl100k)("reads MovieLens-100K with user profiles (real data)", async () => {
    const d = await loadData({ ml100k: ml100kDir });
    expect(d.interactions.length).toBe(100_000);
    expect(d.catalog.size).toBe(1682);
    expect(d.profiles?.size).toBe(943);
    expect(d.profiles?.get("42")).toBe("a 30-year-old man, administrator");
  });

  it("reads a MovieLens-format folder with user profiles", async () => {
    const syn = await syntheticMovieLens();
    const d = await loadData({ ml100k: syn.dir });
    expect(d.interactions.length).toBe(syn.ratings);
    expect(d.catalog.size).toBe(syn.items);
    expect(d.profiles?.size).toBe(syn.users);
    const [, age, gender, occupation] = readFileSync(join(syn.dir, "u.user"), "latin1").split("\n")[41].split("|");
    const job = occupation === "none" || occupation === "other" ? "" : `, ${occupation}`;
    expect(d.profiles?.get("42")).toBe(`a ${Number(age)}-year-old ${gender === "M" ? "man" : "woman"}${job}`);
    expect(d.titlesMissing).toBe(false);
  });

  it("reads user profiles and CSV files", async () => {
    expect(parseMovieLensUsers("7|57|F|none|91344\nbad line\n8|x|M|writer|1")).toEqual(new Map([["7", "a 57-year-old woman"]]));
    const dir = mkdtempSync(join(tmpdir(), "chatrec-data-"));
    try {
      writeFileSync(join(dir, "r.csv"), "user,item,rating,timestamp\n1,10,5,100\n2,10,3,101\n");
      writeFileSync(join(dir, "i.csv"), 'item,title,genres\n10,"Heat (1995)",Action|Crime\n');
      const c = await loadData({ ratings: join(dir, "r.csv"), items: join(dir, "i.csv") });
      expect(c.interactions.length).toBe(2);
      expect(c.catalog.title("10")).toBe("Heat (1995)");
      expect(c.titlesMissing).toBe(false);
      expect((await loadData({ ratings: join(dir, "r.csv") })).titlesMissing).toBe(true);
      writeFileSync(join(dir, "bad.csv"), "user,item,rating,timestamp\n1,10,five,100\n");
      await expect(loadData({ ratings: join(dir, "bad.csv") })).rejects.toThrow(/bad\.csv:2: field "rating": expected a number/);
      await expect(loadData({ ratings: join(dir, "missing.csv") })).rejects.toThrow(/cannot read .*missing\.csv \(ENOENT\)/);
      await expect(loadData({ ml100k: dir })).rejects.toThrow(/u\.data is missing/);
      await expect(loadData({})).rejects.toMatchObject({ code: "invalid_input" });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
