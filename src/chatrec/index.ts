/**
 * Chat-REC (arXiv 2303.14524) on the TALLRec scorer: a classic recommender proposes candidates,
 * TALLRec re-ranks them for the user, the model explains the choice and keeps talking.
 *
 * @module
 */
export * from "./errors.js";
export * from "./history.js";
export * from "./rerank.js";
export * from "./intent.js";
export * from "./explain.js";
export * from "./session.js";
export * from "./coldstart.js";
export * from "./sources.js";
export * from "./knn-rating.js";
export * from "./pipeline.js";
export * from "./setup.js";
export * from "./eval.js";
export * from "./service.js";
