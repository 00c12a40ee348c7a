/**
 * `POST /v1/chat/sessions` `{ user }`: starts a Chat-REC conversation without a message and answers
 * the session (201): the user's profile and the history TALLRec sees (liked, disliked), so that a
 * client (the web page) can show it before the first turn. The conversation then goes on with
 * `POST /v1/chat` `{ sessionId, message }`. Errors as everywhere on the server: `{ statusCode,
 * error, code, message }` (an unknown user is a 404 with code `CHAT_UNKNOWN_USER`).
 *
 * @module
 */
import { STATUS_CODES } from "node:http";

import type { FastifyInstance } from "fastify";

import { ChatRecError } from "../../chatrec/errors.js";
import { ERROR_SCHEMA, SESSION_SCHEMA, type ChatService } from "../../chatrec/http.js";

/** Registers `POST /v1/chat/sessions`. */
export async function chatSessionRoutes(fastify: FastifyInstance, { service }: { service: ChatService }): Promise<void> {
  fastify.post(
    "/v1/chat/sessions",
    {
      schema: {
        summary: "Start a Chat-REC conversation for a user, without a message: the user's history",
        tags: ["chat"],
        body: {
          type: "object",
          required: ["user"],
          additionalProperties: false,
          properties: { user: { type: ["string", "integer"], description: "a user of the interaction data" } },
        },
        response: { 201: SESSION_SCHEMA, 400: ERROR_SCHEMA, 404: ERROR_SCHEMA, 503: ERROR_SCHEMA },
      },
    },
    async (request, reply) => {
      try {
        const s = await service.startSession((request.body as { user: string | number }).user);
        return reply.code(201).send(s);
      } catch (err) {
        if (!(err instanceof ChatRecError)) throw err;
        return reply.code(err.status as 400).send({ statusCode: err.status, error: STATUS_CODES[err.status] ?? "Error", code: `CHAT_${err.code.toUpperCase()}`, message: err.message });
      }
    },
  );
}
