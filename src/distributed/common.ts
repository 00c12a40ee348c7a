/**
 * What the producer (`tallrec batch --queue`) and the workers (`tallrec worker`) share: the Redis
 * connection, the job's shape, and the digests that tie a run to a model and its adapters.
 *
 * One job is one window of `tallrec batch`: the prompts of that window's scorable rows, scored by
 * the worker in one `engine.score` call exactly as local batch scores the window, so the output is
 * the same bytes. The job id is derived from the run id, the window's first row and a hash of the
 * job's data: a producer restarted with `--resume` adds the same ids again, and BullMQ ignores an
 * add whose id exists (a window finished while the producer was down is read back, not re-scored).
 *
 * @module
 */
import { createHash } from "node:crypto";
import { createReadStream, statSync } from "node:fs";

import { Redis } from "ioredis";

import type { ScoreInput, ScoreResult } from "../engine/engine.js";
import type { ErrorCode } from "../errors.js";
import type { ScoringRule } from "../engine/scoring.js";

/** The BullMQ queue both sides use unless told otherwise. */
export const DEFAULT_QUEUE_NAME = "tallrec-batch";

/** Engine options that change scores: a worker must run with the same ones as the run asks. */
export interface EngineFlags {
  kvType: "f16" | "f32" | null;
  flashAttn: "on" | "off" | null;
  ctx: number | null;
  batch: number | null;
  sequences: number | null;
}

/** A file and the SHA-256 of its bytes. */
export interface Digested {
  name: string;
  sha256: string;
  scale: number | null;
}

/** The data of one job (one window). */
export interface WindowJob {
  v: 1;
  run: string;
  /** Input index of the window's first row, and rows in the window (scorable or not). */
  first: number;
  rows: number;
  model: { sha256: string; file: string };
  adapters: Digested[];
  adapter: string | null;
  scoring: ScoringRule;
  engine: EngineFlags;
  prompts: ScoreInput[];
}

/** A worker's answer: per prompt `[pYes, logitYes, logitNo, tokens]` or `{ error }`. */
export interface WindowResult {
  worker: string;
  results: Array<[number, number, number, number] | { error: string; code: ErrorCode; tokens?: number }>;
}

export function packResults(results: ScoreResult[], worker: string): WindowResult {
  return {
    worker,
    results: results.map((r) => (r.error === undefined ? [r.pYes, r.logitYes, r.logitNo, r.tokens] : r.tokens === undefined ? { error: r.error, code: r.code } : { error: r.error, code: r.code, tokens: r.tokens })),
  };
}

export function unpackResults(packed: WindowResult): ScoreResult[] {
  return packed.results.map((r) => (Array.isArray(r) ? { pYes: r[0], logitYes: r[1], logitNo: r[2], tokens: r[3] } : r));
}

/**
 * Opens a Redis connection from `redis://[user:pass@]HOST:PORT[/DB]`, failing fast when nobody
 * answers. `retries`: how often a command is retried while the connection is down (null: until it
 * is back, as BullMQ needs; a request handler wants a number, so that it fails instead of waiting).
 */
export async function connectRedis(url: string, timeoutMs = 5000, retries: number | null = null): Promise<Redis> {
  if (!/^rediss?:\/\//i.test(url)) throw new Error(`${url}: a Redis URL looks like redis://HOST:PORT[/DB]`);
  const conn = new Redis(url, { maxRetriesPerRequest: retries, lazyConnect: true, connectTimeout: timeoutMs });
  conn.on("error", () => {}); // reported through the calls that fail
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      conn.connect().then(() => conn.ping()),
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
      }),
    ]);
  } catch (err) {
    conn.disconnect();
    throw new Error(`cannot reach Redis at ${redactUrl(url)}: ${(err as Error).message}`, { cause: err });
  } finally {
    clearTimeout(timer);
  }
  return conn;
}

/** The URL without its password, for messages. */
export function redactUrl(url: string): string {
  return url.replace(/\/\/([^:@/]*):[^@/]*@/, "//$1:***@");
}

const digestCache = new Map<string, { size: number; mtimeMs: number; sha256: string }>();

/** SHA-256 of a file's bytes (remembered per path, size and mtime for this process). */
export async function sha256File(path: string): Promise<string> {
  const st = statSync(path);
  const hit = digestCache.get(path);
  if (hit && hit.size === st.size && hit.mtimeMs === st.mtimeMs) return hit.sha256;
  const hash = createHash("sha256");
  for await (const chunk of createReadStream(path, { highWaterMark: 4 << 20 })) hash.update(chunk as Buffer);
  const sha256 = hash.digest("hex");
  digestCache.set(path, { size: st.size, mtimeMs: st.mtimeMs, sha256 });
  return sha256;
}

/** SHA-256 of a string, hex. */
export function sha256Text(text: string): string {
  return createHash("sha256").update(text, "utf8").digest("hex");
}

/** Why a worker with `mine` cannot score a job that asks for `job`; null when it can. */
export function mismatch(job: Pick<WindowJob, "model" | "adapters" | "engine">, mine: Pick<WindowJob, "model" | "adapters" | "engine">): string | null {
  const why: string[] = [];
  if (job.model.sha256 !== mine.model.sha256) {
    why.push(`the model differs (the run's ${job.model.file} has sha256 ${job.model.sha256.slice(0, 16)}…, this worker's ${mine.model.file} ${mine.model.sha256.slice(0, 16)}…)`);
  }
  const fmt = (a: Digested) => `${a.name}${a.scale === null ? "" : `:${a.scale}`} (sha256 ${a.sha256.slice(0, 16)}…)`;
  const theirs = job.adapters.map(fmt).join(", ") || "none";
  const ours = mine.adapters.map(fmt).join(", ") || "none";
  if (theirs !== ours) why.push(`the adapters differ (the run's: ${theirs}; this worker's: ${ours})`);
  for (const k of Object.keys(job.engine) as Array<keyof EngineFlags>) {
    if (job.engine[k] !== mine.engine[k])
      why.push(`--${k === "kvType" ? "kv-type" : k === "flashAttn" ? "flash-attn" : k} differs (the run's ${job.engine[k] ?? "default"}, this worker's ${mine.engine[k] ?? "default"})`);
  }
  return why.length ? why.join("; ") : null;
}
