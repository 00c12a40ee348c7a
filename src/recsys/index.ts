/**
 * Classic recommenders for the Chat-REC pipeline: data loading, splits,
 * popularity / item-kNN / BPR-MF / biased-MF models, metrics.
 *
 * @module
 */

export * from "./errors.js";
export * from "./seed.js";
export * from "./interactions.js";
export * from "./items.js";
export * from "./dataset-files.js";
export * from "./split.js";
export * from "./topk.js";
export * from "./model-file.js";
export * from "./base.js";
export * from "./popularity.js";
export * from "./knn.js";
export * from "./mf.js";
export * from "./ranking-metrics.js";
export * from "./load.js";
export * from "./synthetic-movielens.js";
