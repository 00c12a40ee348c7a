/**
 * Text generation and embeddings: types, chat formatting, and option checking. The Engine runs
 * them on contexts of their own (created on first use), so they never disturb the scoring
 * context's resident prefix.
 */
import type { NativeModel, SamplingOptions } from "./native.js";
import { TallrecError } from "../errors.js";

export interface ChatMessage {
  role: "system" | "user" | "assistant";
  content: string;
}

export interface GenerateOptions extends SamplingOptions {
  /** Receives the text as it is generated (whole characters; never part of a stop string). */
  onText?: (piece: string) => void;
  signal?: AbortSignal;
}

export interface GenerateResult {
  text: string;
  /** Tokens generated. */
  tokens: number;
  promptTokens: number;
  /** Why it stopped: end of text, a stop string, maxTokens, the context, or abort. */
  stopReason: "eos" | "stop" | "length" | "context" | "abort";
}

/** Markers of the fallback template (TALLRec's own Alpaca-style layout). */
export const FALLBACK_STOP = ["### Instruction:", "### Input:", "### Response:"];

/**
 * Formats a conversation with the model's chat template (from its GGUF) when it has one that
 * llama.cpp knows; otherwise with an Alpaca-style layout, the one TALLRec's LLaMA was tuned on:
 * the system text, then `### Instruction:` / `### Response:` turns.
 */
export function formatChat(model: NativeModel, messages: readonly ChatMessage[]): { text: string; template: "model" | "fallback" } {
  checkMessages(messages);
  const viaModel = model.chatTemplate()
    ? model.applyChatTemplate(
        messages.map((m) => ({ role: m.role, content: m.content })),
        true,
      )
    : null;
  if (viaModel !== null) return { text: viaModel, template: "model" };
  const parts: string[] = [];
  for (const m of messages) {
    if (m.role === "system") parts.push(`${m.content}\n\n`);
    else if (m.role === "user") parts.push(`### Instruction:\n${m.content}\n\n`);
    else parts.push(`### Response:\n${m.content}\n\n`);
  }
  parts.push("### Response:\n");
  return { text: parts.join(""), template: "fallback" };
}

export function checkMessages(messages: readonly ChatMessage[]): void {
  if (!Array.isArray(messages) || messages.length === 0) throw new TallrecError("invalid_input", "messages must be a non-empty array of { role, content }");
  messages.forEach((m, i) => {
    if (!m || !["system", "user", "assistant"].includes(m.role)) throw new TallrecError("invalid_input", `messages[${i}].role must be "system", "user" or "assistant"`);
    if (typeof m.content !== "string") throw new TallrecError("invalid_input", `messages[${i}].content must be a string`);
  });
}

export function checkGenerateOptions(o: GenerateOptions): void {
  const num = (k: keyof GenerateOptions, min: number, integer = false) => {
    const v = o[k];
    if (v === undefined) return;
    if (typeof v !== "number" || !Number.isFinite(v) || v < min || (integer && !Number.isInteger(v))) {
      throw new TallrecError("invalid_input", `${k} must be ${integer ? "an integer" : "a number"} >= ${min}`);
    }
  };
  num("maxTokens", 0, true);
  num("temperature", 0);
  num("topK", 0, true);
  num("topP", 0);
  num("minP", 0);
  num("repeatPenalty", 0);
  num("seed", 0, true);
  if (o.stop !== undefined && (!Array.isArray(o.stop) || o.stop.some((s) => typeof s !== "string"))) throw new TallrecError("invalid_input", "stop must be an array of strings");
  if (o.onText !== undefined && typeof o.onText !== "function") throw new TallrecError("invalid_input", "onText must be a function");
}

/** L2-normalizes an embedding in place (cosine similarity is then a dot product). */
export function normalize(v: Float32Array): Float32Array {
  let s = 0;
  for (const x of v) s += x * x;
  const n = Math.sqrt(s) || 1;
  for (let i = 0; i < v.length; i++) v[i] /= n;
  return v;
}
