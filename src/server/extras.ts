/**
 * The server's routes for people and other clients (issue 16), registered by `buildServer` in one
 * place: the OpenAI-compatible routes (`routes/openai.ts`), and, with Chat-REC on, the users'
 * histories the web page shows (`routes/users.ts`); the web page itself (`web.ts`, static files at `/`).
 *
 * @module
 */
import type { FastifyInstance } from "fastify";

import type { ChatService } from "../chatrec/http.js";
import { openaiRoutes } from "./routes/openai.js";
import type { ServerState } from "./state.js";

/** Options of {@link extraRoutes}. */
export interface ExtraRoutesOptions {
  state: ServerState;
  chat?: ChatService;
}

/** Registers the OpenAI-compatible routes (and, when present, the users' routes and the web page). */
export async function extraRoutes(app: FastifyInstance, options: ExtraRoutesOptions): Promise<void> {
  await app.register(openaiRoutes, { state: options.state, ...(options.chat ? { chat: options.chat } : {}) });
}
