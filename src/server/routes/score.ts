/** `POST /v1/score`: score prompts (TALLRec rows or structured fields) with an adapter. */
import type { FastifyPluginAsync } from "fastify";

import type { PromptInput } from "../../engine/prompt.js";
import type { ScoringRule } from "../../engine/scoring.js";
import { HttpError } from "../errors.js";
import { envelopeOf, itemSchemaFor, SCORE_RESPONSE_SCHEMA, scoreBodySchema } from "../schemas.js";
import type { ServerState } from "../state.js";
import { clientGoneSignal, engineItemError, itemErrors, itemId, toPrompt, type RequestItem } from "../validation.js";

interface ScoreBody {
  adapter?: string | null;
  scoring?: ScoringRule;
  items: unknown[];
}

/** A result as answered: a score or an error, with the item's id. */
export type ResultEntry =
  | { id: string | number; pYes: number; logitYes: number; logitNo: number; tokens: number; logSumExp?: number }
  | { id: string | number; error: string };

/**
 * Fails a request none of whose items could be scored: 413 when every failure is a prompt longer
 * than the context, else 400; the message is the first item's, and `results` lists them all.
 */
export function failIfNoneScored(results: ResultEntry[], tooLong: boolean[]): void {
  if (results.some((r) => !("error" in r))) return;
  const allTooLong = tooLong.every(Boolean);
  const first = results[0] as { error: string };
  throw new HttpError(allTooLong ? "too_long" : "invalid_input", results.length === 1 ? first.error : `no item could be scored; the first: ${first.error}`, { extra: { results } });
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
      const tooLong: boolean[] = new Array(body.items.length).fill(false);
      const prompts: PromptInput[] = [];
      const where: number[] = [];
      body.items.forEach((item, i) => {
        const err = errors[i];
        if (err !== undefined) results[i] = { id: itemId(item, i), error: err };
        else {
          prompts.push(toPrompt(item as RequestItem));
          where.push(i);
        }
      });
      let usage = { prompts: 0, tokens: 0, tokensEvaluated: 0, tokensSaved: 0 };
      if (prompts.length > 0) {
        const scored = await state.score(prompts, { adapter, scoring }, { signal: clientGoneSignal(request, reply) });
        usage = scored.usage;
        scored.outcomes.forEach(({ result: r }, k) => {
          const i = where[k];
          const id = itemId(body.items[i], i);
          if (r.error !== undefined) {
            results[i] = { id, error: `body/items/${i}: ${engineItemError(r.error)}` };
            tooLong[i] = r.code === "too_long";
          } else {
            results[i] = { id, pYes: r.pYes, logitYes: r.logitYes, logitNo: r.logitNo, tokens: r.tokens, ...(r.logSumExp !== undefined ? { logSumExp: r.logSumExp } : {}) };
          }
        });
      }
      failIfNoneScored(results, tooLong);
      return { results, model: state.modelName, adapter, scoring, usage };
    },
  );
};
