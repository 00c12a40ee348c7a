/** `POST /v1/rank`: one user's candidates, scored in one engine call and sorted by pYes. */
import type { FastifyPluginAsync } from "fastify";

import type { Book, Domain, StructuredPrompt } from "../../engine/prompt.js";
import type { ScoringRule } from "../../engine/scoring.js";
import { candidateSchemaFor, envelopeOf, RANK_RESPONSE_SCHEMA, rankBodySchema } from "../schemas.js";
import type { ServerState } from "../state.js";
import { itemErrors, itemId } from "../validation.js";
import { scoreItems, type ResultEntry } from "./score.js";

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
      const prompts: StructuredPrompt[] = [];
      const where: number[] = [];
      body.candidates.forEach((c, i) => {
        const id = itemId(c, i);
        const err = errors[i];
        if (err !== undefined) results[i] = { id, error: err, code: "invalid_input" };
        else {
          const target = typeof c === "string" ? c : (c as Exclude<Candidate, string>).target;
          prompts.push(body.instruction === undefined ? { ...user, target } : { ...user, target, instruction: body.instruction });
          where.push(i);
        }
      });
      // atomic: all candidates in one batch, so the shared prefix is decoded once
      const usage = await scoreItems(state, request, reply, { list: body.candidates, field: "candidates", results, prompts, where, group: { adapter, scoring }, atomic: true });
      const ranked = results
        .map((r, index) => ({ r, index }))
        .filter((x) => !("error" in x.r))
        .sort((a, b) => (b.r as { pYes: number }).pYes - (a.r as { pYes: number }).pYes || a.index - b.index);
      const top = body.top ?? ranked.length;
      const ranking = ranked.slice(0, top).map((x, k) => ({ rank: k + 1, index: x.index, ...x.r }));
      const failed = results.flatMap((r, index) => ("error" in r ? [{ index, id: r.id, error: r.error, code: r.code }] : []));
      return { ranking, errors: failed, model: state.modelName, adapter, scoring, usage };
    },
  );
};
