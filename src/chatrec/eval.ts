/**
 * The recsys-eval protocol: the classic recommenders, each alone and each followed by TALLRec
 * re-ranking of its top candidates, with precision, recall, NDCG and hit rate at 5 and 10, plus
 * RMSE / MAE of rating prediction, on one split of the interactions.
 *
 * Protocol (Chat-REC's top-5 setting on MovieLens-100K by default): a seeded random 80/20 split
 * of the ratings (or temporal leave-last-out); for each test user with training history, the
 * relevant items are their test items (optionally only those rated ≥ `minRating`) not in their
 * training history; the candidates are all items outside the training history; a recommender's
 * list is its top items; a re-ranked list is the recommender's top `candidates` (default 20)
 * sorted by TALLRec's pYes for the user (the prompt: their 10 most recent training ratings,
 * liked when rated ≥ 4, as in TALLRec's data). Metrics are averaged over users; the metric
 * definitions are src/recsys/ranking-metrics.ts's, and the plain rows equal `evaluateRanking`'s.
 *
 * @module
 */
import type { AdapterSelection, ScoreInput } from "../engine/engine.js";
import type { Domain } from "../engine/prompt.js";
import type { Recommender } from "../recsys/base.js";
import { InvalidArgumentError } from "../recsys/errors.js";
import type { Interactions } from "../recsys/interactions.js";
import type { ItemCatalog } from "../recsys/items.js";
import { addRankingMetrics as addMetrics, evaluateRatings, type RankingMetrics } from "../recsys/ranking-metrics.js";
import { BiasedMfPredictor } from "../recsys/mf.js";
import { Rng } from "../recsys/seed.js";
import { leaveLastOut, randomSplit } from "../recsys/split.js";
import { topK } from "../recsys/topk.js";
import type { ScoringRule } from "../engine/scoring.js";
import { fitRecommender, RECOMMENDER_NAMES, type RecommenderKind } from "./sources.js";
import { HistoryIndex, tallrecPrompt, titledHistory, type HistoryOptions } from "./history.js";
import { GlobalMeanPredictor, ItemKnnRatingPredictor } from "./knn-rating.js";
import { orderCandidates, type Scorer } from "./rerank.js";

/** TALLRec re-ranking in the evaluation. */
export interface EvalRerankOptions {
  /** The engine (its `score`). */
  engine: Scorer;
  /** Titles of the items (the TALLRec targets and history). */
  catalog: ItemCatalog;
  adapter?: AdapterSelection;
  scoring?: ScoringRule;
  /** Blend with the recommender's score (default 0: pYes alone). */
  alpha?: number;
  history?: HistoryOptions;
  domain?: Domain;
  /** Users per engine call (default 16). */
  usersPerCall?: number;
  /** Label of the model in the report (e.g. "tiny random-weight test model"). */
  label?: string;
}

/** Options of {@link runRecsysEval}. */
export interface RecsysEvalOptions {
  /** "random" (default: a seeded 80/20 split of the ratings, Chat-REC's setting) or "leave-last-out". */
  split?: "random" | "leave-last-out";
  /** Test share of the random split (default 0.2). */
  testFraction?: number;
  /** Seed of the split, the user sample and the MF models (default 42). */
  seed?: number;
  /** Cut-offs (default [5, 10]). */
  ks?: number[];
  /** Recommenders evaluated for ranking (default popularity, knn, bpr). */
  models?: RecommenderKind[];
  /** Candidates re-ranked per user (default 20; at least the largest cut-off). */
  candidates?: number;
  /** Only test ratings ≥ this are relevant (default: all test items). */
  minRating?: number;
  /** Evaluate a seeded sample of this many users (default: all). */
  users?: number;
  /** TALLRec re-ranking (omit for the classic rows only). */
  rerank?: EvalRerankOptions;
  /** Rating prediction rows (default true). */
  ratings?: boolean;
  /** Progress: users done of the total, in the re-ranking pass. */
  onProgress?: (done: number, total: number) => void;
  signal?: AbortSignal;
}

/** One row of the ranking table. */
export interface RankingRow {
  /** e.g. "Item-kNN" or "Item-kNN + TALLRec". */
  name: string;
  model: RecommenderKind;
  reranked: boolean;
  users: number;
  at: Record<number, RankingMetrics>;
  /** Seconds to fit the recommender (plain rows) or to score the candidates (re-ranked rows, shared by all models). */
  fitSeconds: number;
  /** Seconds to rank and measure. */
  evalSeconds: number;
}

/** One row of the rating table. */
export interface RatingRow {
  name: string;
  rmse: number;
  mae: number;
  count: number;
  seconds: number;
}

/** The report of {@link runRecsysEval}. */
export interface RecsysEvalReport {
  split: string;
  seed: number;
  trainSize: number;
  testSize: number;
  /** Users evaluated (same for every ranking row). */
  users: number;
  ks: number[];
  candidates: number;
  minRating: number | null;
  ranking: RankingRow[];
  ratings: RatingRow[];
  rerank: null | { label: string; scoring: ScoringRule; alpha: number; prompts: number; failed: number; seconds: number; promptsPerSecond: number };
  seconds: number;
}

interface UserCase {
  u: number;
  seen: Set<number>;
  relevant: Set<number>;
}

/** Users to evaluate: with training history and a relevant held-out item, by index. */
function userCases(train: Interactions, test: Interactions, minRating: number): UserCase[] {
  if (train.users !== test.users || train.items !== test.items) throw new InvalidArgumentError("train and test must share id maps (use the splitters)");
  const tm = train.userItemMatrix();
  const relevant = new Map<number, Set<number>>();
  for (let r = 0; r < test.length; r++) {
    if (test.ratings[r] < minRating) continue;
    const u = test.userIdx[r];
    let set = relevant.get(u);
    if (!set) relevant.set(u, (set = new Set()));
    set.add(test.itemIdx[r]);
  }
  const out: UserCase[] = [];
  for (const u of [...relevant.keys()].sort((a, b) => a - b)) {
    if (tm.indptr[u] === tm.indptr[u + 1]) continue;
    const seen = new Set<number>();
    for (let p = tm.indptr[u]; p < tm.indptr[u + 1]; p++) seen.add(tm.indices[p]);
    const rel = new Set([...relevant.get(u)!].filter((i) => !seen.has(i)));
    if (rel.size > 0) out.push({ u, seen, relevant: rel });
  }
  return out;
}

function average(sums: Record<number, RankingMetrics>, n: number, ks: number[]): Record<number, RankingMetrics> {
  const at: Record<number, RankingMetrics> = {};
  for (const k of ks) {
    const s = sums[k];
    at[k] = n === 0 ? { precision: 0, recall: 0, ndcg: 0, hitRate: 0 } : { precision: s.precision / n, recall: s.recall / n, ndcg: s.ndcg / n, hitRate: s.hitRate / n };
  }
  return at;
}

function zeroSums(ks: number[]): Record<number, RankingMetrics> {
  return Object.fromEntries(ks.map((k) => [k, { precision: 0, recall: 0, ndcg: 0, hitRate: 0 }]));
}

/** A model's top `n` item indices for a user, outside their training history. */
function topFor(model: Recommender, c: UserCase, n: number): { items: Int32Array; scores: Float32Array } {
  const scores = model.scoreUserIndex(c.u);
  return { items: topK(scores, n, (i) => !c.seen.has(i)), scores };
}

/** Runs the protocol (see the module comment). */
export async function runRecsysEval(interactions: Interactions, options: RecsysEvalOptions = {}): Promise<RecsysEvalReport> {
  const t0 = performance.now();
  const seed = options.seed ?? 42;
  const ks = options.ks ?? [5, 10];
  if (ks.length === 0 || ks.some((k) => !Number.isInteger(k) || k < 1)) throw new InvalidArgumentError(`cut-offs must be positive integers, got ${ks.join(",")}`);
  const maxK = Math.max(...ks);
  const nCand = options.candidates ?? 20;
  if (!Number.isInteger(nCand) || nCand < maxK) throw new InvalidArgumentError(`candidates (${nCand}) must be an integer >= the largest cut-off (${maxK})`);
  const split = options.split ?? "random";
  const { train, test } = split === "random" ? randomSplit(interactions, { testFraction: options.testFraction ?? 0.2, seed }) : leaveLastOut(interactions);
  const minRating = options.minRating ?? -Infinity;
  let cases = userCases(train, test, minRating);
  if (options.users !== undefined) {
    if (!Number.isInteger(options.users) || options.users < 1) throw new InvalidArgumentError(`users must be a positive integer, got ${options.users}`);
    if (options.users < cases.length) {
      const order = Int32Array.from(cases.keys());
      new Rng(seed).shuffle(order);
      const keep = new Set(Array.from(order.subarray(0, options.users)));
      cases = cases.filter((_, i) => keep.has(i));
    }
  }

  const kinds = options.models ?? ["popularity", "knn", "bpr"];
  const models: Array<{ kind: RecommenderKind; model: Recommender; fitSeconds: number }> = [];
  for (const kind of kinds) {
    const t = performance.now();
    const model = fitRecommender(kind, train, { seed });
    models.push({ kind, model, fitSeconds: (performance.now() - t) / 1000 });
  }

  // plain rows
  const ranking: RankingRow[] = [];
  const candidateLists = new Map<RecommenderKind, Array<{ items: Int32Array; scores: Float32Array }>>();
  for (const { kind, model, fitSeconds } of models) {
    const t = performance.now();
    const sums = zeroSums(ks);
    const lists: Array<{ items: Int32Array; scores: Float32Array }> = [];
    for (const c of cases) {
      const { items, scores } = topFor(model, c, nCand);
      addMetrics(sums, items.subarray(0, maxK), c.relevant, ks);
      if (options.rerank) lists.push({ items, scores: Float32Array.from(items, (i) => scores[i]) });
    }
    if (options.rerank) candidateLists.set(kind, lists);
    ranking.push({ name: RECOMMENDER_NAMES[kind], model: kind, reranked: false, users: cases.length, at: average(sums, cases.length, ks), fitSeconds, evalSeconds: (performance.now() - t) / 1000 });
  }

  // re-ranked rows: per user, the union of the models' candidates is scored once
  let rerankInfo: RecsysEvalReport["rerank"] = null;
  if (options.rerank && models.length > 0) {
    const ro = options.rerank;
    const histories = new HistoryIndex(train, ro.history);
    const perCall = ro.usersPerCall ?? 16;
    const sums = new Map(models.map((m) => [m.kind, zeroSums(ks)]));
    const t = performance.now();
    let prompts = 0;
    let failed = 0;
    options.onProgress?.(0, cases.length);
    for (let start = 0; start < cases.length; start += perCall) {
      options.signal?.throwIfAborted();
      const batch = cases.slice(start, start + perCall);
      const inputs: ScoreInput[] = [];
      const where: Array<Map<number, number>> = [];
      batch.forEach((c, b) => {
        const h = titledHistory(ro.catalog, histories.get(train.users.id(c.u)));
        const slot = new Map<number, number>();
        for (const { kind } of models) {
          for (const i of candidateLists.get(kind)![start + b].items) {
            if (slot.has(i)) continue;
            slot.set(i, inputs.length);
            inputs.push(tallrecPrompt(h, ro.catalog.get(train.items.id(i))?.title ?? `item ${train.items.id(i)}`, ro.domain ?? "movie"));
          }
        }
        where.push(slot);
      });
      const results = await ro.engine.score(inputs, { adapter: ro.adapter, scoring: ro.scoring, signal: options.signal });
      prompts += inputs.length;
      failed += results.filter((r) => r.error !== undefined).length;
      batch.forEach((c, b) => {
        for (const { kind } of models) {
          const list = candidateLists.get(kind)![start + b];
          const scored = [];
          const unscored: number[] = [];
          for (let k = 0; k < list.items.length; k++) {
            const i = list.items[k];
            const r = results[where[b].get(i)!];
            if (r.error !== undefined) unscored.push(i);
            else scored.push({ item: String(i), title: "", recScore: list.scores[k], pYes: r.pYes, logitYes: r.logitYes, logitNo: r.logitNo });
          }
          const ordered = orderCandidates(scored, { alpha: ro.alpha ?? 0, scoring: ro.scoring });
          const ranked = Int32Array.from([...ordered.map((x) => Number(x.item)), ...unscored]);
          addMetrics(sums.get(kind)!, ranked.subarray(0, maxK), c.relevant, ks);
        }
      });
      options.onProgress?.(Math.min(start + perCall, cases.length), cases.length);
    }
    const seconds = (performance.now() - t) / 1000;
    for (const { kind } of models) {
      ranking.push({ name: `${RECOMMENDER_NAMES[kind]} + TALLRec`, model: kind, reranked: true, users: cases.length, at: average(sums.get(kind)!, cases.length, ks), fitSeconds: seconds, evalSeconds: 0 });
    }
    rerankInfo = { label: ro.label ?? "", scoring: ro.scoring ?? "softmax", alpha: ro.alpha ?? 0, prompts, failed, seconds, promptsPerSecond: prompts / seconds };
  }

  // rating prediction
  const ratings: RatingRow[] = [];
  if (options.ratings ?? true) {
    const predictors: Array<[string, () => { predict(u: string, i: string): number }]> = [
      ["Global mean", () => new GlobalMeanPredictor().fit(train)],
      ["Item-kNN (item means, k=40)", () => new ItemKnnRatingPredictor().fit(train)],
      ["Biased MF", () => new BiasedMfPredictor({ seed }).fit(train)],
    ];
    for (const [name, make] of predictors) {
      const t = performance.now();
      const r = evaluateRatings(make() as never, test);
      ratings.push({ name, rmse: r.rmse, mae: r.mae, count: r.count, seconds: (performance.now() - t) / 1000 });
    }
  }

  return {
    split: split === "random" ? `random ${Math.round((1 - (options.testFraction ?? 0.2)) * 100)}/${Math.round((options.testFraction ?? 0.2) * 100)} (seed ${seed})` : "temporal leave-last-out",
    seed,
    trainSize: train.length,
    testSize: test.length,
    users: cases.length,
    ks,
    candidates: nCand,
    minRating: Number.isFinite(minRating) ? minRating : null,
    ranking,
    ratings,
    rerank: rerankInfo,
    seconds: (performance.now() - t0) / 1000,
  };
}

/** Chat-REC's published MovieLens-100K numbers (arXiv 2303.14524, Tables 2 and 3). */
export const CHAT_REC_PUBLISHED = {
  // Only the rows that could be checked against a second source; the paper's other rows (LightFM,
  // the gpt-3.5-turbo and text-davinci-002 variants, MF) are left out rather than quoted from memory.
  topK: [
    { name: "LightGCN", precision: 0.303, recall: 0.1455, ndcg: 0.3425 },
    { name: "Chat-Rec (text-davinci-003)", precision: 0.324, recall: 0.1404, ndcg: 0.3802 },
  ],
  rating: [
    { name: "Item-KNN", rmse: 0.933, mae: 0.734 },
    { name: "Chat-Rec (text-davinci-003)", rmse: 0.785, mae: 0.593 },
  ],
} as const;

const f4 = (x: number) => x.toFixed(4);

/** The report as Markdown tables (ours, then Chat-REC's published numbers when `published`). */
export function formatReport(r: RecsysEvalReport, options: { published?: boolean } = {}): string {
  const lines: string[] = [];
  lines.push(
    `Split: ${r.split}; ${r.trainSize} training / ${r.testSize} test ratings; ${r.users} users; relevant: ${r.minRating === null ? "every held-out item" : `held-out items rated >= ${r.minRating}`}${r.rerank ? `; re-ranking: each model's top ${r.candidates} candidates` : ""}.`,
  );
  if (r.rerank)
    lines.push(
      `TALLRec re-ranking: ${r.rerank.label || "the given model"}, ${r.rerank.scoring} scoring, alpha ${r.rerank.alpha}; ${r.rerank.prompts} prompts in ${r.rerank.seconds.toFixed(1)} s (${r.rerank.promptsPerSecond.toFixed(1)}/s)${r.rerank.failed ? `, ${r.rerank.failed} failed` : ""}.`,
    );
  lines.push("");
  const head = ["model", ...r.ks.flatMap((k) => [`P@${k}`, `R@${k}`, `NDCG@${k}`]), "seconds"];
  lines.push(`| ${head.join(" | ")} |`);
  lines.push(`| ${head.map((_, i) => (i === 0 ? "---" : "---:")).join(" | ")} |`);
  for (const row of r.ranking) {
    const cells = r.ks.flatMap((k) => [f4(row.at[k].precision), f4(row.at[k].recall), f4(row.at[k].ndcg)]);
    lines.push(`| ${row.name} | ${cells.join(" | ")} | ${(row.reranked ? row.fitSeconds : row.fitSeconds + row.evalSeconds).toFixed(1)}${row.reranked ? " (shared)" : ""} |`);
  }
  if (r.ratings.length) {
    lines.push("");
    lines.push("| rating prediction | RMSE | MAE | seconds |");
    lines.push("| --- | ---: | ---: | ---: |");
    for (const x of r.ratings) lines.push(`| ${x.name} | ${f4(x.rmse)} | ${f4(x.mae)} | ${x.seconds.toFixed(1)} |`);
  }
  if (options.published) {
    lines.push("");
    lines.push("Chat-REC (arXiv 2303.14524), MovieLens-100K, as published:");
    lines.push("");
    lines.push("| top-5 | P@5 | R@5 | NDCG@5 |");
    lines.push("| --- | ---: | ---: | ---: |");
    for (const x of CHAT_REC_PUBLISHED.topK) lines.push(`| ${x.name} | ${f4(x.precision)} | ${f4(x.recall)} | ${f4(x.ndcg)} |`);
    lines.push("");
    lines.push("| rating prediction | RMSE | MAE |");
    lines.push("| --- | ---: | ---: |");
    for (const x of CHAT_REC_PUBLISHED.rating) lines.push(`| ${x.name} | ${f4(x.rmse)} | ${f4(x.mae)} |`);
  }
  return lines.join("\n");
}
