/**
 * The server's routes for people and other clients (issue 16), registered by `buildServer` in one
 * place: the OpenAI-compatible routes (`routes/openai.ts`) and the web page (`web.ts`: the files
 * of `web/` at `/`). Chat-REC's own routes, `POST /v1/chat/sessions` included, are
 * `routes/chat.ts`.
 *
 * @module
 */
import type { FastifyInstance } from "fastify";

import type { ChatService } from "../chatrec/service.js";
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

/** Registers the OpenAI-compatible routes and the web page. */
export async function extraRoutes(app: FastifyInstance, options: ExtraRoutesOptions): Promise<void> {
  await app.register(openaiRoutes, { state: options.state, ...(options.chat ? { chat: options.chat } : {}) });
  if (options.web ?? true) await app.register(webRoutes);
}
