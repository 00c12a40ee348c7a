/** `POST /v1/score`: score prompts (TALLRec rows or structured fields) with an adapter. */
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from "fastify";

import type { PromptInput } from "../../engine/prompt.js";
import type { ScoringRule } from "../../engine/scoring.js";
import { HttpError } from "../errors.js";
import { envelopeOf, itemSchemaFor, SCORE_RESPONSE_SCHEMA, scoreBodySchema } from "../schemas.js";
import type { ErrorCode } from "../../errors.js";
import type { ScoreGroup, ServerState, Usage } from "../state.js";
import { clientGoneSignal, engineItemError, itemErrors, itemId, toPrompt, type RequestItem } from "../validation.js";

interface ScoreBody {
  adapter?: string | null;
  scoring?: ScoringRule;
  items: unknown[];
}

/** A result as answered: a score, or an error with its code (src/errors.ts), with the item's id. */
export type ResultEntry = { id: string | number; pYes: number; logitYes: number; logitNo: number; tokens: number; logSumExp?: number } | { id: string | number; error: string; code: ErrorCode };

/**
 * Fails a request none of whose items could be scored: too_long (413) when every item is too long,
 * else invalid_input (400); the message is the first item's, and `results` lists them all, each
 * with its own code.
 */
function failIfNoneScored(results: ResultEntry[]): void {
  if (results.some((r) => !("error" in r))) return;
  const failures = results as Array<{ error: string; code: ErrorCode }>;
  const first = failures[0];
  const code = failures.every((r) => r.code === "too_long") ? "too_long" : "invalid_input";
  throw new HttpError(code, results.length === 1 ? first.error : `no item could be scored; the first: ${first.error}`, { extra: { results } });
}

/** What {@link scoreItems} scores: the request's items, those already refused, and the prompts of the others. */
export interface ItemsToScore {
  /** The request's list (for the ids) and its field name (for the error paths). */
  list: readonly unknown[];
  field: string;
  /** One entry per item; the items refused by validation already hold their error. */
  results: ResultEntry[];
  /** The prompts of the other items: `prompts[k]` is item `where[k]`. */
  prompts: PromptInput[];
  where: number[];
  group: ScoreGroup;
  /** Keep the prompts in one batch (a user's candidates). */
  atomic?: boolean;
}

/**
 * Scores a request's prompts through the engine's scheduler (the request is cancelled when its
 * client goes away), fills in their results, and fails the request when no item could be scored.
 */
export async function scoreItems(state: ServerState, request: FastifyRequest, reply: FastifyReply, o: ItemsToScore): Promise<Usage> {
  let usage: Usage = { prompts: 0, tokens: 0, tokensEvaluated: 0, tokensSaved: 0 };
  if (o.prompts.length > 0) {
    const scored = await state.score(o.prompts, o.group, { signal: clientGoneSignal(request, reply), atomic: o.atomic });
    usage = scored.usage;
    scored.outcomes.forEach(({ result: r }, k) => {
      const i = o.where[k];
      const id = itemId(o.list[i], i);
      o.results[i] =
        r.error !== undefined
          ? { id, error: `body/${o.field}/${i}: ${engineItemError(r.error)}`, code: r.code }
          : { id, pYes: r.pYes, logitYes: r.logitYes, logitNo: r.logitNo, tokens: r.tokens, ...(r.logSumExp !== undefined ? { logSumExp: r.logSumExp } : {}) };
    });
  }
  failIfNoneScored(o.results);
  return usage;
}

/** Registers `POST /v1/score` (the state's limits size its schema). */
export const scoreRoutes: FastifyPluginAsync<{ state: ServerState }> = async (app, { state }) => {
  const bodySchema = scoreBodySchema(state.limits.maxItems);
  const envelope = envelopeOf(bodySchema, "items");
  app.post(
    "/v1/score",
    {
      attachValidation: true,
      schema: {
        summary: "Score user-item prompts",
        description:
          "Scores each item (a TALLRec row { instruction, input } or structured fields { domain, liked, disliked, target }) with one adapter: " +
          "the probability that the user likes the target. Concurrent requests are batched together; results do not depend on batching. " +
          "An item with wrong fields, or longer than the context, gets { id, error } and the others are scored (200); " +
          "a request none of whose items can be scored is a 400 (413 when all are too long).",
        tags: ["scoring"],
        body: bodySchema,
        response: SCORE_RESPONSE_SCHEMA,
      },
    },
    async (request, reply) => {
      const errors = itemErrors(request, envelope, "items", itemSchemaFor);
      const body = request.body as ScoreBody;
      const engine = state.requireEngine();
      const adapter = state.resolveAdapter(engine, body.adapter);
      const scoring = body.scoring ?? "softmax";

      const results: ResultEntry[] = new Array(body.items.length);
      const prompts: PromptInput[] = [];
      const where: number[] = [];
      body.items.forEach((item, i) => {
        const err = errors[i];
        if (err !== undefined) results[i] = { id: itemId(item, i), error: err, code: "invalid_input" };
        else {
          prompts.push(toPrompt(item as RequestItem));
          where.push(i);
        }
      });
      const usage = await scoreItems(state, request, reply, { list: body.items, field: "items", results, prompts, where, group: { adapter, scoring } });
      return { results, model: state.modelName, adapter, scoring, usage };
    },
  );
};
