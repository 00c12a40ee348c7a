/**
 * The engine's insides, one file a concern:
 * - engine.ts: loading and options, adapters, the score call, generation and embeddings;
 * - scheduler.ts: the one queue every caller's prompts go through (merged, fair, bounded);
 * - plan.ts: how a batch is laid out in the KV memory (planner), executed by native/src/scorer.cpp;
 * - native.ts: the addon binding and its build variants;
 * - prompt.ts: TALLRec's prompt template and the shape checks of prompt inputs;
 * - scoring.ts: the scoring rules (pYes from the answer logits);
 * - generation.ts: chat formatting and generation options;
 * - validate.ts: model and adapter file checks before llama.cpp sees them.
 */
export * from "./engine.js";
