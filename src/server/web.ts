/**
 * The web page (`web/` at the top of the repository: plain HTML, CSS and JavaScript modules, no
 * build step) served at `/` through @fastify/static, one route per file (no wildcard route, so
 * unknown paths keep the server's 404). The page's files need no API key (they hold no data; the
 * page asks for the key once and sends it with every API call), so their routes are marked
 * `config.public` for the auth hook.
 *
 * @module
 */
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";

import fastifyStatic from "@fastify/static";
import type { FastifyInstance } from "fastify";

/** The folder of the page's files (the same from src/server and dist/server). */
export const WEB_ROOT = fileURLToPath(new URL("../../web/", import.meta.url));

/** Registers the page's files: `/` (index.html), `/app.js`, `/style.css`... */
export async function webRoutes(fastify: FastifyInstance): Promise<void> {
  if (!existsSync(WEB_ROOT)) return;
  fastify.addHook("onRoute", (route) => {
    route.config = { ...(route.config ?? {}), public: true } as typeof route.config;
  });
  await fastify.register(fastifyStatic, { root: WEB_ROOT, prefix: "/", wildcard: false, index: "index.html", schemaHide: true, cacheControl: false, dotfiles: "ignore" });
}
