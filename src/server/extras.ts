/**
 * The server's routes for people and other clients (issue 16), registered by `buildServer` in one
 * place: the OpenAI-compatible routes (`routes/openai.ts`); with Chat-REC on, `POST
 * /v1/chat/sessions` (a conversation started without a message, answering the user's history:
 * `routes/chat-sessions.ts`); and the web page (`web.ts`: the files of `web/` at `/`).
 *
 * @module
 */
import type { FastifyInstance } from "fastify";

import type { ChatService } from "../chatrec/http.js";
import { chatSessionRoutes } from "./routes/chat-sessions.js";
import { openaiRoutes } from "./routes/openai.js";
import type { ServerState } from "./state.js";
import { webRoutes } from "./web.js";

/** Options of {@link extraRoutes}. */
export interface ExtraRoutesOptions {
  state: ServerState;
  chat?: ChatService;
  /** Serve the web page at `/` (default true). */
  web?: boolean;
}

/** Registers the OpenAI-compatible routes, the Chat-REC session route (with chat) and the web page. */
export async function extraRoutes(app: FastifyInstance, options: ExtraRoutesOptions): Promise<void> {
  await app.register(openaiRoutes, { state: options.state, ...(options.chat ? { chat: options.chat } : {}) });
  if (options.chat) await app.register(chatSessionRoutes, { service: options.chat });
  if (options.web ?? true) await app.register(webRoutes);
}
