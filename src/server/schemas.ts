/**
 * JSON schemas of the HTTP API: the single source of request validation, response serialization
 * and the OpenAPI document (@fastify/swagger reads them from the routes).
 *
 * Per-item errors: a request's body schema declares its items exactly (`ScoreItem`: an instruction
 * item or a structured item), so the OpenAPI document shows what an item must be and a valid
 * request is checked by Fastify in one pass. The routes set `attachValidation`: when that check
 * fails, the route validates the request again with the same schema split in two — the envelope
 * (the body schema with its item schema replaced by `{}`, see {@link envelopeOf}) and each item
 * against its item schema. An envelope error (malformed JSON, a wrong adapter or scoring field,
 * no items, too many items) fails the whole request with 400/413; an item error becomes that
 * item's `{ id, error }` in the results and the other items are scored.
 */
import { MAX_LORA_SCALE } from "../gguf/checks.js";
import { INSTRUCTION_PROMPT_PROPERTIES, isStructuredInput, ITEM_SCHEMA, USER_PROMPT_PROPERTIES } from "../engine/prompt.js";
import { SCORING_RULES } from "../engine/scoring.js";

export { BOOK_SCHEMA, DOMAIN_SCHEMA, ITEM_SCHEMA } from "../engine/prompt.js";

/** Deep-readonly JSON schema objects (plain data). */
export type Schema = Record<string, unknown>;

export const ID_SCHEMA = {
  type: ["string", "integer"],
  description: "the caller's id for the item, echoed back in its result (default: the item's index)",
} as const;

const ADAPTER_SCHEMA = {
  type: ["string", "null"],
  description: "adapter name; null for the base model; default: the server's default adapter (the only one, when one is loaded)",
} as const;

const SCORING_SCHEMA = {
  type: "string",
  enum: [...SCORING_RULES],
  description: 'scoring rule: "softmax" over the two answer logits (default) or TALLRec\'s "tallrec-compat"',
} as const;

/** A TALLRec data row. */
export const INSTRUCTION_ITEM_SCHEMA = {
  type: "object",
  title: "InstructionItem",
  required: ["instruction", "input"],
  additionalProperties: false,
  properties: {
    id: ID_SCHEMA,
    ...INSTRUCTION_PROMPT_PROPERTIES,
    output: { type: "string", description: "ignored: lets TALLRec data rows, which carry their label here, be sent as they are" },
  },
} as const;

/** Structured fields, rendered exactly as TALLRec's data. */
export const STRUCTURED_ITEM_SCHEMA = {
  type: "object",
  title: "StructuredItem",
  required: ["domain", "liked", "disliked", "target"],
  additionalProperties: false,
  properties: {
    id: ID_SCHEMA,
    ...USER_PROMPT_PROPERTIES,
    target: ITEM_SCHEMA,
  },
} as const;

export const SCORE_ITEM_SCHEMA = {
  description: "an instruction item { id?, instruction, input } or a structured item { id?, domain, liked, disliked, target, instruction? }",
  oneOf: [INSTRUCTION_ITEM_SCHEMA, STRUCTURED_ITEM_SCHEMA],
} as const;

/** The item schema an item is checked against: structured when it has any structured field. */
export function itemSchemaFor(item: unknown): Schema {
  if (item && typeof item === "object" && !Array.isArray(item)) {
    const o = item as Record<string, unknown>;
    if (isStructuredInput(o)) return STRUCTURED_ITEM_SCHEMA;
    return INSTRUCTION_ITEM_SCHEMA;
  }
  return { type: "object", description: "an object" };
}

/** A ranking candidate: the target item, or `{ id?, target }`. */
export const CANDIDATE_OBJECT_SCHEMA = {
  type: "object",
  required: ["target"],
  additionalProperties: false,
  properties: { id: ID_SCHEMA, target: ITEM_SCHEMA },
} as const;

export const CANDIDATE_SCHEMA = {
  description: "a target item (a string) or { id?, target } (target: a string or { title, author })",
  anyOf: [{ type: "string" }, CANDIDATE_OBJECT_SCHEMA],
} as const;

export function candidateSchemaFor(c: unknown): Schema {
  return typeof c === "string" ? { type: "string" } : c && typeof c === "object" && !Array.isArray(c) ? CANDIDATE_OBJECT_SCHEMA : CANDIDATE_SCHEMA;
}

/** `/v1/score` request body. */
export function scoreBodySchema(maxItems: number): Schema {
  return {
    type: "object",
    required: ["items"],
    additionalProperties: false,
    properties: {
      adapter: ADAPTER_SCHEMA,
      scoring: SCORING_SCHEMA,
      items: { type: "array", minItems: 1, maxItems, items: SCORE_ITEM_SCHEMA, description: `the prompts to score (1 to ${maxItems})` },
    },
  };
}

/** `/v1/rank` request body. */
export function rankBodySchema(maxCandidates: number): Schema {
  return {
    type: "object",
    required: ["domain", "liked", "disliked", "candidates"],
    additionalProperties: false,
    properties: {
      adapter: ADAPTER_SCHEMA,
      scoring: SCORING_SCHEMA,
      ...USER_PROMPT_PROPERTIES,
      candidates: { type: "array", minItems: 1, maxItems: maxCandidates, items: CANDIDATE_SCHEMA, description: `the items to rank (1 to ${maxCandidates})` },
      top: { type: "integer", minimum: 1, description: "return only the best `top` candidates" },
    },
  };
}

/**
 * The envelope of a body schema: the same schema with the item schema of its `listField` array
 * replaced by `{}` (any item passes), for checking a request apart from its items.
 */
export function envelopeOf(body: Schema, listField: string): Schema {
  const props = body.properties as Record<string, Schema>;
  return { ...body, properties: { ...props, [listField]: { ...props[listField], items: {} } } };
}

const USAGE_SCHEMA = {
  type: "object",
  description: "what the request cost: prompts scored, their tokens, and this request's share of the tokens the engine evaluated (prefix sharing evaluates shared tokens once)",
  properties: {
    prompts: { type: "integer" },
    tokens: { type: "integer" },
    tokensEvaluated: { type: "integer" },
    tokensSaved: { type: "integer" },
  },
} as const;

const SCORE_FIELDS = {
  pYes: { type: "number", description: "probability of Yes under the scoring rule" },
  logitYes: { type: "number" },
  logitNo: { type: "number" },
  tokens: { type: "integer", description: "prompt length in tokens" },
  logSumExp: { type: "number", description: "log-sum-exp of the logit row (tallrec-compat scoring)" },
} as const;

/** Why an item could not be scored, a code of docs/errors.md (invalid_input, too_long, empty, non_finite...). */
const ITEM_ERROR_CODE = { type: "string", description: "the error's code (docs/errors.md)" } as const;

export const RESULT_SCHEMA = {
  type: "object",
  description: "a score, or { id, error } for an item that could not be scored",
  properties: { id: ID_SCHEMA, ...SCORE_FIELDS, error: { type: "string" }, code: ITEM_ERROR_CODE },
} as const;

export const ERROR_SCHEMA = {
  type: "object",
  properties: {
    statusCode: { type: "integer" },
    error: { type: "string" },
    code: { type: "string" },
    message: { type: "string" },
    results: { type: "array", items: RESULT_SCHEMA },
  },
} as const;

/** Error responses every scoring route may give. */
const ERROR_RESPONSES = {
  400: ERROR_SCHEMA,
  401: ERROR_SCHEMA,
  404: ERROR_SCHEMA,
  413: ERROR_SCHEMA,
  429: ERROR_SCHEMA,
  503: ERROR_SCHEMA,
} as const;

export const SCORE_RESPONSE_SCHEMA = {
  200: {
    type: "object",
    properties: {
      results: { type: "array", items: RESULT_SCHEMA },
      model: { type: "string" },
      adapter: { type: ["string", "null"] },
      scoring: { type: "string" },
      usage: USAGE_SCHEMA,
    },
  },
  ...ERROR_RESPONSES,
} as const;

export const RANK_RESPONSE_SCHEMA = {
  200: {
    type: "object",
    properties: {
      ranking: {
        type: "array",
        description: "scored candidates, best first (highest pYes; ties in request order)",
        items: {
          type: "object",
          properties: { rank: { type: "integer" }, index: { type: "integer", description: "position in the request's candidates" }, id: ID_SCHEMA, ...SCORE_FIELDS },
        },
      },
      errors: {
        type: "array",
        description: "candidates that could not be scored",
        items: { type: "object", properties: { index: { type: "integer" }, id: ID_SCHEMA, error: { type: "string" }, code: ITEM_ERROR_CODE } },
      },
      model: { type: "string" },
      adapter: { type: ["string", "null"] },
      scoring: { type: "string" },
      usage: USAGE_SCHEMA,
    },
  },
  ...ERROR_RESPONSES,
} as const;

const ADAPTER_INFO_SCHEMA = {
  type: "object",
  properties: {
    name: { type: "string" },
    path: { type: "string", description: "the file, relative to the models folder when inside it" },
    scale: { type: "number" },
    rank: { type: "integer" },
    alpha: { type: "number" },
    targets: { type: "integer", description: "tensors the adapter modifies" },
  },
} as const;

export const ADAPTER_NAME_SCHEMA = { type: "string", pattern: "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$", description: "letters, digits, '.', '_' and '-' (at most 64)" } as const;

export const ADAPTERS_LIST_RESPONSE = {
  200: {
    type: "object",
    properties: { adapters: { type: "array", items: ADAPTER_INFO_SCHEMA }, default: { type: ["string", "null"] }, runtimeLoading: { type: "boolean" } },
  },
  401: ERROR_SCHEMA,
  503: ERROR_SCHEMA,
} as const;

export const ADAPTER_LOAD_BODY = {
  type: "object",
  required: ["name", "path"],
  additionalProperties: false,
  properties: {
    name: ADAPTER_NAME_SCHEMA,
    path: { type: "string", minLength: 1, description: "a GGUF LoRA adapter, relative to the server's models folder" },
    scale: { type: "number", minimum: -MAX_LORA_SCALE, maximum: MAX_LORA_SCALE, description: `default scale (1 = as trained), within ±${MAX_LORA_SCALE}` },
  },
} as const;

export const ADAPTER_LOAD_RESPONSE = {
  201: { type: "object", properties: { adapter: ADAPTER_INFO_SCHEMA } },
  400: ERROR_SCHEMA,
  401: ERROR_SCHEMA,
  403: ERROR_SCHEMA,
  404: ERROR_SCHEMA,
  409: ERROR_SCHEMA,
  422: ERROR_SCHEMA,
  503: ERROR_SCHEMA,
} as const;

export const ADAPTER_UNLOAD_RESPONSE = {
  200: { type: "object", properties: { unloaded: { type: "string" } } },
  400: ERROR_SCHEMA,
  401: ERROR_SCHEMA,
  403: ERROR_SCHEMA,
  404: ERROR_SCHEMA,
  503: ERROR_SCHEMA,
} as const;

export const HEALTH_RESPONSE = {
  200: {
    type: "object",
    properties: {
      status: { type: "string", enum: ["ok"] },
      model: { type: "string" },
      backend: { type: "string" },
      adapters: { type: "array", items: { type: "string" } },
      queue: { type: "object", properties: { queuedItems: { type: "integer" }, runningItems: { type: "integer" }, maxQueue: { type: "integer" } } },
    },
  },
  503: {
    type: "object",
    properties: { status: { type: "string", enum: ["loading", "failed", "stopping"] }, message: { type: "string" } },
  },
} as const;
