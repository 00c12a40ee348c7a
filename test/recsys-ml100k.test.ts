/**
 * End-to-end checks on MovieLens-100K (read from ../shared/data/ml-100k, or
 * $TALLREC_DATA/ml-100k). Models use their default hyper-parameters, which
 * were chosen on validation splits carved out of the training data.
 *
 * Measured with the temporal leave-last-out split (943 users, one held-out
 * item each): NDCG@10 popularity 0.0449, item-kNN 0.0534, BPR 0.0703; the
 * biased MF predictor reaches RMSE 0.9185 / MAE 0.7251 on a seeded random
 * 80/20 split (global mean: 1.1283 / 0.9477). The thresholds below sit
 * safely under those numbers.
 */
import { mkdtempSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { beforeAll, describe, expect, it } from "vitest";
import {
  BiasedMfPredictor,
  BprRecommender,
  EmptyHistoryError,
  type Interactions,
  ItemKnnRecommender,
  type MovieLens100k,
  PopularityRecommender,
  type RankingReport,
  UnknownIdError,
  evaluateRanking,
  evaluateRatings,
  leaveLastOut,
  loadMovieLens100k,
  loadRecommender,
  randomSplit,
} from "../src/recsys/index.js";

const here = dirname(fileURLToPath(import.meta.url));
const dataRoot = process.env.TALLREC_DATA ? resolve(process.env.TALLREC_DATA) : resolve(here, "../../shared/data");
const ml100k = join(dataRoot, "ml-100k");

let ds: MovieLens100k;
let train: Interactions;
let test: Interactions;
let pop: PopularityRecommender;
let knn: ItemKnnRecommender;
let bpr: BprRecommender;
let reports: Record<"pop" | "knn" | "bpr", RankingReport>;

beforeAll(async () => {
  ds = await loadMovieLens100k(ml100k);
  ({ train, test } = leaveLastOut(ds.interactions));
  pop = new PopularityRecommender().fit(train);
  knn = new ItemKnnRecommender().fit(train);
  bpr = new BprRecommender().fit(train);
  reports = {
    pop: evaluateRanking(pop, train, test),
    knn: evaluateRanking(knn, train, test),
    bpr: evaluateRanking(bpr, train, test),
  };
});

describe("MovieLens-100K, temporal leave-last-out", () => {
  it("holds out exactly one interaction per user", () => {
    expect(test.length).toBe(943);
    expect(train.length).toBe(100_000 - 943);
    expect(new Set(test.userIdx).size).toBe(943);
    for (const r of Object.values(reports)) {
      expect(r.users).toBe(943);
      expect(r.skippedUsers).toBe(0);
    }
  });

  it("item-kNN and BPR beat popularity on NDCG@10 (and HR@10)", () => {
    const p = reports.pop.at[10];
    expect(p.ndcg).toBeGreaterThan(0.03); // popularity is a real baseline, not a broken one
    expect(reports.knn.at[10].ndcg).toBeGreaterThan(p.ndcg + 0.005);
    expect(reports.bpr.at[10].ndcg).toBeGreaterThan(p.ndcg + 0.015);
    expect(reports.knn.at[10].hitRate).toBeGreaterThan(p.hitRate + 0.01);
    expect(reports.bpr.at[10].hitRate).toBeGreaterThan(p.hitRate + 0.03);
    for (const r of Object.values(reports)) {
      // One relevant item per user: recall = hit rate and precision@K = hit rate / K.
      expect(r.at[10].recall).toBeCloseTo(r.at[10].hitRate, 12);
      expect(r.at[5].precision).toBeCloseTo(r.at[5].hitRate / 5, 12);
      expect(r.at[5].ndcg).toBeLessThanOrEqual(r.at[10].ndcg);
    }
  });

  it("is deterministic: refitting with the same seed gives the same numbers", () => {
    const again = new BprRecommender().fit(train);
    expect(evaluateRanking(again, train, test)).toEqual(reports.bpr);
    expect(again.scoreItems("196")).toEqual(bpr.scoreItems("196"));
    const knn2 = new ItemKnnRecommender().fit(train);
    expect(evaluateRanking(knn2, train, test)).toEqual(reports.knn);
  });

  it("save → load gives identical scores and evaluation", async () => {
    const dir = mkdtempSync(join(tmpdir(), "recsys-ml100k-"));
    for (const model of [pop, knn, bpr]) {
      const path = join(dir, `${model.kind}.trrec`);
      await model.save(path);
      const loaded = await loadRecommender(path);
      expect(loaded.kind).toBe(model.kind);
      for (const user of ["1", "196", "943"]) expect(loaded.scoreItems(user)).toEqual(model.scoreItems(user));
      expect(evaluateRanking(loaded, train, test)).toEqual(evaluateRanking(model, train, test));
      expect(statSync(path).size).toBeLessThan(2_000_000);
    }
  });

  it("finds sensible neighbours of Star Wars (1977)", () => {
    expect(ds.items.title(50)).toBe("Star Wars (1977)");
    const knnTitles = knn.similar(50, 3).map((r) => ds.items.title(r.item));
    expect(knnTitles).toContain("Return of the Jedi (1983)");
    expect(knnTitles).toContain("Empire Strikes Back, The (1980)");
    expect(ds.items.title(bpr.similar(50, 1)[0].item)).toBe("Return of the Jedi (1983)");
  });

  it("recommends unseen items only, honouring a genre filter", () => {
    const seen = new Set(knn.history("196"));
    const recs = knn.recommend("196", 10, { filter: (id) => ds.items.get(id)?.genres.includes("Comedy") ?? false });
    expect(recs).toHaveLength(10);
    for (const r of recs) {
      expect(seen.has(r.item)).toBe(false);
      expect(ds.items.require(r.item).genres).toContain("Comedy");
    }
  });

  it("gives clear errors for unknown users / items and users without history", () => {
    expect(() => knn.recommend("99999", 5)).toThrow('unknown user id "99999"');
    expect(() => bpr.scoreItems(0)).toThrow(UnknownIdError);
    expect(() => knn.similar("1683", 5)).toThrow('unknown item id "1683"');
    // User 196 removed from training: known to the id maps, but without history.
    const u196 = ds.interactions.users.indexOf("196");
    const rows: number[] = [];
    for (let r = 0; r < train.length; r++) if (train.userIdx[r] !== u196) rows.push(r);
    const without = train.subset(rows);
    expect(() => new ItemKnnRecommender().fit(without).recommend("196", 5)).toThrow(EmptyHistoryError);
    expect(() => new BprRecommender({ epochs: 1 }).fit(without).recommend("196", 5)).toThrow(EmptyHistoryError);
    expect(new PopularityRecommender().fit(without).recommend("196", 3)).toHaveLength(3);
  });
});

describe("MovieLens-100K rating prediction, random 80/20", () => {
  it("biased MF predicts held-out ratings well below the global-mean baseline", () => {
    const split = randomSplit(ds.interactions, { testFraction: 0.2, seed: 42 });
    expect(split.test.length).toBe(20_000);
    const mf = new BiasedMfPredictor().fit(split.train);
    const r = evaluateRatings(mf, split.test);
    expect(r.count).toBe(20_000);
    let mean = 0;
    for (const x of split.train.ratings) mean += x;
    mean /= split.train.length;
    let se = 0;
    for (const x of split.test.ratings) se += (x - mean) ** 2;
    const baseline = Math.sqrt(se / split.test.length);
    expect(baseline).toBeGreaterThan(1.1);
    expect(r.rmse).toBeLessThan(0.935);
    expect(r.rmse).toBeLessThan(baseline - 0.15);
    expect(r.mae).toBeLessThan(0.745);
  });
});
