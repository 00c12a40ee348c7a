/**
 * tallrec's HTTP server: {@link buildServer} makes a Fastify app (POST /v1/score, POST /v1/rank,
 * adapters, /health, /metrics, /openapi.json) around an engine; the engine's scheduler batches
 * the requests' prompts ({@link Scheduler}).
 */
export { buildServer, engineLoaded, resolveLimits } from "./app.js";
export type { ServerOptions } from "./app.js";
export { Scheduler, SchedulerClosedError, QueueFullError } from "../engine/scheduler.js";
export type { BatchInfo, SchedulerOptions, SchedulerStats, JobResult, SubmitOptions } from "../engine/scheduler.js";
export { formatSchemaErrors, HttpError } from "./errors.js";
export { ServerMetrics } from "./prometheus.js";
export { resolveInside } from "./routes/adapters.js";
export { ServerState } from "./state.js";
export type { ItemOutcome, ScoreGroup, ServerEngine, ServerLimits, ServerStatus, Usage } from "./state.js";
