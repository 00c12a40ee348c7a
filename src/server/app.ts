/**
 * The HTTP server: a Fastify app built from one plugin per concern (docs, auth, metrics, health,
 * scoring routes, adapter routes) around an engine, whose scheduler batches the routes' prompts.
 *
 * ```ts
 * const app = await buildServer({ engineFactory: () => Engine.load({ model, adapters }), modelsDir: "models" });
 * await app.listen({ host: "127.0.0.1", port: 8080 });
 * ```
 */
import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";

import swagger from "@fastify/swagger";
import Fastify, { type FastifyError, type FastifyInstance, type FastifyServerOptions } from "fastify";

import { printable } from "../printable.js";
import { authPlugin } from "./auth.js";
import { isErrorCode } from "../errors.js";
import { formatSchemaErrors, frameworkCode, HttpError, type SchemaError } from "./errors.js";
import { healthRoutes } from "./health.js";
import { metricsPlugin, ServerMetrics } from "./prometheus.js";
import { adapterRoutes } from "./routes/adapters.js";
import { rankRoutes } from "./routes/rank.js";
import { scoreRoutes } from "./routes/score.js";
import { ServerState, type ServerEngine, type ServerLimits } from "./state.js";
import type { ChatService } from "../chatrec/service.js";
import { chatRoutes } from "./routes/chat.js";
import { extraRoutes } from "./extras.js";

declare module "fastify" {
  interface FastifyInstance {
    /** The tallrec server's shared state (engine, metrics, limits). */
    tallrec: ServerState;
  }
}

/** Options of {@link buildServer}; limits have safe defaults. */
export interface ServerOptions {
  /** A loaded engine (the server is ready at once)... */
  engine?: ServerEngine;
  /** ...or a function that loads one: the server answers at once, /health says 503 until it resolves. */
  engineFactory?: () => Promise<ServerEngine>;
  /** Name of the model in responses (default: the model's description from its GGUF). */
  modelName?: string;
  /** Adapter used when a request names none (default: the only adapter when exactly one is loaded; null: the base model). */
  defaultAdapter?: string | null;
  /** Folder that runtime adapter loading is restricted to (default: none, runtime loading off). */
  modelsDir?: string | null;
  /** Require `Authorization: Bearer <apiKey>` on every route but /health. */
  apiKey?: string;
  /** Most prompts waiting in the queue; past it requests get 429 with Retry-After (default 1024). */
  maxQueue?: number;
  /** Most prompts per engine call (default 64). */
  maxBatch?: number;
  /** Longest wait for concurrent requests to join a batch, ms (default 2). */
  batchWaitMs?: number;
  /** Most items per /v1/score request (default 256; more is a 413). */
  maxItems?: number;
  /** Most candidates per /v1/rank request (default and at most: min(maxItems, maxBatch), since a ranking is one engine call). */
  maxCandidates?: number;
  /** Request body limit in bytes (default 2 MiB; more is a 413). */
  bodyLimit?: number;
  /** Longest time a request may wait for its scores, queue included, ms (default 30000; then 503). */
  timeoutMs?: number;
  /** Fastify's logger option (default false); request ids come from X-Request-Id when sent. */
  logger?: FastifyServerOptions["logger"];
  /** Close the engine when the server closes (default true). */
  closeEngine?: boolean;
  /** Include prom-client's process metrics in /metrics (default true). */
  processMetrics?: boolean;
  /** A Chat-REC service: adds POST /v1/chat, GET and DELETE /v1/chat/:sessionId. */
  chat?: ChatService;
}

const pkg = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as { version: string };

function limit(name: string, v: number | undefined, fallback: number, min = 1): number {
  if (v === undefined) return fallback;
  if (typeof v !== "number" || !Number.isInteger(v) || v < min) throw new RangeError(`${name} must be an integer >= ${min}, not ${JSON.stringify(v)}`);
  return v;
}

/** The limits of a server, defaults filled in and checked. */
export function resolveLimits(o: ServerOptions): ServerLimits {
  const maxBatch = limit("maxBatch", o.maxBatch, 64);
  const maxItems = limit("maxItems", o.maxItems, 256);
  const cap = Math.min(maxItems, maxBatch);
  const maxCandidates = limit("maxCandidates", o.maxCandidates, cap);
  if (maxCandidates > cap) throw new RangeError(`maxCandidates (${maxCandidates}) must be at most min(maxItems, maxBatch) = ${cap}: a ranking is one engine call`);
  return {
    maxQueue: limit("maxQueue", o.maxQueue, 1024),
    maxBatch,
    batchWaitMs: limit("batchWaitMs", o.batchWaitMs, 2, 0),
    maxItems,
    maxCandidates,
    bodyLimit: limit("bodyLimit", o.bodyLimit, 2 * 1024 * 1024),
    timeoutMs: limit("timeoutMs", o.timeoutMs, 30_000),
  };
}

/**
 * Builds the server (not yet listening). Exactly one of `engine` and `engineFactory` is needed.
 * Other users of the engine (Chat-REC, the library) may score at the same time: every call goes
 * through the engine's scheduler, which takes the server's limits. `app.close()` stops accepting
 * requests, answers those accepted, then closes the engine (unless `closeEngine` is false).
 */
export async function buildServer(options: ServerOptions): Promise<FastifyInstance> {
  if (!options || (options.engine === undefined) === (options.engineFactory === undefined)) {
    throw new TypeError("buildServer needs exactly one of engine and engineFactory");
  }
  const limits = resolveLimits(options);
  let state: ServerState | undefined;
  const cpu = () => {
    try {
      return state?.engine?.info.context ?? null;
    } catch {
      return null; // closed while shutting down
    }
  };
  const metrics = new ServerMetrics(() => state?.queue ?? null, "tallrec_", options.processMetrics ?? true, cpu);
  state = new ServerState(limits, metrics, options.modelName ?? "", options.defaultAdapter, options.modelsDir ?? null);
  const st = state;

  const app = Fastify({
    logger: options.logger ?? false,
    bodyLimit: limits.bodyLimit,
    requestIdHeader: "x-request-id",
    genReqId: () => randomUUID(),
    return503OnClosing: true,
    // the whole request must arrive within 30 s (slow senders cannot hold connections forever)
    requestTimeout: 30_000,
    ajv: { customOptions: { coerceTypes: false, removeAdditional: false, useDefaults: false, allErrors: false, verbose: true, allowUnionTypes: true } },
    schemaErrorFormatter: (errors, dataVar) => new Error(formatSchemaErrors(errors as unknown as SchemaError[], dataVar)),
    // errors the router answers itself (a malformed URL, a path parameter over 100 characters) get the same shape as every other error
    frameworkErrors: (err, _request, reply) => {
      const status = typeof (err as FastifyError).statusCode === "number" ? (err as FastifyError).statusCode! : 400;
      const message = (err as FastifyError).code === "FST_ERR_MAX_PARAM_LENGTH" ? "a path parameter is longer than 100 characters" : "the URL is malformed";
      void (reply as unknown as { code(n: number): { send(b: unknown): unknown } }).code(status).send(new HttpError(frameworkCode(status), message, { status }).body());
    },
  });
  app.setNotFoundHandler((request, reply) => reply.code(404).send(new HttpError("not_found", `no route ${request.method} ${printable(request.url.split("?")[0], 200)}`).body()));
  app.decorate("tallrec", st);

  app.addHook("onSend", async (request, reply) => {
    reply.header("x-request-id", request.id);
    // while shutting down, close each connection after its response: kept-alive idle connections
    // would otherwise hold the shutdown until their keep-alive timeout
    if (st.closing) reply.header("connection", "close");
  });

  // every error a route throws is answered here, in one shape, with its code's status (HttpError.from)
  app.setErrorHandler((err: FastifyError | Error, request, reply) => {
    const fastifyStatus = (err as FastifyError).statusCode;
    let answer: HttpError;
    if (isErrorCode((err as { code?: unknown }).code)) answer = HttpError.from(err);
    else if (typeof fastifyStatus === "number" && fastifyStatus >= 400 && fastifyStatus < 500) {
      // Fastify's own refusals (bad JSON, body too large, wrong content type): its status, our code
      const fcode = (err as FastifyError).code;
      let message = err.message;
      if (fcode === "FST_ERR_CTP_INVALID_JSON_BODY" || err instanceof SyntaxError) message = "body is not valid JSON";
      else if (fcode === "FST_ERR_CTP_BODY_TOO_LARGE") message = `body is larger than the limit of ${limits.bodyLimit} bytes`;
      answer = new HttpError(frameworkCode(fastifyStatus), message, { status: fastifyStatus });
    } else answer = HttpError.from(err, `internal error (request ${request.id})`);
    if (answer.code === "internal") request.log.error({ err }, "internal error");
    else if (answer.statusCode >= 500) request.log.warn({ err: answer.message, code: answer.code }, "request refused");
    return reply.code(answer.statusCode).headers(answer.headers).send(answer.body());
  });

  await app.register(swagger, {
    openapi: {
      openapi: "3.1.0",
      info: {
        title: "tallrec",
        version: pkg.version,
        description: "TALLRec inference over HTTP: the probability that a user likes an item, from a LLaMA model with TALLRec LoRA adapters.",
      },
      ...(options.apiKey ? { components: { securitySchemes: { bearer: { type: "http", scheme: "bearer" } } }, security: [{ bearer: [] }] } : {}),
    },
  });
  if (options.apiKey) await app.register(authPlugin, { apiKey: options.apiKey });
  await app.register(metricsPlugin, { metrics });
  await app.register(healthRoutes, { state: st });
  await app.register(scoreRoutes, { state: st });
  await app.register(rankRoutes, { state: st });
  await app.register(adapterRoutes, { state: st });
  if (options.chat) await app.register(chatRoutes, { service: options.chat });
  // OpenAI-compatible routes, the users' histories and the web page (issue 16)
  await extraRoutes(app, { state: st, ...(options.chat ? { chat: options.chat } : {}) });
  app.get("/openapi.json", { schema: { hide: true } }, async () => app.swagger());
  app.get("/docs", { schema: { hide: true } }, async (_request, reply) => reply.redirect("/openapi.json"));

  // loading: in the background with a factory, so that /health can say 503 meanwhile
  let loading: Promise<void>;
  if (options.engine) {
    st.setEngine(options.engine);
    loading = Promise.resolve();
  } else {
    loading = Promise.resolve()
      .then(() => options.engineFactory!())
      .then(
        (engine) => {
          st.setEngine(engine);
          app.log.info({ model: st.modelName, backend: engine.info.backend, adapters: engine.adapterNames() }, "model loaded");
        },
        (err: Error) => {
          st.status = "failed";
          st.loadError = err;
          app.log.error({ err }, "the model failed to load");
        },
      );
  }
  loadingPromises.set(app, loading);

  app.addHook("preClose", async () => {
    st.closing = true;
  });
  // graceful shutdown: Fastify first stops accepting and waits for the requests in flight to be
  // answered (return503OnClosing answers requests that arrive meanwhile); then this hook runs
  app.addHook("onClose", async () => {
    await loading;
    const engine = st.engine;
    // the requests in flight were answered; what other callers queued on the engine finishes in engine.close()
    st.detach();
    if (st.status === "ready") st.status = "stopping";
    if (engine && (options.closeEngine ?? true)) await engine.close();
  });
  return app;
}

const loadingPromises = new WeakMap<FastifyInstance, Promise<void>>();

/**
 * Resolves when the server's engine is loaded; rejects with the load error when loading failed.
 */
export async function engineLoaded(app: FastifyInstance): Promise<void> {
  await loadingPromises.get(app);
  if (app.tallrec.status === "failed") throw app.tallrec.loadError ?? new Error("the model failed to load");
}
