/**
 * The worker side: takes window jobs from the queue and scores each with one `engine.score` call,
 * exactly as local `tallrec batch` scores a window. A job whose run asks for another model, other
 * adapters or other engine options is refused (UnrecoverableError: no retry) with the reason.
 *
 * @module
 */
import { hostname } from "node:os";

import { UnrecoverableError, Worker, type Job } from "bullmq";
import type { Redis } from "ioredis";

import type { AdapterSpec, Engine } from "../engine/engine.js";
import { connectRedis, DEFAULT_QUEUE_NAME, mismatch, packResults, sha256File, type Digested, type EngineFlags, type WindowJob, type WindowResult } from "./common.js";

export interface ScoreWorkerOptions {
  url: string;
  queueName?: string;
  engine: Engine;
  model: string;
  adapters: AdapterSpec[];
  flags: EngineFlags;
  /** Jobs taken at once (default 1; more overlaps fetching with scoring, the engine runs one call at a time). */
  concurrency?: number;
  /** How long a job's lock lasts without renewal, ms (default 30000): a killed worker's job goes to another after this. */
  lockMs?: number;
  log?: (message: string) => void;
}

/** A running worker. */
export class ScoreWorker {
  readonly name = `${hostname()}:${process.pid}`;
  jobs = 0;
  refused = 0;

  private constructor(
    private readonly worker: Worker,
    private readonly conn: Redis,
  ) {}

  static async start(o: ScoreWorkerOptions): Promise<ScoreWorker> {
    const log = o.log ?? (() => {});
    const model: WindowJob["model"] = { sha256: await sha256File(o.model), file: o.model.split(/[\\/]/).pop()! };
    const adapters: Digested[] = [];
    for (const a of o.adapters) adapters.push({ name: a.name ?? a.path, sha256: await sha256File(a.path), scale: a.scale ?? null });
    const mine = { model, adapters, engine: o.flags };
    const conn = await connectRedis(o.url);
    const lockMs = o.lockMs ?? 30_000;
    let self: ScoreWorker | null = null;
    const name = `${hostname()}:${process.pid}`;
    const processor = async (job: Job<WindowJob>): Promise<WindowResult> => {
      const d = job.data;
      if (d?.v !== 1 || !Array.isArray(d.prompts)) throw new UnrecoverableError(`worker ${name}: job ${job.id} is not a tallrec window (another version of tallrec?)`);
      const why = mismatch(d, mine);
      if (why) {
        if (self) self.refused++;
        const msg = `worker ${name} refused run ${d.run}: ${why}`;
        log(msg);
        throw new UnrecoverableError(msg);
      }
      log(`scoring ${job.id} (attempt ${job.attemptsStarted}${job.stalledCounter ? `, stalled ${job.stalledCounter}x before` : ""})`);
      const t = performance.now();
      const results = await o.engine.score(d.prompts, { adapter: d.adapter ?? undefined, scoring: d.scoring });
      if (self) self.jobs++;
      log(`scored ${job.id} (rows ${d.first}..${d.first + d.rows - 1}, ${d.prompts.length} prompts) in ${((performance.now() - t) / 1000).toFixed(2)} s`);
      return packResults(results, name);
    };
    const worker = new Worker<WindowJob, WindowResult>(o.queueName ?? DEFAULT_QUEUE_NAME, processor, {
      connection: conn,
      concurrency: o.concurrency ?? 1,
      lockDuration: lockMs,
      stalledInterval: Math.max(1000, Math.min(30_000, lockMs)),
      maxStalledCount: 5,
    });
    worker.on("error", (err) => log(`queue error: ${err.message}`));
    self = new ScoreWorker(worker, conn);
    await worker.waitUntilReady();
    return self;
  }

  /** Stops taking jobs, lets the running ones finish, disconnects. */
  async close(): Promise<void> {
    await this.worker.close();
    this.conn.disconnect();
  }
}
