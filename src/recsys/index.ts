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
export * from "./csv.js";
export * from "./data.js";
