/** Optional API key: `Authorization: Bearer <key>` on every route but `GET /health`. */
import { createHash, timingSafeEqual } from "node:crypto";

import type { FastifyInstance } from "fastify";
import fp from "fastify-plugin";

import { HttpError } from "./errors.js";

const digest = (s: string) => createHash("sha256").update(s).digest();

/** Routes answered without the key (load balancers' health checks). */
export const PUBLIC_ROUTES: ReadonlySet<string> = new Set(["/health", "/health/ready", "/health/live"]);

/**
 * Requires the bearer token `apiKey` (compared in constant time) on every non-public route. Not
 * encapsulated (fastify-plugin): its hook applies to the whole server.
 */
export const authPlugin = fp(
  async (app: FastifyInstance, opts: { apiKey: string }) => {
    if (!opts.apiKey) throw new Error("authPlugin needs a non-empty apiKey");
    const expected = digest(opts.apiKey);
    app.addHook("onRequest", async (request) => {
      if (request.routeOptions.url !== undefined && PUBLIC_ROUTES.has(request.routeOptions.url)) return;
      // routes marked public (the web page's static files: they hold no data)
      if ((request.routeOptions.config as { public?: boolean } | undefined)?.public === true) return;
      const header = request.headers.authorization;
      const m = typeof header === "string" ? /^Bearer\s+(.+)$/i.exec(header.trim()) : null;
      if (!m) throw new HttpError("unauthorized", "headers/authorization: an API key is required (Authorization: Bearer <key>)", { headers: { "www-authenticate": 'Bearer realm="tallrec"' } });
      if (!timingSafeEqual(digest(m[1]), expected)) {
        throw new HttpError("unauthorized", "headers/authorization: the API key is wrong", { headers: { "www-authenticate": 'Bearer realm="tallrec", error="invalid_token"' } });
      }
    });
  },
  { name: "tallrec-auth", fastify: "5.x" },
);
