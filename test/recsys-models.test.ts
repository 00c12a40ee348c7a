import { describe, expect, it } from "vitest";
import {
  BiasedMfPredictor,
  BprRecommender,
  EmptyHistoryError,
  IdIndex,
  Interactions,
  InvalidArgumentError,
  ItemKnnRecommender,
  NotFittedError,
  PopularityRecommender,
  UnknownIdError,
  evaluateRatings,
} from "../src/recsys/index.js";

// Users u1..u4 interact with items A..D; u5 is known but has no interactions.
//   A: u1 u2 u4   B: u1 u2 u3   C: u2 u3   D: u4
// Implicit cosine: AB = 2/3, AC = 1/√6, AD = 1/√3, BC = 2/√6, BD = CD = 0.
const users = new IdIndex("user", ["u1", "u2", "u3", "u4", "u5"]);
const items = new IdIndex("item", ["A", "B", "C", "D"]);
const pairs: [string, string][] = [
  ["u1", "A"],
  ["u1", "B"],
  ["u2", "A"],
  ["u2", "B"],
  ["u2", "C"],
  ["u3", "B"],
  ["u3", "C"],
  ["u4", "A"],
  ["u4", "D"],
];
const small = Interactions.fromRecords(
  pairs.map(([user, item]) => ({ user, item })),
  { users, items },
);
const AB = 2 / 3;
const AC = 1 / Math.sqrt(6);
const AD = 1 / Math.sqrt(3);
const BC = 2 / Math.sqrt(6);

const ids = (recs: { item: string }[]) => recs.map((r) => r.item);

describe("PopularityRecommender", () => {
  const model = new PopularityRecommender().fit(small);

  it("scores items by distinct training users and excludes seen items", () => {
    expect(Array.from(model.scoreItems("u1"))).toEqual([3, 3, 2, 1]);
    expect(model.recommend("u3", 2)).toEqual([
      { item: "A", score: 3 },
      { item: "D", score: 1 },
    ]);
    expect(ids(model.recommend("u3", 3, { exclude: "none" }))).toEqual(["A", "B", "C"]);
    expect(ids(model.recommend("u3", 4, { exclude: ["A"] }))).toEqual(["B", "C", "D"]);
    expect(ids(model.recommend("u1", 4, { filter: (id) => id !== "C" }))).toEqual(["D"]);
  });

  it("serves users without history (cold start) but not unknown users", () => {
    expect(ids(model.recommend("u5", 2))).toEqual(["A", "B"]);
    expect(() => model.recommend("nobody", 2)).toThrow(UnknownIdError);
    expect(() => model.recommend("u1", 2, { exclude: ["Z"] })).toThrow('unknown item id "Z"');
    expect(() => model.recommend("u1", 0)).toThrow(InvalidArgumentError);
    expect(() => model.recommend("u1", 1.5)).toThrow(InvalidArgumentError);
  });

  it("requires fitting first and a non-empty training set", () => {
    const fresh = new PopularityRecommender();
    expect(fresh.isFitted).toBe(false);
    expect(() => fresh.recommend("u1", 1)).toThrow(NotFittedError);
    expect(() => fresh.users).toThrow(/popularity is not fitted/);
    expect(() => fresh.fit(small.subset([]))).toThrow(InvalidArgumentError);
  });
});

describe("ItemKnnRecommender", () => {
  const knn = new ItemKnnRecommender({ neighbours: 2 }).fit(small);

  it("keeps the top-N cosine neighbours per item", () => {
    expect(knn.similar("A", 5)).toEqual([
      { item: "B", score: expect.closeTo(AB, 6) },
      { item: "D", score: expect.closeTo(AD, 6) },
    ]);
    expect(knn.similar("B", 5)).toEqual([
      { item: "C", score: expect.closeTo(BC, 6) },
      { item: "A", score: expect.closeTo(AB, 6) },
    ]);
    expect(ids(knn.similar("C", 5))).toEqual(["B", "A"]);
    expect(ids(knn.similar("D", 5))).toEqual(["A"]); // B, D and C, D never co-occur
    expect(ids(knn.similar("C", 1))).toEqual(["B"]);
    expect(ids(knn.similar("A", 5, { filter: (id) => id !== "B" }))).toEqual(["D"]);
    expect(knn.similarity("A", "C")).toBe(0); // C is not among A's 2 neighbours
    const all = new ItemKnnRecommender({ neighbours: 3 }).fit(small);
    expect(all.similarity("A", "C")).toBeCloseTo(AC, 6);
  });

  it("scores a user by summing neighbour similarities of their history", () => {
    // u1 = {A, B}: A ← B (AB); B ← A (AB); C ← B (BC); D ← A (AD)
    const s = knn.scoreItems("u1");
    expect(s[0]).toBeCloseTo(AB, 6);
    expect(s[1]).toBeCloseTo(AB, 6);
    expect(s[2]).toBeCloseTo(BC, 6);
    expect(s[3]).toBeCloseTo(AD, 6);
    expect(ids(knn.recommend("u1", 2))).toEqual(["C", "D"]);
    expect(ids(knn.recommend("u1", 2, { exclude: "none" }))).toEqual(["C", "A"]); // A/B tie → lower index
    // u3 = {B, C}: A ← B (AB) + C (AC)
    expect(knn.recommend("u3", 1)[0].score).toBeCloseTo(AB + AC, 6);
  });

  it("applies shrinkage c / (c + λ)", () => {
    const shrunk = new ItemKnnRecommender({ neighbours: 3, shrinkage: 1 }).fit(small);
    expect(shrunk.similarity("A", "B")).toBeCloseTo(AB * (2 / 3), 6);
    expect(shrunk.similarity("A", "D")).toBeCloseTo(AD * (1 / 2), 6);
    expect(shrunk.similarity("B", "C")).toBeCloseTo(BC * (2 / 3), 6);
    expect(ids(shrunk.similar("A", 3))).toEqual(["B", "D", "C"]);
  });

  it("uses mean-centered ratings with centered weighting and drops non-positive similarities", () => {
    // u1: A5 B5 C1 (mean 11/3), u2: A4 B4 C1 (mean 3): A and B agree exactly, C is opposite.
    const rated = Interactions.fromRecords([
      { user: "u1", item: "A", rating: 5 },
      { user: "u1", item: "B", rating: 5 },
      { user: "u1", item: "C", rating: 1 },
      { user: "u2", item: "A", rating: 4 },
      { user: "u2", item: "B", rating: 4 },
      { user: "u2", item: "C", rating: 1 },
    ]);
    const centered = new ItemKnnRecommender({ weighting: "centered" }).fit(rated);
    expect(centered.similarity("A", "B")).toBeCloseTo(1, 6);
    expect(centered.similarity("A", "C")).toBe(0);
    expect(centered.similar("C", 5)).toEqual([]);
    const implicit = new ItemKnnRecommender().fit(rated);
    expect(implicit.similarity("A", "C")).toBeCloseTo(1, 6);
  });

  it("scores ad-hoc histories", () => {
    const s = knn.scoreHistory(["C", "C"]); // duplicates count once
    expect(s[1]).toBeCloseTo(BC, 6);
    expect(s[0]).toBeCloseTo(AC, 6);
    expect(ids(knn.recommendFromItems(["C"], 3))).toEqual(["B", "A", "D"]);
    expect(ids(knn.recommendFromItems(["C"], 1, { exclude: "none" }))).toEqual(["B"]);
    expect(() => knn.scoreHistory([])).toThrow(InvalidArgumentError);
    expect(() => knn.scoreHistory(["nope"])).toThrow(UnknownIdError);
  });

  it("gives clear errors for unknown users and items, empty histories and bad options", () => {
    expect(() => knn.scoreItems("nobody")).toThrow('unknown user id "nobody"');
    const e = (() => {
      try {
        knn.recommend("u5", 3);
      } catch (err) {
        return err;
      }
    })();
    expect(e).toBeInstanceOf(EmptyHistoryError);
    expect((e as Error).message).toMatch(/user "u5" has no training interactions/);
    expect(() => knn.similar("Z", 3)).toThrow(UnknownIdError);
    expect(() => knn.similar("A", 0)).toThrow(InvalidArgumentError);
    expect(() => new ItemKnnRecommender({ neighbours: 0 })).toThrow(InvalidArgumentError);
    expect(() => new ItemKnnRecommender({ shrinkage: -1 })).toThrow(InvalidArgumentError);
    expect(() => new ItemKnnRecommender({ weighting: "pearson" as "implicit" })).toThrow(InvalidArgumentError);
  });
});

/** Two communities of 10 users; each user has 5 of their community's 6 items. */
function blocks(): Interactions {
  const records: { user: string; item: string }[] = [];
  for (let g = 0; g < 2; g++) {
    for (let u = 0; u < 10; u++) {
      for (let i = 0; i < 6; i++) if (i !== u % 6) records.push({ user: `g${g}u${u}`, item: `g${g}i${i}` });
    }
  }
  return Interactions.fromRecords(records);
}

describe("BprRecommender", () => {
  const data = blocks();
  const opts = { factors: 8, epochs: 60, seed: 3 };

  it("learns community structure: each user's top item is their community's missing item", () => {
    const bpr = new BprRecommender(opts).fit(data);
    for (let g = 0; g < 2; g++) {
      for (let u = 0; u < 10; u++) {
        expect(bpr.recommend(`g${g}u${u}`, 1)[0].item).toBe(`g${g}i${u % 6}`);
      }
    }
    expect(ids(bpr.similar("g0i0", 5)).every((id) => id.startsWith("g0"))).toBe(true);
    expect(ids(bpr.similar("g1i2", 5)).every((id) => id.startsWith("g1"))).toBe(true);
  });

  it("is deterministic for a seed and changes with it", () => {
    const a = new BprRecommender(opts).fit(data).scoreItems("g0u1");
    const b = new BprRecommender(opts).fit(data).scoreItems("g0u1");
    const c = new BprRecommender({ ...opts, seed: 4 }).fit(data).scoreItems("g0u1");
    expect(a).toEqual(b);
    expect(a).not.toEqual(c);
  });

  it("rejects users without history, unknown items and bad options", () => {
    const bpr = new BprRecommender({ factors: 4, epochs: 2 }).fit(small);
    expect(() => bpr.scoreItems("u5")).toThrow(EmptyHistoryError);
    expect(() => bpr.similar("nope", 2)).toThrow(UnknownIdError);
    expect(() => new BprRecommender({ factors: 0 })).toThrow(InvalidArgumentError);
    expect(() => new BprRecommender({ learningRate: Number.NaN })).toThrow(InvalidArgumentError);
  });
});

describe("BiasedMfPredictor", () => {
  // Ratings follow r = 3 + userOffset + itemOffset (range 1..5), with a few pairs missing.
  const uo = [-1, -0.5, 0, 0.5, 1, 0, -1, 1];
  const io = [-1, 0, 1, 0.5, -0.5, 0];
  const records: { user: string; item: string; rating: number }[] = [];
  uo.forEach((a, u) =>
    io.forEach((b, i) => {
      if ((u + i) % 5 !== 0) records.push({ user: `u${u}`, item: `i${i}`, rating: 3 + a + b });
    }),
  );
  const users = new IdIndex("user", [...uo.map((_, u) => `u${u}`), "newUser"]);
  const items = new IdIndex("item", [...io.map((_, i) => `i${i}`), "newItem"]);
  const train = Interactions.fromRecords(records, { users, items });
  const mu = records.reduce((s, r) => s + r.rating, 0) / records.length;
  const model = new BiasedMfPredictor({ factors: 4, epochs: 200, learningRate: 0.02, regularization: 0.01, biasRegularization: 0.001 }).fit(train);

  it("fits explicit ratings and generalises to held-out pairs of the pattern", () => {
    expect(model.mean).toBeCloseTo(mu, 6);
    expect(evaluateRatings(model, train).rmse).toBeLessThan(0.1);
    const held = [];
    for (let u = 0; u < uo.length; u++) for (let i = 0; i < io.length; i++) if ((u + i) % 5 === 0) held.push({ user: `u${u}`, item: `i${i}`, rating: 3 + uo[u] + io[i] });
    expect(held.length).toBeGreaterThan(5);
    const heldOut = Interactions.fromRecords(held, { users, items });
    const r = evaluateRatings(model, heldOut);
    expect(r.count).toBe(held.length);
    expect(r.rmse).toBeLessThan(0.35); // predicting the mean gives ≈ 0.8 here
  });

  it("falls back to biases for users / items without training ratings, and clips to the rating range", () => {
    expect(model.predict("newUser", "newItem")).toBeCloseTo(mu, 6);
    // Item bias only: the new user's prediction ranks items like their biases.
    const p0 = model.predict("newUser", "i0");
    const p2 = model.predict("newUser", "i2");
    expect(p2).toBeGreaterThan(p0);
    expect(model.predictIndex(users.indexOf("newUser"), items.indexOf("i2"))).toBe(p2);
    const lo = Math.min(...records.map((r) => r.rating));
    const hi = Math.max(...records.map((r) => r.rating));
    expect([lo, hi]).toEqual([1, 5]);
    const unclipped = new BiasedMfPredictor({ ...model.options, clip: false }).fit(train);
    let clipped = 0;
    for (const u of users.ids()) {
      for (const i of items.ids()) {
        const raw = unclipped.predict(u, i);
        expect(model.predict(u, i)).toBe(Math.min(hi, Math.max(lo, raw)));
        if (raw > hi || raw < lo) clipped++;
      }
    }
    expect(clipped).toBeGreaterThan(0);
  });

  it("ranks by predicted rating and reports errors for unknown ids and empty histories", () => {
    const recs = model.recommend("u0", 10);
    const unseen = io.map((_, i) => `i${i}`).filter((i) => !records.some((r) => r.user === "u0" && r.item === i));
    expect(ids(recs).sort()).toEqual([...unseen, "newItem"].sort());
    for (let k = 1; k < recs.length; k++) expect(recs[k - 1].score).toBeGreaterThanOrEqual(recs[k].score);
    expect(() => model.predict("ghost", "i0")).toThrow(UnknownIdError);
    expect(() => model.predict("u0", "ghost")).toThrow('unknown item id "ghost"');
    expect(() => model.recommend("newUser", 3)).toThrow(EmptyHistoryError);
    expect(model.similar("newItem", 3)).toEqual([]);
  });
});
