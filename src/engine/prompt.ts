/**
 * The TALLRec prompt, byte for byte as TALLRec trains and evaluates (quirks included), and the
 * structured form of its input (liked items, disliked items, target item).
 *
 * TALLRec's template (its `generate_prompt`) carries the literal text `  # noqa: E501` left over
 * from a linter comment; the model was fine-tuned on it, so it is reproduced exactly.
 */

import { TallrecError } from "../errors.js";

export type Domain = "movie" | "book";

/** The domains TALLRec has instructions for. */
export const DOMAINS: readonly Domain[] = ["movie", "book"];

export function isDomain(d: unknown): d is Domain {
  return d === "movie" || d === "book";
}

const invalid = (message: string) => new TallrecError("invalid_input", message);

/** A TALLRec data row: the instruction and the input that describes one user–item pair. */
export interface InstructionPrompt {
  instruction: string;
  /** The user/item description; an empty string selects the template without an Input section. */
  input: string;
}

/** A book as TALLRec renders it: `"Title" written by Author`. */
export interface Book {
  title: string;
  author: string;
}

/** The same pair as structured fields; renders exactly as the TALLRec data does. */
export interface StructuredPrompt {
  domain: Domain;
  /** Items the user liked (movie titles, or books). */
  liked: ReadonlyArray<string | Book>;
  /** Items the user disliked. */
  disliked: ReadonlyArray<string | Book>;
  /** The candidate item. */
  target: string | Book;
  /** Overrides the domain's standard TALLRec instruction. */
  instruction?: string;
}

export type PromptInput = InstructionPrompt | StructuredPrompt;

const HEADER_WITH_INPUT = "Below is an instruction that describes a task, paired with an input that provides further context. " + "Write a response that appropriately completes the request.  # noqa: E501\n\n";
const HEADER_NO_INPUT = "Below is an instruction that describes a task. Write a response that appropriately completes the request.  # noqa: E501\n\n";

/** The text after which the model answers; the answer tokens are read right after it. */
export const RESPONSE_MARKER = "### Response:\n";

/** TALLRec's instruction for each domain (identical on every row of its data). */
export const INSTRUCTIONS: Readonly<Record<Domain, string>> = {
  movie: 'Given the user\'s preference and unpreference, identify whether the user will like the target movie by answering "Yes." or "No.".',
  book: 'Given the user\'s preference and unpreference, identify whether the user will like the target book by answering "Yes." or "No.".',
};

/** Renders a TALLRec prompt (instruction + input) exactly as TALLRec's generate_prompt does. */
export function renderPrompt(p: InstructionPrompt): string {
  if (p.input) {
    return `${HEADER_WITH_INPUT}### Instruction:\n${p.instruction}\n\n### Input:\n${p.input}\n\n${RESPONSE_MARKER}`;
  }
  return `${HEADER_NO_INPUT}### Instruction:\n${p.instruction}\n\n${RESPONSE_MARKER}`;
}

function renderItem(item: string | Book, domain: Domain): string {
  if (typeof item === "string") return domain === "movie" ? `"${item}"` : item;
  return `"${item.title}" written by ${item.author}`;
}

/**
 * Renders the input section from structured fields, as the TALLRec data does:
 * movies are quoted and joined by `", "`; books are `"Title" written by Author` joined by `", "`,
 * with the target wrapped in one more pair of quotes (`""Title" written by Author"`). A book given
 * as a string is taken as already rendered (`"Title" written by Author`).
 */
export function renderInput(p: Omit<StructuredPrompt, "instruction">): string {
  const list = (items: ReadonlyArray<string | Book>) => items.map((i) => renderItem(i, p.domain)).join(", ");
  const target = p.domain === "movie" ? renderItem(p.target, "movie") : `"${renderItem(p.target, "book")}"`;
  return `User Preference: ${list(p.liked)}\n` + `User Unpreference: ${list(p.disliked)}\n` + `Whether the user will like the target ${p.domain} ${target}?`;
}

export function isStructured(p: PromptInput): p is StructuredPrompt {
  return (p as StructuredPrompt).target !== undefined && (p as StructuredPrompt).domain !== undefined;
}

/** The instruction/input form of either kind of prompt. */
export function toInstructionPrompt(p: PromptInput): InstructionPrompt {
  if (!isStructured(p)) return p;
  return { instruction: p.instruction ?? INSTRUCTIONS[p.domain], input: renderInput(p) };
}

/** The full prompt text for either kind of prompt. */
export function promptText(p: PromptInput): string {
  return renderPrompt(toInstructionPrompt(p));
}

const INPUT_RE = /^User Preference: ([^\n]*)\nUser Unpreference: ([^\n]*)\nWhether the user will like the target (movie|book) (.*)\?$/s;

/**
 * Parses a TALLRec input back into structured fields (books come back as their rendered strings,
 * `"Title" written by Author`, since titles and authors can contain the separators). Returns null
 * when the text is not in TALLRec's input format. renderInput(parseInput(x)) === x for every row
 * of the TALLRec data.
 */
export function parseInput(input: string): Omit<StructuredPrompt, "instruction"> | null {
  const m = INPUT_RE.exec(input);
  if (!m) return null;
  const domain = m[3] as Domain;
  const split = (s: string): string[] => {
    if (s === "") return [];
    if (domain === "movie") {
      if (!s.startsWith('"') || !s.endsWith('"')) return [s];
      return s.slice(1, -1).split('", "');
    }
    return s.split(/, (?=")/);
  };
  let target = m[4];
  if (domain === "movie" || (target.startsWith('"') && target.endsWith('"'))) target = target.slice(1, -1);
  return { domain, liked: split(m[1]), disliked: split(m[2]), target };
}

/**
 * The shape of a prompt input, in two forms kept side by side: JSON schemas (the HTTP API validates
 * and documents items with them, src/server/schemas.ts) and {@link checkPromptInput} (the engine's
 * check of what library callers pass).
 */
export const BOOK_SCHEMA = {
  type: "object",
  required: ["title", "author"],
  additionalProperties: false,
  properties: { title: { type: "string" }, author: { type: "string" } },
} as const;

/** A movie title, a book as TALLRec renders it (`"Title" written by Author`), or `{ title, author }`. */
export const ITEM_SCHEMA = {
  description: "a string or { title, author }",
  anyOf: [{ type: "string" }, BOOK_SCHEMA],
} as const;

export const DOMAIN_SCHEMA = { type: "string", enum: ["movie", "book"], description: "the item domain (selects TALLRec's instruction and rendering)" } as const;

/** The fields of an {@link InstructionPrompt}. */
export const INSTRUCTION_PROMPT_PROPERTIES = {
  instruction: { type: "string" },
  input: { type: "string", description: "the user/item description; an empty string selects the template without an Input section" },
} as const;

/** The user's fields of a {@link StructuredPrompt} (all but the target). */
export const USER_PROMPT_PROPERTIES = {
  domain: DOMAIN_SCHEMA,
  liked: { type: "array", items: ITEM_SCHEMA, description: "items the user liked" },
  disliked: { type: "array", items: ITEM_SCHEMA, description: "items the user disliked" },
  instruction: { type: "string", description: "overrides the domain's TALLRec instruction" },
} as const;

/** True when a prompt object is in the structured form: it has any of the structured fields. */
export function isStructuredInput(o: object): boolean {
  return "target" in o || "liked" in o || "disliked" in o || "domain" in o;
}

/** Validates a prompt object's fields (types), naming the first bad field. */
export function checkPromptInput(input: unknown): PromptInput {
  if (!input || typeof input !== "object") throw invalid(`expected a prompt object or string, got ${input === null ? "null" : typeof input}`);
  const o = input as Record<string, unknown>;
  if (isStructuredInput(o)) {
    if (!isDomain(o.domain)) throw invalid(`field "domain" must be "movie" or "book", not ${JSON.stringify(o.domain)}`);
    for (const f of ["liked", "disliked"] as const) {
      if (!Array.isArray(o[f])) throw invalid(`field "${f}" must be an array of items`);
      (o[f] as unknown[]).forEach((it, k) => checkItem(it, `${f}[${k}]`));
    }
    checkItem(o.target, "target");
    if (o.instruction !== undefined && typeof o.instruction !== "string") throw invalid(`field "instruction" must be a string`);
    return o as unknown as PromptInput;
  }
  if (typeof o.instruction !== "string") throw invalid(`field "instruction" must be a string`);
  if (typeof o.input !== "string") throw invalid(`field "input" must be a string`);
  return o as unknown as PromptInput;
}

function checkItem(it: unknown, where: string): void {
  if (typeof it === "string") return;
  if (it && typeof it === "object" && typeof (it as { title?: unknown }).title === "string" && typeof (it as { author?: unknown }).author === "string") return;
  throw invalid(`field "${where}" must be a string or { title, author }`);
}
