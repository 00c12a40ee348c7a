/**
 * The explanation: a prompt with the user's history, the request, the dialogue so far and the
 * chosen items, answered by `engine.generate` (streamed to `onText` as it is generated; the
 * model's chat template from its GGUF, or TALLRec's Alpaca layout when it has none). The base
 * model answers (no adapter) unless told otherwise: TALLRec's adapters are tuned to say Yes/No.
 *
 * @module
 */
import type { AdapterSelection } from "../engine/engine.js";
import type { ChatMessage, GenerateResult } from "../engine/generation.js";
import type { Generator } from "./intent.js";
import type { ChatTurn } from "./session.js";

/** One recommended item as the prompt shows it. */
export interface ExplainItem {
  title: string;
  genres: readonly string[];
  /** TALLRec's probability that the user likes it. */
  pYes?: number;
  /** Recommended without interactions (cold start: from its text). */
  coldStart?: boolean;
}

/** What the explanation prompt is built from. */
export interface ExplainInput {
  /** The user's profile in words (e.g. "a 30-year-old man, administrator"). */
  profile?: string;
  /** Titles the user liked and disliked (most recent last). */
  liked: readonly string[];
  disliked: readonly string[];
  /** The user's message this turn ("" for the opening recommendations). */
  request: string;
  /** The recommendations, best first. */
  items: readonly ExplainItem[];
  /** Earlier turns of the conversation (oldest first). */
  dialogue?: readonly ChatTurn[];
  /** Filters in force, in words (e.g. "genres: Comedy; not before 1990"). */
  constraints?: string;
  /** Things the system had to say (e.g. "no movie matched 'Foo'"). */
  notes?: readonly string[];
}

/** Options of {@link explanationMessages}. */
export interface ExplainPromptOptions {
  /** Earlier turns included (default 6, the most recent). */
  maxTurns?: number;
  /** Longest earlier turn included, characters (longer ones are cut; default 400). */
  maxTurnChars?: number;
}

/** The system text of the explanation prompt. */
export const EXPLAIN_SYSTEM =
  "You are a friendly movie recommender in a conversation. Recommend the listed movies, best first, " +
  "and explain briefly why they fit this user's taste and request. Only mention movies from the list or the user's history.";

function cut(s: string, n: number): string {
  return s.length <= n ? s : `${s.slice(0, n - 1)}…`;
}

/** The messages that ask for the explanation. */
export function explanationMessages(input: ExplainInput, options: ExplainPromptOptions = {}): ChatMessage[] {
  const maxTurns = options.maxTurns ?? 6;
  const maxChars = options.maxTurnChars ?? 400;
  const messages: ChatMessage[] = [{ role: "system", content: EXPLAIN_SYSTEM }];
  const earlier = (input.dialogue ?? []).slice(-maxTurns);
  // the model sees a well-formed alternation: drop a leading assistant turn
  while (earlier.length > 0 && earlier[0].role !== "user") earlier.shift();
  for (const t of earlier) messages.push({ role: t.role, content: cut(t.content, maxChars) || "(recommend something)" });
  const lines: string[] = [];
  if (input.profile) lines.push(`The user: ${input.profile}.`);
  lines.push(`The user liked: ${input.liked.length ? input.liked.join("; ") : "(nothing yet)"}.`);
  lines.push(`The user disliked: ${input.disliked.length ? input.disliked.join("; ") : "(nothing yet)"}.`);
  if (input.constraints) lines.push(`Constraints: ${input.constraints}.`);
  lines.push(`Request: ${input.request.trim() ? input.request.trim() : "Recommend some movies."}`);
  if (input.items.length === 0) lines.push("No movie matches the request; say so and suggest relaxing it.");
  else {
    lines.push("Recommended movies, best first:");
    input.items.forEach((it, i) => {
      const g = it.genres.filter((x) => x !== "unknown");
      const extra = [g.length ? g.join(", ") : "", it.pYes !== undefined ? `match ${Math.round(it.pYes * 100)}%` : "", it.coldStart ? "new, not rated by anyone yet" : ""].filter(Boolean);
      lines.push(`${i + 1}. ${it.title}${extra.length ? ` (${extra.join("; ")})` : ""}`);
    });
  }
  for (const n of input.notes ?? []) lines.push(`Note: ${n}`);
  lines.push("Explain in two or three sentences why these movies suit the user.");
  messages.push({ role: "user", content: lines.join("\n") });
  return messages;
}

/** Options of {@link explain}. */
export interface ExplainOptions extends ExplainPromptOptions {
  /** Most tokens generated (default 160). */
  maxTokens?: number;
  /** Sampling temperature (default 0.7; 0 is greedy). */
  temperature?: number;
  topK?: number;
  topP?: number;
  /** Sampling seed (default 0: the same input gives the same words). */
  seed?: number;
  /** Adapter(s) for generation (default null: the base model). */
  adapter?: AdapterSelection;
  /** Receives the text as it is generated. */
  onText?: (piece: string) => void;
  signal?: AbortSignal;
}

/** Generates the explanation, streaming it to `onText`. */
export async function explain(gen: Generator, input: ExplainInput, options: ExplainOptions = {}): Promise<GenerateResult> {
  return gen.generate(explanationMessages(input, options), {
    maxTokens: options.maxTokens ?? 160,
    temperature: options.temperature ?? 0.7,
    topK: options.topK,
    topP: options.topP,
    seed: options.seed ?? 0,
    adapter: options.adapter ?? null,
    onText: options.onText,
    signal: options.signal,
  });
}
