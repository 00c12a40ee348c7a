/**
 * Prometheus metrics of the server (prom-client, one registry per server): HTTP requests and
 * latency, queue depth, batch sizes, prompts and tokens scored, tokens saved by prefix sharing.
 */
import type { FastifyInstance, FastifyPluginAsync } from "fastify";
import fp from "fastify-plugin";
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from "prom-client";

import type { SchedulerStats } from "../engine/scheduler.js";

/** What the thread gauges read (from `engine.info.context`). */
export interface CpuThreads {
  threadsNow: number;
  otherCores: number;
}

/** The server's metric objects. */
export class ServerMetrics {
  readonly registry = new Registry();
  readonly httpRequests: Counter<"method" | "route" | "status_code">;
  readonly httpDuration: Histogram<"method" | "route" | "status_code">;
  readonly batchPrompts: Histogram;
  readonly batchRequests: Histogram;
  readonly batchSeconds: Histogram;
  readonly queueWaitSeconds: Histogram;
  readonly prompts: Counter<"adapter">;
  readonly promptErrors: Counter;
  readonly promptTokens: Counter;
  readonly tokensEvaluated: Counter;
  readonly tokensSaved: Counter;
  readonly rejected: Counter<"reason">;

  /**
   * @param queue reads the scheduler's state when metrics are collected (queue depth gauges).
   * @param prefix metric name prefix (default "tallrec_").
   * @param cpu reads the engine's thread governor (threads gauges), null while no engine is loaded.
   */
  constructor(queue: () => SchedulerStats | null, prefix = "tallrec_", defaultMetrics = true, cpu: () => CpuThreads | null = () => null) {
    const registers = [this.registry];
    this.httpRequests = new Counter({ name: `${prefix}http_requests_total`, help: "HTTP requests answered, by method, route and status code", labelNames: ["method", "route", "status_code"], registers });
    this.httpDuration = new Histogram({
      name: `${prefix}http_request_duration_seconds`,
      help: "HTTP request latency (from receipt to response), by method, route and status code",
      labelNames: ["method", "route", "status_code"],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers,
    });
    this.batchPrompts = new Histogram({ name: `${prefix}batch_prompts`, help: "prompts per engine call", buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256, 512], registers });
    this.batchRequests = new Histogram({ name: `${prefix}batch_requests`, help: "requests merged into one engine call", buckets: [1, 2, 4, 8, 16, 32, 64, 128], registers });
    this.batchSeconds = new Histogram({
      name: `${prefix}batch_duration_seconds`,
      help: "time of one engine call",
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers,
    });
    this.queueWaitSeconds = new Histogram({
      name: `${prefix}queue_wait_seconds`,
      help: "time a request waited in the queue before its first engine call",
      buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    });
    this.prompts = new Counter({ name: `${prefix}prompts_scored_total`, help: "prompts scored, by adapter", labelNames: ["adapter"], registers });
    this.promptErrors = new Counter({ name: `${prefix}prompt_errors_total`, help: "items answered with a per-item error", registers });
    this.promptTokens = new Counter({ name: `${prefix}prompt_tokens_total`, help: "tokens of the prompts scored", registers });
    this.tokensEvaluated = new Counter({ name: `${prefix}tokens_evaluated_total`, help: "tokens the engine evaluated (decoded)", registers });
    this.tokensSaved = new Counter({
      name: `${prefix}tokens_saved_total`,
      help: "prompt tokens not evaluated thanks to prefix sharing (prompt tokens - evaluated tokens)",
      registers,
    });
    this.rejected = new Counter({ name: `${prefix}rejected_total`, help: "scoring requests refused or dropped, by reason (queue_full, timeout, disconnected, loading)", labelNames: ["reason"], registers });
    for (const reason of ["queue_full", "timeout", "disconnected", "loading"]) this.rejected.inc({ reason }, 0);
    new Gauge({
      name: `${prefix}queue_prompts`,
      help: "prompts waiting in the queue",
      registers,
      collect() {
        this.set(queue()?.queuedItems ?? 0);
      },
    });
    new Gauge({
      name: `${prefix}queue_requests`,
      help: "requests with prompts waiting in the queue",
      registers,
      collect() {
        this.set(queue()?.queuedJobs ?? 0);
      },
    });
    new Gauge({
      name: `${prefix}running_prompts`,
      help: "prompts in the running engine call",
      registers,
      collect() {
        this.set(queue()?.runningItems ?? 0);
      },
    });
    new Gauge({
      name: `${prefix}decode_threads`,
      help: "CPU threads the last decode used (fewer than configured while other processes hold cores)",
      registers,
      collect() {
        this.set(cpu()?.threadsNow ?? 0);
      },
    });
    new Gauge({
      name: `${prefix}other_cores`,
      help: "cores other processes used lately, as the engine's thread governor measured them (-1: not measured)",
      registers,
      collect() {
        this.set(cpu()?.otherCores ?? -1);
      },
    });
    if (defaultMetrics) collectDefaultMetrics({ register: this.registry, prefix });
  }
}

/** Records every response in the HTTP counters and latency histogram; serves `GET /metrics`. */
export const metricsPlugin: FastifyPluginAsync<{ metrics: ServerMetrics }> = fp(
  async (app: FastifyInstance, opts: { metrics: ServerMetrics }) => {
    const { metrics } = opts;
    app.addHook("onResponse", async (request, reply) => {
      const labels = { method: request.method, route: request.routeOptions.url ?? "(unmatched)", status_code: String(reply.statusCode) };
      metrics.httpRequests.inc(labels);
      metrics.httpDuration.observe(labels, reply.elapsedTime / 1000);
    });
    app.get("/metrics", { schema: { summary: "Prometheus metrics (text exposition format)", tags: ["operations"] } }, async (_request, reply) => {
      const text = await metrics.registry.metrics();
      return reply.type(metrics.registry.contentType).send(text);
    });
  },
  { name: "tallrec-metrics", fastify: "5.x" },
);
