/**
 * `GET /health` and `GET /health/ready`: 200 when the model is loaded and the server accepts work,
 * else 503 with why (a load balancer sends traffic only to ready replicas). `GET /health/live`: 200
 * while the process answers at all, loading and draining included (restart it only when this fails).
 */
import type { FastifyPluginAsync } from "fastify";

import { HEALTH_RESPONSE } from "./schemas.js";
import type { ServerState } from "./state.js";

/** Registers `GET /health`, `GET /health/ready` and `GET /health/live`. */
export const healthRoutes: FastifyPluginAsync<{ state: ServerState }> = async (app, { state }) => {
  app.get(
    "/health/live",
    {
      schema: {
        summary: "Liveness",
        description: "200 while the process answers, whether the model is loaded or not (use /health/ready to route traffic). Needs no API key.",
        tags: ["operations"],
        response: { 200: { type: "object", properties: { status: { type: "string", enum: ["ok"] }, state: { type: "string" } } } },
      },
    },
    async () => ({ status: "ok", state: state.closing ? "stopping" : state.status }),
  );
  for (const url of ["/health", "/health/ready"])
    app.get(
      url,
      {
        schema: {
          summary: url === "/health" ? "Readiness" : "Readiness (the same as /health)",
          description: "200 when the model is loaded and requests are accepted; 503 while loading, after a failed load, and while shutting down. Needs no API key.",
          tags: ["operations"],
          response: HEALTH_RESPONSE,
        },
      },
      async (_request, reply) => {
        const engine = state.engine;
        if (state.status === "ready" && engine && !state.closing) {
          const q = state.queue;
          return {
            status: "ok",
            model: state.modelName,
            backend: engine.info.backend,
            adapters: engine.adapterNames(),
            queue: { queuedItems: q.queuedItems, runningItems: q.runningItems, maxQueue: state.limits.maxQueue },
          };
        }
        const status = state.status === "ready" ? "stopping" : state.status;
        const message = status === "loading" ? "the model is loading" : status === "failed" ? `the model failed to load: ${state.loadError?.message ?? "unknown error"}` : "the server is shutting down";
        return reply
          .code(503)
          .header("retry-after", status === "loading" ? "2" : "5")
          .send({ status, message });
      },
    );
};
