/**
 * Chat-REC over HTTP, as a self-contained Fastify plugin.
 *
 * ```ts
 * await app.register(chatRoutes, { service: chatRec });
 * ```
 *
 * - `POST /v1/chat` `{ user, message }` starts a conversation; `{ sessionId, message }` continues
 *   one. The answer: the recommendations (re-ranked by TALLRec), the explanation, the filters the
 *   conversation has built up, and notes. With `"stream": true` the answer is NDJSON
 *   (`application/x-ndjson`): `{"type":"start","sessionId",...}`, then one `{"type":"text","text"}`
 *   per piece of the explanation as it is generated, then `{"type":"result",...}` (the same object
 *   as the JSON answer) or `{"type":"error","code","message"}`.
 * - `POST /v1/chat/sessions` `{ user }`: starts a conversation without a message and answers the
 *   session (201): the user's profile and the history TALLRec sees (liked, disliked), so that a
 *   client (the web page) can show it before the first turn. The conversation then goes on with
 *   `POST /v1/chat` `{ sessionId, message }`.
 * - `GET /v1/chat/:sessionId`: the session (user, history TALLRec sees, filters, turns).
 * - `DELETE /v1/chat/:sessionId`: ends it (204).
 *
 * Sessions live in the service's bounded store and expire after their TTL: an unknown or expired
 * session is a 404 with code `unknown_session`. Errors are `{ statusCode, error, code, message }`,
 * as everywhere on the server, with a code of the one vocabulary (src/errors.ts) and its status
 * (`unknown_user` 404, `invalid_input` 400, `busy` 409, `unavailable` 503...); the stream's error
 * event carries the same code. A client that disconnects cancels its turn.
 *
 * @module
 */
import { STATUS_CODES } from "node:http";
import { PassThrough } from "node:stream";

import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from "fastify";

import { ChatRecError } from "../../chatrec/errors.js";
import { MAX_MESSAGE_CHARS, type TurnOptions } from "../../chatrec/pipeline.js";
import type { ChatService } from "../../chatrec/service.js";
import { codeOf, httpStatusOf } from "../../errors.js";
import { ERROR_SCHEMA } from "../schemas.js";

/** Options of {@link chatRoutes}. */
export interface ChatRoutesOptions {
  service: ChatService;
}

interface ChatBody {
  sessionId?: string;
  user?: string | number;
  message: string;
  count?: number;
  explain?: boolean;
  stream?: boolean;
}

const FILTERS_SCHEMA = {
  type: "object",
  properties: {
    genres: { type: "array", items: { type: "string" } },
    excludeGenres: { type: "array", items: { type: "string" } },
    yearMin: { type: "integer" },
    yearMax: { type: "integer" },
    mood: { type: "string", enum: ["lighter", "darker"] },
    excludeItems: { type: "array", items: { type: "string" } },
    similarTo: { type: "array", items: { type: "string" } },
  },
} as const;

/** The request body of `POST /v1/chat`. */
export const CHAT_BODY_SCHEMA = {
  type: "object",
  required: ["message"],
  additionalProperties: false,
  properties: {
    sessionId: { type: "string", minLength: 1, maxLength: 100, description: "continue this conversation (from an earlier answer)" },
    user: { type: ["string", "integer"], description: "start a conversation with this user of the interaction data (needed without sessionId)" },
    message: { type: "string", maxLength: MAX_MESSAGE_CHARS, description: 'what the user says ("" for plain recommendations), e.g. "something lighter", "not that one", "more like the second"' },
    count: { type: "integer", minimum: 1, maximum: 50, description: "recommendations in the answer (default: the service's, or the message's \"top N\")" },
    explain: { type: "boolean", description: "generate the explanation (default true)" },
    stream: { type: "boolean", description: "answer as NDJSON events, streaming the explanation as it is generated" },
  },
} as const;

const RECOMMENDATION_SCHEMA = {
  type: "object",
  properties: {
    rank: { type: "integer" },
    item: { type: "string" },
    title: { type: "string" },
    genres: { type: "array", items: { type: "string" } },
    year: { type: "integer" },
    pYes: { type: "number", description: "TALLRec's probability that the user likes the item" },
    logitYes: { type: "number" },
    logitNo: { type: "number" },
    score: { type: "number", description: "what the list is sorted by (pYes unless blended with the recommender's score or a mood hint)" },
    recScore: { type: ["number", "null"], description: "the candidate generator's score; null for a cold-start item" },
    coldStart: { type: "boolean", description: "the item has no interactions: found through its text embedding" },
  },
} as const;

/** The JSON answer of `POST /v1/chat`. */
export const CHAT_RESPONSE_SCHEMA = {
  type: "object",
  properties: {
    sessionId: { type: "string" },
    user: { type: "string" },
    turn: { type: "integer" },
    recommendations: { type: "array", items: RECOMMENDATION_SCHEMA },
    explanation: { type: "string" },
    stopReason: { type: "string" },
    filters: FILTERS_SCHEMA,
    intentSource: { type: "string" },
    notes: { type: "array", items: { type: "string" } },
    failed: { type: "array", items: { type: "object", properties: { item: { type: "string" }, title: { type: "string" }, error: { type: "string" } } } },
    timings: { type: "object", properties: { candidatesMs: { type: "number" }, rerankMs: { type: "number" }, explainMs: { type: "number" } } },
  },
} as const;

export const SESSION_SCHEMA = {
  type: "object",
  properties: {
    sessionId: { type: "string" },
    user: { type: "string" },
    profile: { type: "string" },
    liked: { type: "array", items: { type: "string" } },
    disliked: { type: "array", items: { type: "string" } },
    interactions: { type: "integer" },
    turns: { type: "integer" },
    filters: FILTERS_SCHEMA,
  },
} as const;

const PARAMS_SCHEMA = { type: "object", required: ["sessionId"], properties: { sessionId: { type: "string", minLength: 1, maxLength: 100 } } } as const;

/** The error answers of every chat route. */
const ERROR_RESPONSES = { 400: ERROR_SCHEMA, 404: ERROR_SCHEMA, 409: ERROR_SCHEMA, 503: ERROR_SCHEMA } as const;

/**
 * Answers a {@link ChatRecError} as `{ statusCode, error, code, message }` with its code's status;
 * anything else goes on to the server's error handler.
 */
function sendError(reply: FastifyReply, err: unknown): FastifyReply | never {
  if (!(err instanceof ChatRecError)) throw err;
  const status = httpStatusOf(err);
  return reply.code(status).send({ statusCode: status, error: STATUS_CODES[status] ?? "Error", code: err.code, message: err.message });
}

/** A route handler whose ChatRecErrors {@link sendError} answers (the rest go on to the server's error handler). */
function answering(handler: (request: FastifyRequest, reply: FastifyReply) => Promise<unknown>) {
  return async (request: FastifyRequest, reply: FastifyReply): Promise<unknown> => {
    try {
      return await handler(request, reply);
    } catch (err) {
      return sendError(reply, err);
    }
  };
}

/** Aborted when the client goes away before the answer is complete. */
function clientGone(request: FastifyRequest, reply: FastifyReply): AbortController {
  const ac = new AbortController();
  const onClose = () => {
    if (!reply.raw.writableEnded) ac.abort(new Error("client disconnected"));
  };
  if (request.raw.destroyed || reply.raw.destroyed) onClose();
  else reply.raw.once("close", onClose);
  return ac;
}

/** Registers `POST /v1/chat`, `POST /v1/chat/sessions`, `GET /v1/chat/:sessionId` and `DELETE /v1/chat/:sessionId`. */
export const chatRoutes: FastifyPluginAsync<ChatRoutesOptions> = async (fastify, { service }) => {
  if (!service || typeof service.turn !== "function") throw new TypeError("chatRoutes needs { service } (a ChatRec)");

  fastify.post(
    "/v1/chat",
    {
      schema: {
        summary: "Chat-REC: recommend, re-rank with TALLRec, explain, keep talking",
        description:
          "Send { user, message } to start a conversation or { sessionId, message } to continue one. The recommender proposes candidates, " +
          'TALLRec re-ranks them for the user, the model explains the choice; follow-ups such as "something lighter", "not that one" or ' +
          '"more like the second" refine the last answer. With stream: true the answer is NDJSON events (start, recommendations once ranked, text pieces, result).',
        tags: ["chat"],
        body: CHAT_BODY_SCHEMA,
        response: { 200: CHAT_RESPONSE_SCHEMA, ...ERROR_RESPONSES },
      },
    },
    answering(async (request, reply) => {
      const body = request.body as ChatBody;
      // before any await: once the body is read the request stream may count as destroyed
      const ac = clientGone(request, reply);
      let sessionId: string;
      let user: string;
      if (body.sessionId !== undefined) {
        await service.load?.(body.sessionId);
        const s = service.session(body.sessionId);
        if (body.user !== undefined && String(body.user) !== s.user) throw new ChatRecError("invalid_input", `session ${body.sessionId} belongs to another user`);
        ({ sessionId, user } = s);
      } else {
        if (body.user === undefined) throw new ChatRecError("invalid_input", "body/user is required to start a conversation (or send body/sessionId to continue one)");
        ({ sessionId, user } = service.startSession(body.user));
        await service.sync?.(sessionId);
      }
      const options: TurnOptions = { signal: ac.signal, ...(body.count !== undefined ? { count: body.count } : {}), ...(body.explain !== undefined ? { explain: body.explain } : {}) };
      if (!body.stream) return await service.turn(sessionId, body.message, options);
      const out = new PassThrough();
      const event = (e: Record<string, unknown>) => out.write(`${JSON.stringify(e)}\n`);
      event({ type: "start", sessionId, user });
      const onRecommendations = (recommendations: readonly unknown[], notes: readonly string[]) => event({ type: "recommendations", recommendations, notes });
      service.turn(sessionId, body.message, { ...options, onRecommendations, onText: (text) => event({ type: "text", text }) }).then(
        (result) => {
          const { intent: _intent, ...rest } = result;
          out.end(`${JSON.stringify({ type: "result", ...rest })}\n`);
        },
        (err: Error) => {
          // the code the JSON answer would have had (the status line is sent already)
          const code = codeOf(err);
          if (code === "internal") request.log.error({ err }, "chat turn failed");
          out.end(`${JSON.stringify({ type: "error", code, message: code === "internal" ? `internal error (request ${request.id})` : err.message })}\n`);
        },
      );
      return reply.type("application/x-ndjson; charset=utf-8").send(out);
    }),
  );

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
        response: { 201: SESSION_SCHEMA, ...ERROR_RESPONSES },
      },
    },
    answering(async (request, reply) => reply.code(201).send(service.startSession((request.body as { user: string | number }).user))),
  );

  fastify.get(
    "/v1/chat/:sessionId",
    { schema: { summary: "A Chat-REC session", tags: ["chat"], params: PARAMS_SCHEMA, response: { 200: SESSION_SCHEMA, ...ERROR_RESPONSES } } },
    answering(async (request) => {
      const id = (request.params as { sessionId: string }).sessionId;
      await service.load?.(id);
      return service.session(id);
    }),
  );

  fastify.delete(
    "/v1/chat/:sessionId",
    { schema: { summary: "End a Chat-REC session", tags: ["chat"], params: PARAMS_SCHEMA, response: { 204: { type: "null" }, ...ERROR_RESPONSES } } },
    answering(async (request, reply) => {
      const id = (request.params as { sessionId: string }).sessionId;
      await service.load?.(id);
      const ended = service.endSession(id);
      await service.sync?.(id);
      if (!ended) throw new ChatRecError("unknown_session", `unknown session ${JSON.stringify(id)}: it never existed or expired`);
      return reply.code(204).send();
    }),
  );
};
