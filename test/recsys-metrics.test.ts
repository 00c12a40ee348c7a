import { describe, expect, it } from "vitest";
import {
  IdIndex,
  Interactions,
  InvalidArgumentError,
  PopularityRecommender,
  evaluateRanking,
  evaluateRatings,
  hitRateAtK,
  hitsAtK,
  mae,
  ndcgAtK,
  precisionAtK,
  recallAtK,
  rmse,
  topK,
  UnknownIdError,
} from "../src/recsys/index.js";

const L2 = (r: number) => 1 / Math.log2(r + 1); // discount of 1-based rank r

describe("ranking metrics", () => {
  const ranked = ["x", "a", "y", "b"];
  const relevant = new Set(["a", "b", "c"]);

  it("computes precision, recall, hit rate and NDCG by the documented formulas", () => {
    expect(hitsAtK(ranked, relevant, 4)).toBe(2);
    expect(precisionAtK(ranked, relevant, 4)).toBe(0.5);
    expect(recallAtK(ranked, relevant, 4)).toBeCloseTo(2 / 3, 12);
    expect(hitRateAtK(ranked, relevant, 4)).toBe(1);
    expect(hitRateAtK(ranked, relevant, 1)).toBe(0);
    // DCG = 1/log2(3) + 1/log2(5) = 1.061606; IDCG@4 (|R| = 3) = 1 + 1/log2(3) + 1/2 = 2.130930
    expect(ndcgAtK(ranked, relevant, 4)).toBeCloseTo(1.0616063 / 2.1309298, 6);
    expect(ndcgAtK(ranked, relevant, 4)).toBeCloseTo((L2(2) + L2(4)) / (L2(1) + L2(2) + L2(3)), 12);
    // K = 2: one hit at rank 2; IDCG@2 = 1 + 1/log2 3
    expect(precisionAtK(ranked, relevant, 2)).toBe(0.5);
    expect(ndcgAtK(ranked, relevant, 2)).toBeCloseTo(L2(2) / (L2(1) + L2(2)), 12);
  });

  it("divides precision by K even for short lists, counts duplicates once", () => {
    expect(precisionAtK(["a"], relevant, 5)).toBe(0.2);
    expect(hitsAtK(["a", "a", "b"], relevant, 3)).toBe(2);
    expect(ndcgAtK(["a", "a"], new Set(["a"]), 2)).toBe(1);
    expect(ndcgAtK(["b", "a", "c"], relevant, 3)).toBeCloseTo(1, 12);
    expect(ndcgAtK(["z", "q"], relevant, 2)).toBe(0);
  });

  it("rejects an empty relevant set and bad K", () => {
    expect(() => ndcgAtK(ranked, new Set<string>(), 3)).toThrow(InvalidArgumentError);
    expect(() => precisionAtK(ranked, relevant, 0)).toThrow(InvalidArgumentError);
  });

  it("computes RMSE and MAE", () => {
    expect(rmse([3, 4, 5], [2, 4, 3])).toBeCloseTo(Math.sqrt(5 / 3), 12);
    expect(mae([3, 4, 5], [2, 4, 3])).toBe(1);
    expect(() => rmse([1], [1, 2])).toThrow(InvalidArgumentError);
    expect(() => mae([], [])).toThrow(InvalidArgumentError);
  });
});

describe("topK", () => {
  it("orders by score, breaks ties by lower index, skips NaN and rejected entries", () => {
    const s = Float32Array.from([0.5, 2, Number.NaN, 2, -1, 0.5, 3]);
    expect(Array.from(topK(s, 4))).toEqual([6, 1, 3, 0]);
    expect(Array.from(topK(s, 10))).toEqual([6, 1, 3, 0, 5, 4]);
    expect(Array.from(topK(s, 3, (i) => i !== 1))).toEqual([6, 3, 0]);
    expect(Array.from(topK(s, 0))).toEqual([]);
  });

  it("agrees with a full sort on random data", () => {
    const s = Float32Array.from({ length: 500 }, (_, i) => ((i * 7919) % 101) / 7);
    const ref = Array.from(s.keys()).sort((a, b) => s[b] - s[a] || a - b);
    expect(Array.from(topK(s, 37))).toEqual(ref.slice(0, 37));
  });
});

describe("evaluateRanking", () => {
  // Popularity on train: A 3, B 2, C 1, D 1, E 0.
  const users = new IdIndex("user", ["u1", "u2", "u3", "u4"]);
  const items = new IdIndex("item", ["A", "B", "C", "D", "E"]);
  const train = Interactions.fromRecords(
    [
      { user: "u1", item: "A" },
      { user: "u1", item: "B" },
      { user: "u2", item: "A" },
      { user: "u2", item: "C" },
      { user: "u3", item: "A" },
      { user: "u3", item: "B" },
      { user: "u3", item: "D" },
    ],
    { users, items },
  );
  const test = Interactions.fromRecords(
    [
      { user: "u1", item: "C", rating: 5 },
      { user: "u1", item: "E", rating: 2 },
      { user: "u2", item: "B", rating: 4 },
      { user: "u4", item: "A", rating: 5 }, // no training history → skipped
    ],
    { users, items },
  );
  const model = new PopularityRecommender().fit(train);

  it("averages hand-computed metrics over users with held-out items", () => {
    // u1 ranks [C, D, E] (A, B seen; C/D tie → lower index), relevant {C, E}
    // u2 ranks [B, D, E] (A, C seen), relevant {B}
    const r = evaluateRanking(model, train, test, [2, 3]);
    expect(r.model).toBe("popularity");
    expect(r.users).toBe(2);
    expect(r.skippedUsers).toBe(1);
    const u1n2 = L2(1) / (L2(1) + L2(2));
    const u1n3 = (L2(1) + L2(3)) / (L2(1) + L2(2));
    expect(r.at[2].precision).toBeCloseTo((1 / 2 + 1 / 2) / 2, 12);
    expect(r.at[2].recall).toBeCloseTo((1 / 2 + 1) / 2, 12);
    expect(r.at[2].ndcg).toBeCloseTo((u1n2 + 1) / 2, 6);
    expect(r.at[2].hitRate).toBe(1);
    expect(r.at[3].precision).toBeCloseTo((2 / 3 + 1 / 3) / 2, 6);
    expect(r.at[3].recall).toBeCloseTo(1, 12);
    expect(r.at[3].ndcg).toBeCloseTo((u1n3 + 1) / 2, 6);
  });

  it("filters relevance by rating and validates cut-offs", () => {
    // minRating 3: u1 relevant {C} (rank 1), u2 {B} (rank 1)
    const r = evaluateRanking(model, train, test, [1], { minRating: 3 });
    expect(r.users).toBe(2);
    expect(r.at[1]).toEqual({ precision: 1, recall: 1, ndcg: 1, hitRate: 1 });
    expect(() => evaluateRanking(model, train, test, [])).toThrow(InvalidArgumentError);
    expect(() => evaluateRanking(model, train, test, [0])).toThrow(InvalidArgumentError);
  });

  it("matches train/test to the model by id even with different id maps", () => {
    const test2 = Interactions.fromRecords([
      { user: "u2", item: "B" },
      { user: "u1", item: "E" },
      { user: "u1", item: "C" },
      { user: "ghost", item: "A" }, // unknown to the model → skipped
    ]);
    const r = evaluateRanking(model, train, test2, [2, 3]);
    expect(r.users).toBe(2);
    expect(r.skippedUsers).toBe(1);
    expect(r.at[3].ndcg).toBeCloseTo(evaluateRanking(model, train, test, [3]).at[3].ndcg, 12);
  });
});

describe("evaluateRatings", () => {
  it("computes RMSE/MAE of a predictor, skipping unknown ids but not other errors", () => {
    const predictor = {
      predict(user: string | number, item: string | number): number {
        if (user === "ghost") throw new UnknownIdError("user", "ghost");
        if (user === "broken") throw new Error("model bug");
        return String(item) === "x" ? 4 : 2;
      },
      predictIndex(): number {
        return 0;
      },
    };
    const test = Interactions.fromRecords([
      { user: "a", item: "x", rating: 5 },
      { user: "ghost", item: "x", rating: 1 },
      { user: "a", item: "y", rating: 1 },
      { user: "b", item: "x", rating: 4 },
    ]);
    const r = evaluateRatings(predictor, test);
    expect(r.count).toBe(3);
    expect(r.skipped).toBe(1);
    expect(r.rmse).toBeCloseTo(Math.sqrt(2 / 3), 12);
    expect(r.mae).toBeCloseTo(2 / 3, 12);
    const bad = Interactions.fromRecords([{ user: "broken", item: "x", rating: 1 }]);
    expect(() => evaluateRatings(predictor, bad)).toThrow("model bug");
  });
});
