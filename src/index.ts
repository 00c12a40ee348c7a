/**
 * tallrec: fast, exact TALLRec inference for Node.js.
 *
 * The engine (Engine.load / engine.score) scores user–item prompts with a LLaMA GGUF model and
 * TALLRec LoRA adapters over llama.cpp; prompts renders TALLRec's template.
 */
export { Engine } from "./engine/engine.js";
export type { AdapterSelection, AdapterSpec, EngineInfo, EngineOptions, LogFunction, Score, ScoreFailure, ScoreInput, ScoreOptions, ScoreResult, ScoreStats } from "./engine/engine.js";
export { INSTRUCTIONS, RESPONSE_MARKER, parseInput, promptText, renderInput, renderPrompt, toInstructionPrompt } from "./engine/prompt.js";
export type { Book, Domain, InstructionPrompt, PromptInput, StructuredPrompt } from "./engine/prompt.js";
export { SCORING_RULES, probabilityYes, sigmoid } from "./engine/scoring.js";
export type { ScoringRule } from "./engine/scoring.js";
export type { Backend, GpuMode } from "./engine/native.js";
export { convertHfModel, convertPeftLora, mergeLora, quantizeModel, quantizationTypes, ConvertError } from "./convert/index.js";
export type { ChatMessage, GenerateOptions, GenerateResult } from "./engine/generation.js";
export { ChatRec, createChatRec, ChatRecError } from "./chatrec/index.js";
