/**
 * `tallrec serve`: the HTTP server (src/server) in front of one engine. Listens at once (GET
 * /health answers 503 while the model loads), logs JSON lines to stderr (Fastify's logger), and
 * shuts down gracefully on SIGINT/SIGTERM: stops accepting, answers what was accepted, closes the
 * engine (a second signal exits at once).
 */
import { isIP } from "node:net";
import { dirname } from "node:path";

import { Command, InvalidArgumentError, Option } from "commander";

import { ChatRecError } from "../../chatrec/errors.js";
import { codeOf, exitCodeOf } from "../../errors.js";
import type { ChatService } from "../../chatrec/service.js";
import { RedisSessions } from "../../chatrec/session-redis.js";
import { createChatRec } from "../../chatrec/setup.js";
import { connectRedis, redactUrl } from "../../distributed/common.js";
import type { Engine } from "../../engine/engine.js";
import { buildServer, engineLoaded } from "../../server/index.js";
import { addModelOptions, allOptions, CliError, EXIT, loadEngine, modelPath, positiveIntArg, type ModelOptions } from "../common.js";

/**
 * The Chat-REC routes' service while the model loads: answers 503 until the real one is ready
 * (built once the engine is loaded), then forwards to it.
 */
export class PendingChat implements ChatService {
  private real: ChatService | null = null;
  private failure: string | null = null;
  ready(service: ChatService): void {
    this.real = service;
  }
  fail(err: Error): void {
    this.failure = err.message;
  }
  private get(): ChatService {
    if (this.real) return this.real;
    throw new ChatRecError("unavailable", this.failure ? `Chat-REC could not start: ${this.failure}` : "Chat-REC is starting (the model is loading); try again shortly");
  }
  startSession(user: string | number) {
    return this.get().startSession(user);
  }
  session(id: string) {
    return this.get().session(id);
  }
  turn(id: string, message: string, options?: Parameters<ChatService["turn"]>[2]) {
    return this.get().turn(id, message, options);
  }
  endSession(id: string) {
    return this.get().endSession(id);
  }
  async load(id: string): Promise<void> {
    await this.get().load?.(id);
  }
  async sync(id: string): Promise<void> {
    await this.get().sync?.(id);
  }
}

interface ServeOptions extends ModelOptions {
  host: string;
  port: number;
  modelsDir?: string;
  runtimeAdapters: boolean;
  defaultAdapter?: string;
  apiKey?: string;
  insecure?: boolean;
  maxQueue: number;
  maxBatch: number;
  batchWaitMs: number;
  maxItems: number;
  bodyLimit: number;
  timeoutMs: number;
  logLevel: string;
  chatData?: string;
  sessions?: string;
  chatRecommender: "popularity" | "knn" | "bpr" | "mf";
}

function portArg(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new InvalidArgumentError("--port must be an integer from 0 to 65535");
  return n;
}

function nonNegativeIntArg(name: string) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError(`${name} must be a non-negative integer`);
    return n;
  };
}

/** True for hosts only this machine can reach: localhost, 127.0.0.0/8, ::1. */
export function isLoopback(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, "").toLowerCase();
  if (h === "localhost" || h === "::1" || h === "0:0:0:0:0:0:0:1") return true;
  if (isIP(h) === 4) return h.startsWith("127.");
  if (h.startsWith("::ffff:")) return h.slice(7).startsWith("127.");
  return false;
}

/** The `serve` command. */
export function serveCommand(): Command {
  const cmd = new Command("serve")
    .description("serve scores over HTTP: POST /v1/score, POST /v1/rank, adapters, /health, /metrics, /openapi.json")
    .option("--host <host>", "address to bind", "127.0.0.1")
    .option("--port <n>", "port (0: any free port)", portArg, 8080)
    .option("--models-dir <dir>", "folder that POST /v1/adapters may load adapters from (default: the folder of --model)")
    .option("--no-runtime-adapters", "disable loading and unloading adapters over HTTP")
    .option("--default-adapter <name>", "adapter for requests that name none (default: the only one, when one is loaded)")
    .option("--api-key <key>", "require Authorization: Bearer <key> on every route but /health (default: $TALLREC_API_KEY, preferable: arguments are visible to other users)")
    .option("--insecure", "allow binding a non-loopback address without an API key")
    .option("--max-queue <n>", "most prompts waiting; past it 429 with Retry-After", positiveIntArg("--max-queue"), 1024)
    .option("--max-batch <n>", "most prompts per engine call", positiveIntArg("--max-batch"), 64)
    .option("--batch-wait-ms <ms>", "longest wait for concurrent requests to join a batch", nonNegativeIntArg("--batch-wait-ms"), 2)
    .option("--max-items <n>", "most items per /v1/score request (more: 413)", positiveIntArg("--max-items"), 256)
    .option("--body-limit <bytes>", "request body limit (more: 413)", positiveIntArg("--body-limit"), 2 * 1024 * 1024)
    .option("--chat-data <dir>", "enable POST /v1/chat (Chat-REC) on interaction data: a MovieLens-100K folder (u.data, u.item)")
    .option("--sessions <url>", "keep Chat-REC sessions in Redis (redis://HOST:PORT[/DB]) so that replicas behind a load balancer share them (default: in this process)")
    .addOption(new Option("--chat-recommender <kind>", "candidate generator for /v1/chat").choices(["popularity", "knn", "bpr", "mf"]).default("knn"))
    .option("--timeout-ms <ms>", "longest a request waits for its scores, queue included (then 503)", positiveIntArg("--timeout-ms"), 30_000)
    .addOption(new Option("--log-level <level>", "log level (JSON lines on stderr)").choices(["fatal", "error", "warn", "info", "debug", "trace", "silent"]).default("info"))
    .addHelpText(
      "after",
      `
Examples:
  tallrec serve -m models/llama-7b.gguf -l movie=models/movie.gguf -l book=models/book.gguf
  curl -s localhost:8080/v1/score -H 'content-type: application/json' \\
    -d '{"adapter":"movie","items":[{"domain":"movie","liked":["Heat (1995)"],"disliked":[],"target":"Casino (1995)"}]}'`,
    )
    .action(async (_o, command: Command) => {
      const o = allOptions<ServeOptions>(command);
      const model = modelPath(o);
      const apiKey = o.apiKey ?? (process.env.TALLREC_API_KEY || undefined);
      if (!isLoopback(o.host) && !apiKey && !o.insecure) {
        throw new CliError(`refusing to bind ${o.host} without an API key: pass --api-key (or set TALLREC_API_KEY), or --insecure`, EXIT.USAGE);
      }
      if (o.sessions && !o.chatData) throw new CliError("--sessions keeps Chat-REC sessions: it needs --chat-data", EXIT.USAGE);
      const sessionsRedis = o.sessions
        ? await connectRedis(o.sessions, 5000, 2).catch((err: Error) => {
            throw new CliError(`--sessions: ${err.message}`, EXIT.FAILURE, "unavailable");
          })
        : null;
      const chat = o.chatData ? new PendingChat() : undefined;
      let engine: Engine | null = null;
      const app = await buildServer({
        chat,
        engineFactory: async () => (engine = await loadEngine(o, o, o.defaultAdapter !== undefined ? { defaultAdapter: o.defaultAdapter } : {})),
        modelName: model
          .split(/[\\/]/)
          .pop()!
          .replace(/\.gguf$/i, ""),
        defaultAdapter: o.defaultAdapter,
        modelsDir: o.runtimeAdapters ? (o.modelsDir ?? dirname(model)) : null,
        apiKey,
        maxQueue: o.maxQueue,
        maxBatch: o.maxBatch,
        batchWaitMs: o.batchWaitMs,
        maxItems: o.maxItems,
        bodyLimit: o.bodyLimit,
        timeoutMs: o.timeoutMs,
        logger: { level: o.quiet ? "warn" : o.logLevel, stream: process.stderr },
      });

      let resolveDone!: () => void;
      let rejectDone!: (err: unknown) => void;
      const done = new Promise<void>((resolve, reject) => {
        resolveDone = resolve;
        rejectDone = reject;
      });
      let closing: Promise<void> | null = null;
      const shutdown = () => {
        closing ??= app.close().then(resolveDone, rejectDone);
      };
      let signalled = 0;
      const stop = (signal: NodeJS.Signals) => {
        if (++signalled > 1) {
          app.log.warn({ signal }, "second signal: exiting at once");
          process.exit(EXIT.INTERRUPTED);
        }
        app.log.info({ signal }, "shutting down: answering accepted requests, then closing the engine");
        shutdown();
      };
      process.on("SIGINT", stop);
      process.on("SIGTERM", stop);
      try {
        try {
          await app.listen({ host: o.host, port: o.port });
        } catch (err) {
          await app.close();
          throw new CliError(`cannot listen on ${o.host}:${o.port}: ${(err as Error).message}`, EXIT.FAILURE, "unavailable");
        }
        let loadError: Error | null = null;
        engineLoaded(app).then(
          async () => {
            if (!chat) return;
            try {
              // the same engine as the routes: Chat-REC's re-ranking goes through its scheduler too
              const service = await createChatRec({ engine: engine!, data: { ml100k: o.chatData! }, recommender: o.chatRecommender, log: (m) => app.log.info(m) });
              chat.ready(sessionsRedis ? new RedisSessions(service, sessionsRedis) : service);
              app.log.info(`Chat-REC ready: POST /v1/chat${o.sessions ? ` (sessions in ${redactUrl(o.sessions)})` : ""}`);
            } catch (err) {
              chat.fail(err as Error);
              app.log.error({ err }, "Chat-REC could not start");
            }
          },
          (err: Error) => {
            loadError = err;
            shutdown();
          },
        );
        await done;
        if (loadError) throw new CliError(`cannot load the model: ${(loadError as Error).message}`, exitCodeOf(loadError), codeOf(loadError));
      } finally {
        process.off("SIGINT", stop);
        process.off("SIGTERM", stop);
        sessionsRedis?.disconnect();
      }
    });
  return addModelOptions(cmd);
}
