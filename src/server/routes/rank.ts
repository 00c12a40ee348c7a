/** `POST /v1/rank`: one user's candidates, scored in one engine call and sorted by pYes. */
import type { FastifyPluginAsync } from "fastify";

import type { Book, Domain, StructuredPrompt } from "../../engine/prompt.js";
import type { ScoringRule } from "../../engine/scoring.js";
import { candidateSchemaFor, envelopeOf, RANK_RESPONSE_SCHEMA, rankBodySchema } from "../schemas.js";
import type { ServerState } from "../state.js";
import { clientGoneSignal, engineItemError, itemErrors, itemId } from "../validation.js";
import { failIfNoneScored, type ResultEntry } from "./score.js";

interface RankBody {
  adapter?: string | null;
  scoring?: ScoringRule;
  domain: Domain;
  liked: Array<string | Book>;
  disliked: Array<string | Book>;
  instruction?: string;
  candidates: unknown[];
  top?: number;
}

type Candidate = string | { id?: string | number; target: string | Book };

/** Registers `POST /v1/rank` (at most `maxCandidates` candidates: one engine call). */
export const rankRoutes: FastifyPluginAsync<{ state: ServerState }> = async (app, { state }) => {
  const bodySchema = rankBodySchema(state.limits.maxCandidates);
  const envelope = envelopeOf(bodySchema, "candidates");
  app.post(
    "/v1/rank",
    {
      attachValidation: true,
      schema: {
        summary: "Rank candidate items for one user",
        description:
          "Scores every candidate for the user (liked, disliked, domain) in one engine call, so the prompt prefix with the user's history is evaluated once, " +
          "and returns the candidates sorted by pYes (best first). A bad candidate is listed in `errors` and the others are ranked.",
        tags: ["scoring"],
        body: bodySchema,
        response: RANK_RESPONSE_SCHEMA,
      },
    },
    async (request, reply) => {
      const errors = itemErrors(request, envelope, "candidates", candidateSchemaFor);
      const body = request.body as RankBody;
      const engine = state.requireEngine();
      const adapter = state.resolveAdapter(engine, body.adapter);
      const scoring = body.scoring ?? "softmax";

      const user = { domain: body.domain, liked: body.liked, disliked: body.disliked };
      const results: ResultEntry[] = new Array(body.candidates.length);
      const tooLong: boolean[] = new Array(body.candidates.length).fill(false);
      const prompts: StructuredPrompt[] = [];
      const where: number[] = [];
      body.candidates.forEach((c, i) => {
        const id = itemId(c, i);
        const err = errors[i];
        if (err !== undefined) results[i] = { id, error: err };
        else {
          const target = typeof c === "string" ? c : (c as Exclude<Candidate, string>).target;
          prompts.push(body.instruction === undefined ? { ...user, target } : { ...user, target, instruction: body.instruction });
          where.push(i);
        }
      });
      let usage = { prompts: 0, tokens: 0, tokensEvaluated: 0, tokensSaved: 0 };
      if (prompts.length > 0) {
        // atomic: all candidates in one engine call, so the shared prefix is decoded once
        const scored = await state.score(prompts, { adapter, scoring }, { signal: clientGoneSignal(request, reply), atomic: true });
        usage = scored.usage;
        scored.outcomes.forEach(({ result: r }, k) => {
          const i = where[k];
          const id = itemId(body.candidates[i], i);
          if (r.error !== undefined) {
            results[i] = { id, error: `body/candidates/${i}: ${engineItemError(r.error)}` };
            tooLong[i] = r.code === "too_long";
          } else {
            results[i] = { id, pYes: r.pYes, logitYes: r.logitYes, logitNo: r.logitNo, tokens: r.tokens, ...(r.logSumExp !== undefined ? { logSumExp: r.logSumExp } : {}) };
          }
        });
      }
      failIfNoneScored(results, tooLong);
      const ranked = results
        .map((r, index) => ({ r, index }))
        .filter((x) => !("error" in x.r))
        .sort((a, b) => (b.r as { pYes: number }).pYes - (a.r as { pYes: number }).pYes || a.index - b.index);
      const top = body.top ?? ranked.length;
      const ranking = ranked.slice(0, top).map((x, k) => ({ rank: k + 1, index: x.index, ...x.r }));
      const failed = results.flatMap((r, index) => ("error" in r ? [{ index, id: r.id, error: r.error }] : []));
      return { ranking, errors: failed, model: state.modelName, adapter, scoring, usage };
    },
  );
};
