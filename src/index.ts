/**
 * tallrec: fast, exact TALLRec inference for Node.js.
 *
 * The engine (Engine.load / engine.score) scores user–item prompts with a LLaMA GGUF model and
 * TALLRec LoRA adapters over llama.cpp, every call through its one scheduler; prompts renders
 * TALLRec's template; every error carries a code from ERROR_CODES (docs/errors.md).
 */
export { Engine } from "./engine/engine.js";
export type {
  AdapterSelection,
  AdapterSpec,
  EngineInfo,
  EngineOptions,
  LogFunction,
  Score,
  ScoreFailure,
  ScoreInput,
  ScoreOptions,
  ScoreResult,
  ScoreStats,
  SchedulerBounds,
  SchedulerStats,
  BatchInfo,
} from "./engine/engine.js";
export { Scheduler, QueueFullError, SchedulerClosedError } from "./engine/scheduler.js";
export { ERROR_CODES, TallrecError, codeOf, exitCodeOf, httpStatusOf, isErrorCode } from "./errors.js";
export type { ErrorCode } from "./errors.js";
export { INSTRUCTIONS, RESPONSE_MARKER, parseInput, promptText, renderInput, renderPrompt, toInstructionPrompt } from "./engine/prompt.js";
export type { Book, Domain, InstructionPrompt, PromptInput, StructuredPrompt } from "./engine/prompt.js";
export { SCORING_RULES, probabilityYes, sigmoid } from "./engine/scoring.js";
export type { ScoringRule } from "./engine/scoring.js";
export type { Backend, GpuMode } from "./engine/native.js";
export { convertHfModel, convertPeftLora, mergeLora, quantizeModel, quantizationTypes, ConvertError } from "./convert/index.js";
export type { ChatMessage, GenerateOptions, GenerateResult } from "./engine/generation.js";
export { ChatRec, createChatRec, ChatRecError } from "./chatrec/index.js";
