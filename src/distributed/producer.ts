/**
 * The producer side of `tallrec batch --queue`: each window becomes one BullMQ job; its results
 * come back through BullMQ's completion events (or, for a job that finished while the producer was
 * down, from the job itself). `tallrec batch` keeps its own windows, order, output and
 * checkpoints: this only replaces the engine call.
 *
 * - A window's job is removed once the window is written and checkpointed (`done`), so a producer
 *   killed between receiving and writing finds the result again on `--resume`.
 * - A job a worker refused (model, adapters or engine options differ) fails at once
 *   (UnrecoverableError): the run stops with the worker's reason. A job that failed earlier is
 *   removed and added again, so a resumed run retries it.
 * - A worker killed mid-job: BullMQ's stalled-job check gives the job to another worker after the
 *   lock expires (`tallrec worker --lock-ms`); the producer just keeps waiting.
 *
 * @module
 */
import { Job, Queue, QueueEvents } from "bullmq";
import type { Redis } from "ioredis";

import type { AdapterSpec, ScoreInput, ScoreResult } from "../engine/engine.js";
import type { ScoringRule } from "../engine/scoring.js";
import { connectRedis, DEFAULT_QUEUE_NAME, sha256File, sha256Text, unpackResults, type Digested, type EngineFlags, type WindowJob, type WindowResult } from "./common.js";

export interface QueueScorerOptions {
  url: string;
  queueName?: string;
  runId: string;
  model: string;
  adapters: AdapterSpec[];
  adapter: string | null;
  scoring: ScoringRule;
  engine: EngineFlags;
  /** Attempts per job for errors a worker throws (a refusal is never retried). */
  attempts?: number;
}

/** Scores windows through the queue. */
export class QueueScorer {
  private readonly ids = new Map<number, string>();

  private constructor(
    private readonly queue: Queue,
    private readonly events: QueueEvents,
    private readonly conns: Redis[],
    private readonly base: Omit<WindowJob, "first" | "rows" | "prompts">,
    private readonly attempts: number,
  ) {}

  /** Connects, digests the model and adapters (the run records them in every job). */
  static async open(o: QueueScorerOptions): Promise<QueueScorer> {
    const model: WindowJob["model"] = { sha256: await sha256File(o.model), file: o.model.split(/[\\/]/).pop()! };
    const adapters: Digested[] = [];
    for (const a of o.adapters) adapters.push({ name: a.name ?? a.path, sha256: await sha256File(a.path), scale: a.scale ?? null });
    const name = o.queueName ?? DEFAULT_QUEUE_NAME;
    const c1 = await connectRedis(o.url);
    const c2 = await connectRedis(o.url);
    const queue = new Queue(name, { connection: c1 });
    const events = new QueueEvents(name, { connection: c2 });
    queue.on("error", () => {});
    events.on("error", () => {});
    await events.waitUntilReady();
    const base = { v: 1 as const, run: o.runId, model, adapters, adapter: o.adapter, scoring: o.scoring, engine: o.engine };
    return new QueueScorer(queue, events, [c1, c2], base, o.attempts ?? 3);
  }

  /** Scores one window's prompts (`first`: the window's first input index, `rows`: its size). */
  async score(prompts: ScoreInput[], first: number, rows: number, signal?: AbortSignal): Promise<ScoreResult[]> {
    const data: WindowJob = { ...this.base, first, rows, prompts };
    const id = `${this.base.run}-${first}-${sha256Text(JSON.stringify(data)).slice(0, 16)}`;
    this.ids.set(first, id);
    const existing = await Job.fromId(this.queue, id);
    if (existing && (await existing.isFailed())) await existing.remove(); // a resumed run tries it again
    const job = await this.queue.add("window", data, {
      jobId: id,
      attempts: this.attempts,
      backoff: { type: "fixed", delay: 1000 },
      // a safety net for runs that are never resumed; a finished window's job is removed in done()
      removeOnComplete: { age: 7 * 86400 },
      removeOnFail: { age: 7 * 86400 },
    });
    const finished = job.waitUntilFinished(this.events) as Promise<WindowResult>;
    let onAbort: (() => void) | undefined;
    const aborted = new Promise<never>((_, reject) => {
      onAbort = () => reject(Object.assign(new Error("interrupted"), { name: "AbortError" }));
      if (signal?.aborted) onAbort();
      else signal?.addEventListener("abort", onAbort, { once: true });
    });
    try {
      const packed = await Promise.race([finished, aborted]);
      const results = unpackResults(packed);
      if (results.length !== prompts.length) throw new Error(`window at row ${first}: the worker answered ${results.length} results for ${prompts.length} prompts`);
      return results;
    } catch (err) {
      if ((err as Error).name === "AbortError") throw err;
      throw new Error(`window at row ${first} (job ${id}) failed: ${(err as Error).message}`, { cause: err });
    } finally {
      if (onAbort) signal?.removeEventListener("abort", onAbort);
      finished.catch(() => {});
      aborted.catch(() => {});
    }
  }

  /** The window starting at `first` is written and checkpointed: its job can go. */
  async done(first: number): Promise<void> {
    const id = this.ids.get(first);
    if (id === undefined) return;
    this.ids.delete(first);
    try {
      await this.queue.remove(id);
    } catch {
      /* removeOnComplete collects it later */
    }
  }

  async close(): Promise<void> {
    await this.events.close().catch(() => {});
    await this.queue.close().catch(() => {});
    for (const c of this.conns) c.disconnect();
  }
}
