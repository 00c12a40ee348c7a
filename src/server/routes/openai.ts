/**
 * OpenAI-compatible routes, so that any OpenAI client can talk to the model:
 *
 * - `GET /v1/models`: the base model, each loaded adapter, and `chatrec` when Chat-REC is on.
 * - `POST /v1/chat/completions`: generation through `engine.generate` with the model's chat
 *   template (`max_tokens`, `temperature`, `top_p`, `stop`, `seed`; `stream: true` answers
 *   server-sent events). With `model: "chatrec"` the conversation goes to the Chat-REC recommender
 *   instead; the `user` field picks the MovieLens user, and follow-ups ("not that one", "more like
 *   the second") refine the last answer as in `tallrec chat`.
 * - `POST /v1/embeddings`: `engine.embed` (mean-pooled, L2-normalized; `encoding_format` float or
 *   base64).
 *
 * Errors on these routes have OpenAI's shape, `{ error: { message, type, param, code } }`, with
 * the HTTP status that OpenAI uses for the same case (400, 401, 404, 429, 503).
 *
 * @module
 */
import { createHash } from "node:crypto";
import { PassThrough } from "node:stream";

import type { FastifyError, FastifyInstance, FastifyRequest } from "fastify";

import type { ChatService } from "../../chatrec/service.js";
import type { Recommended, TurnResult } from "../../chatrec/pipeline.js";
import type { ChatMessage, GenerateOptions, GenerateResult } from "../../engine/generation.js";
import { formatSchemaErrors, HttpError, type SchemaError } from "../errors.js";
import type { ServerState } from "../state.js";

/** The model id of the Chat-REC recommender. */
export const CHATREC_MODEL = "chatrec";

/** Options of {@link openaiRoutes}. */
export interface OpenAIRoutesOptions {
  state: ServerState;
  /** The Chat-REC service: adds the `chatrec` model. */
  chat?: ChatService;
}

/** What generation and embeddings need from the engine (an Engine has them; a stand-in may not). */
interface GenEngine {
  generate(prompt: readonly ChatMessage[], options: GenerateOptions & { adapter?: string | null }): Promise<GenerateResult>;
  embed(texts: readonly string[]): Promise<Float32Array[]>;
  tokenize?(text: string, options?: { special?: boolean }): Int32Array;
}

/** An error answered in OpenAI's shape. */
export class OpenAIError extends Error {
  constructor(
    readonly statusCode: number,
    message: string,
    readonly type: string = "invalid_request_error",
    readonly param: string | null = null,
    readonly code: string | null = null,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
    this.name = "OpenAIError";
  }
  body() {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }
}

const TYPE_BY_STATUS: Record<number, string> = {
  400: "invalid_request_error",
  401: "authentication_error",
  403: "permission_error",
  404: "not_found_error",
  409: "conflict_error",
  413: "invalid_request_error",
  415: "invalid_request_error",
  429: "rate_limit_error",
  499: "invalid_request_error",
  500: "server_error",
  501: "server_error",
  503: "server_error",
};

/** Any error as an {@link OpenAIError} (tallrec's HttpError keeps its status, message and code). */
export function toOpenAIError(err: unknown, requestId = ""): OpenAIError {
  if (err instanceof OpenAIError) return err;
  if (err instanceof HttpError) return new OpenAIError(err.statusCode, err.message, TYPE_BY_STATUS[err.statusCode] ?? "server_error", null, err.code.toLowerCase(), err.headers);
  const e = err as Partial<FastifyError> & { status?: number; code?: string };
  if (e && typeof e === "object" && typeof (e as { name?: string }).name === "string" && (e as Error).name === "ChatRecError" && typeof e.status === "number") {
    return new OpenAIError(e.status, (e as Error).message, TYPE_BY_STATUS[e.status] ?? "invalid_request_error", e.code === "unknown_user" ? "user" : null, `chat_${String(e.code)}`);
  }
  const status = typeof e?.statusCode === "number" && e.statusCode >= 400 && e.statusCode < 500 ? e.statusCode : 500;
  if (status === 500) return new OpenAIError(500, `internal error (request ${requestId})`, "server_error", null, "internal_error");
  let message = e.message ?? "bad request";
  if (e.code === "FST_ERR_CTP_INVALID_JSON_BODY" || err instanceof SyntaxError) message = "the body is not valid JSON";
  else if (e.code === "FST_ERR_CTP_BODY_TOO_LARGE") message = "the body is larger than the server's limit";
  return new OpenAIError(status, message, TYPE_BY_STATUS[status] ?? "invalid_request_error", null, e.code ? e.code.toLowerCase() : null);
}

// --- schemas (documentation in /openapi.json, and validation through attachValidation) ---

const CONTENT_SCHEMA = {
  description: 'a string, or an array of { type: "text", text } parts',
  anyOf: [{ type: "string" }, { type: "array", items: { type: "object", required: ["type"], properties: { type: { type: "string" }, text: { type: "string" } } } }, { type: "null" }],
} as const;

const CHAT_COMPLETIONS_BODY = {
  type: "object",
  required: ["model", "messages"],
  properties: {
    model: { type: "string", description: "the base model's id, an adapter's name, or \"chatrec\" (GET /v1/models lists them)" },
    messages: {
      type: "array",
      minItems: 1,
      items: {
        type: "object",
        required: ["role"],
        properties: { role: { type: "string", enum: ["system", "developer", "user", "assistant"] }, content: CONTENT_SCHEMA, name: { type: "string" } },
      },
    },
    stream: { type: ["boolean", "null"] },
    stream_options: { type: ["object", "null"], properties: { include_usage: { type: "boolean" } } },
    max_tokens: { type: ["integer", "null"], minimum: 1 },
    max_completion_tokens: { type: ["integer", "null"], minimum: 1 },
    temperature: { type: ["number", "null"], minimum: 0, maximum: 2 },
    top_p: { type: ["number", "null"], minimum: 0, maximum: 1 },
    stop: { description: "a string or up to 4 strings", anyOf: [{ type: "string" }, { type: "array", items: { type: "string" }, maxItems: 4 }, { type: "null" }] },
    seed: { type: ["integer", "null"], minimum: 0 },
    n: { type: ["integer", "null"], minimum: 1, maximum: 1, description: "only 1" },
    user: { type: "string", description: "with model chatrec: the MovieLens user to recommend for" },
  },
} as const;

const EMBEDDINGS_BODY = {
  type: "object",
  required: ["model", "input"],
  properties: {
    model: { type: "string" },
    input: { description: "a string or an array of strings", anyOf: [{ type: "string" }, { type: "array", items: { type: "string" }, minItems: 1, maxItems: 2048 }] },
    encoding_format: { type: "string", enum: ["float", "base64"] },
    dimensions: { type: "integer", minimum: 1 },
    user: { type: "string" },
  },
} as const;

interface ChatCompletionsBody {
  model: string;
  messages: Array<{ role: string; content?: string | Array<{ type: string; text?: string }> | null }>;
  stream?: boolean | null;
  stream_options?: { include_usage?: boolean } | null;
  max_tokens?: number | null;
  max_completion_tokens?: number | null;
  temperature?: number | null;
  top_p?: number | null;
  stop?: string | string[] | null;
  seed?: number | null;
  n?: number | null;
  user?: string;
}

interface EmbeddingsBody {
  model: string;
  input: string | string[];
  encoding_format?: "float" | "base64";
  dimensions?: number;
}

function validationError(request: FastifyRequest): void {
  const v = (request as FastifyRequest & { validationError?: Error & { validation?: SchemaError[]; validationContext?: string } }).validationError;
  if (!v) return;
  const message = v.validation ? formatSchemaErrors(v.validation, v.validationContext ?? "body") : v.message;
  const param = v.validation?.[0]?.instancePath?.split("/")[1] ?? null;
  throw new OpenAIError(400, message, "invalid_request_error", param, "invalid_value");
}

function textOf(content: ChatCompletionsBody["messages"][number]["content"], i: number): string {
  if (content === undefined || content === null) return "";
  if (typeof content === "string") return content;
  return content
    .map((p, k) => {
      if (p.type !== "text" || typeof p.text !== "string") throw new OpenAIError(400, `messages[${i}].content[${k}]: only text parts are supported`, "invalid_request_error", "messages", "unsupported_content");
      return p.text;
    })
    .join("");
}

const now = () => Math.floor(Date.now() / 1000);

/** A bounded map from a conversation (user and messages so far) to its Chat-REC session. */
class ConversationIndex {
  private readonly map = new Map<string, string>();
  constructor(private readonly max = 1000) {}
  static key(user: string, messages: ReadonlyArray<{ role: string; content: string }>): string {
    const h = createHash("sha256").update(user);
    for (const m of messages) h.update(`\u0000${m.role}\u0000${m.content}`);
    return h.digest("hex");
  }
  get(key: string): string | undefined {
    const v = this.map.get(key);
    if (v !== undefined) {
      this.map.delete(key);
      this.map.set(key, v);
    }
    return v;
  }
  set(key: string, session: string): void {
    this.map.delete(key);
    this.map.set(key, session);
    while (this.map.size > this.max) this.map.delete(this.map.keys().next().value as string);
  }
}

/** The ranked list as the chatrec model writes it before its explanation. */
export function formatRecommendations(recs: readonly Recommended[], notes: readonly string[] = []): string {
  const lines = recs.map((r) => `${r.rank}. ${r.title} (pYes ${r.pYes.toFixed(3)}${r.recScore !== null ? `, recommender ${r.recScore.toFixed(3)}` : ", new item"})`);
  if (lines.length === 0) lines.push("(nothing to recommend)");
  for (const n of notes) lines.push(`note: ${n}`);
  return `${lines.join("\n")}\n\n`;
}

/** Registers `GET /v1/models`, `POST /v1/chat/completions` and `POST /v1/embeddings`. */
export async function openaiRoutes(fastify: FastifyInstance, { state, chat }: OpenAIRoutesOptions): Promise<void> {
  // every error on these routes (auth, body parsing, validation, the engine) in OpenAI's shape
  fastify.setErrorHandler((err, request, reply) => {
    const e = toOpenAIError(err, request.id);
    if (e.statusCode >= 500) request.log.error({ err }, "OpenAI route failed");
    return reply.code(e.statusCode).headers(e.headers).send(e.body());
  });
  const conversations = new ConversationIndex();

  const genEngine = (): GenEngine => {
    const engine = state.requireEngine();
    const { generate, embed } = engine;
    if (typeof generate !== "function" || typeof embed !== "function") throw new OpenAIError(501, "this server's engine cannot generate text or embeddings", "server_error", null, "not_supported");
    return { generate: generate.bind(engine), embed: embed.bind(engine), tokenize: engine.tokenize?.bind(engine) };
  };

  /** The adapter a model id stands for (null: the base model). */
  const adapterOf = (model: string, param = "model"): string | null => {
    const engine = state.requireEngine();
    if (model === state.modelName) return null;
    if (engine.adapterNames().includes(model)) return model;
    const known = [state.modelName, ...engine.adapterNames(), ...(chat ? [CHATREC_MODEL] : [])];
    throw new OpenAIError(404, `The model ${JSON.stringify(model)} does not exist (models: ${known.map((k) => JSON.stringify(k)).join(", ")})`, "invalid_request_error", param, "model_not_found");
  };

  fastify.get("/v1/models", { schema: { summary: "OpenAI-compatible: the models (base model, adapters, chatrec)", tags: ["openai"] } }, async () => {
    const engine = state.requireEngine();
    const created = now();
    const data = [
      { id: state.modelName, object: "model", created, owned_by: "tallrec" },
      ...engine.adapterNames().map((name) => ({ id: name, object: "model", created, owned_by: "tallrec", parent: state.modelName, root: state.modelName })),
      ...(chat ? [{ id: CHATREC_MODEL, object: "model", created, owned_by: "tallrec", parent: state.modelName, root: state.modelName }] : []),
    ];
    return { object: "list", data };
  });

  fastify.post(
    "/v1/chat/completions",
    { attachValidation: true, schema: { summary: "OpenAI-compatible chat completions (and the chatrec recommender)", tags: ["openai"], body: CHAT_COMPLETIONS_BODY } },
    async (request, reply) => {
      validationError(request);
      const body = request.body as ChatCompletionsBody;
      const messages = body.messages.map((m, i) => ({ role: m.role === "developer" ? "system" : m.role, content: textOf(m.content, i) })) as ChatMessage[];
      const id = `chatcmpl-${request.id}`;
      const created = now();
      const ac = new AbortController();
      reply.raw.once("close", () => {
        if (!reply.raw.writableEnded) ac.abort(new Error("client disconnected"));
      });

      // the generation (or the Chat-REC turn), streaming its text to onText
      let run: (onText?: (t: string) => void) => Promise<{ text: string; finish: "stop" | "length"; promptTokens: number; tokens: number; extra?: Record<string, unknown> }>;
      if (body.model === CHATREC_MODEL && chat) {
        if (typeof body.user !== "string" || body.user.trim() === "")
          throw new OpenAIError(400, 'with model "chatrec", the user field names the MovieLens user to recommend for', "invalid_request_error", "user", "missing_user");
        const user = body.user.trim();
        const lastUser = messages.map((m) => m.role).lastIndexOf("user");
        if (lastUser < 0) throw new OpenAIError(400, "messages needs a user message", "invalid_request_error", "messages", "missing_user_message");
        const message = messages[lastUser].content;
        const before = messages.slice(0, lastUser).filter((m) => m.role !== "system");
        run = async (onText) => {
          // continue the session whose answers the client sends back; else start one and replay the earlier requests (without explanations)
          let known = conversations.get(ConversationIndex.key(user, before));
          if (known !== undefined) {
            try {
              await chat.session(known);
            } catch {
              known = undefined;
            }
          }
          let sessionId: string;
          if (known !== undefined) sessionId = known;
          else {
            sessionId = (await chat.startSession(user)).sessionId;
            for (const m of before) if (m.role === "user") await chat.turn(sessionId, m.content, { explain: false, signal: ac.signal });
          }
          let head = "";
          const r: TurnResult = await chat.turn(sessionId, message, {
            signal: ac.signal,
            onRecommendations: (recs, notes) => {
              head = formatRecommendations(recs, notes);
              onText?.(head);
            },
            onText,
          });
          if (!head) head = formatRecommendations(r.recommendations, r.notes);
          const text = head + r.explanation;
          conversations.set(ConversationIndex.key(user, [...before, { role: "user", content: message }, { role: "assistant", content: text }]), sessionId);
          const { intent: _i, ...rest } = r;
          return { text, finish: r.stopReason === "length" ? "length" : "stop", promptTokens: 0, tokens: 0, extra: { chatrec: rest } };
        };
      } else {
        const adapter = adapterOf(body.model);
        const engine = genEngine();
        const stop = body.stop === null || body.stop === undefined ? undefined : typeof body.stop === "string" ? [body.stop] : body.stop;
        const maxTokens = body.max_completion_tokens ?? body.max_tokens ?? undefined;
        const options: GenerateOptions & { adapter?: string | null } = {
          adapter,
          signal: ac.signal,
          ...(maxTokens !== undefined ? { maxTokens } : {}),
          ...(body.temperature !== undefined && body.temperature !== null ? { temperature: body.temperature } : {}),
          ...(body.top_p !== undefined && body.top_p !== null ? { topP: body.top_p } : {}),
          ...(body.seed !== undefined && body.seed !== null ? { seed: body.seed } : {}),
          ...(stop ? { stop } : {}),
        };
        run = async (onText) => {
          let r: GenerateResult;
          try {
            r = await engine.generate(messages, { ...options, ...(onText ? { onText } : {}) });
          } catch (err) {
            if (err instanceof TypeError || err instanceof RangeError) throw new OpenAIError(400, err.message, "invalid_request_error", null, "invalid_value");
            throw err;
          }
          return { text: r.text, finish: r.stopReason === "length" || r.stopReason === "context" ? "length" : "stop", promptTokens: r.promptTokens, tokens: r.tokens };
        };
      }
      const model = body.model;
      const usage = (r: { promptTokens: number; tokens: number }) => ({ prompt_tokens: r.promptTokens, completion_tokens: r.tokens, total_tokens: r.promptTokens + r.tokens });

      if (!body.stream) {
        const r = await run();
        if (ac.signal.aborted) return reply;
        return {
          id,
          object: "chat.completion",
          created,
          model,
          choices: [{ index: 0, message: { role: "assistant", content: r.text }, logprobs: null, finish_reason: r.finish }],
          usage: usage(r),
          ...(r.extra ?? {}),
        };
      }

      // server-sent events: a role chunk, content chunks, the finish chunk, (usage), [DONE]
      const out = new PassThrough();
      const send = (data: unknown) => out.write(`data: ${JSON.stringify(data)}\n\n`);
      const chunk = (delta: Record<string, unknown>, finish: string | null) => ({ id, object: "chat.completion.chunk", created, model, choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }] });
      send(chunk({ role: "assistant", content: "" }, null));
      run((t) => {
        if (t) send(chunk({ content: t }, null));
      }).then(
        (r) => {
          send({ ...chunk({}, r.finish), ...(r.extra ?? {}) });
          if (body.stream_options?.include_usage) send({ id, object: "chat.completion.chunk", created, model, choices: [], usage: usage(r) });
          out.end("data: [DONE]\n\n");
        },
        (err: unknown) => {
          const e = toOpenAIError(err, request.id);
          if (e.statusCode >= 500) request.log.error({ err }, "chat completion failed");
          send(e.body());
          out.end();
        },
      );
      return reply.header("cache-control", "no-cache").type("text/event-stream; charset=utf-8").send(out);
    },
  );

  fastify.post("/v1/embeddings", { attachValidation: true, schema: { summary: "OpenAI-compatible embeddings (engine.embed: mean-pooled, L2-normalized)", tags: ["openai"], body: EMBEDDINGS_BODY } }, async (request) => {
    validationError(request);
    const body = request.body as EmbeddingsBody;
    if (body.model !== CHATREC_MODEL || !chat) adapterOf(body.model);
    const engine = genEngine();
    const inputs = typeof body.input === "string" ? [body.input] : body.input;
    let vectors: Float32Array[];
    try {
      vectors = await engine.embed(inputs);
    } catch (err) {
      if (err instanceof TypeError || err instanceof RangeError) throw new OpenAIError(400, err.message, "invalid_request_error", "input", "invalid_value");
      throw err;
    }
    if (body.dimensions !== undefined && vectors.length > 0 && body.dimensions !== vectors[0].length) {
      throw new OpenAIError(400, `dimensions: this model's embeddings have ${vectors[0].length} dimensions, and cannot be shortened`, "invalid_request_error", "dimensions", "invalid_value");
    }
    let tokens = 0;
    if (typeof engine.tokenize === "function") for (const t of inputs) tokens += engine.tokenize(t).length;
    return {
      object: "list",
      model: body.model,
      data: vectors.map((v, index) => ({
        object: "embedding",
        index,
        embedding: body.encoding_format === "base64" ? Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString("base64") : Array.from(v),
      })),
      usage: { prompt_tokens: tokens, total_tokens: tokens },
    };
  });
}
