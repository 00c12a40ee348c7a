/**
 * One engine, three kinds of traffic: /v1/score, /v1/rank and /v1/chat (Chat-REC's re-ranking)
 * sent concurrently to a listening server share the engine through its one scheduler. Every score
 * each route answers is checked against `engine.score` of the same prompt alone.
 */
import type { FastifyInstance } from "fastify";
import { afterAll, beforeAll, expect, it } from "vitest";

import { createChatRec } from "../src/chatrec/setup.js";
import { Engine, type Score } from "../src/engine/engine.js";
import type { PromptInput } from "../src/engine/prompt.js";
import { buildServer } from "../src/server/index.js";
import { sampleRows, syntheticMovieLens } from "./helpers/data.js";
import { testModels } from "./helpers/models.js";

let engine: Engine;
let app: FastifyInstance;
let url: string;

beforeAll(async () => {
  const m = await testModels();
  // the exact mode (the tiny model's F32 weights and an F32 KV cache): nothing is rounded to F16, so
  // what a prompt is batched with moves its scores by float32 rounding only (README: modes)
  engine = await Engine.load({ model: m.tiny, adapters: [{ name: "movie", path: m.loraA }], gpu: "cpu", contextSize: 2048, sequences: 32, kvType: "f32" });
  const chat = await createChatRec({ engine, data: { ml100k: (await syntheticMovieLens()).dir }, recommender: "knn", explain: false });
  app = await buildServer({ engine, chat, closeEngine: false, maxBatch: 16, batchWaitMs: 5, processMetrics: false });
  await app.listen({ host: "127.0.0.1", port: 0 });
  const addr = app.server.address();
  if (!addr || typeof addr === "string") throw new Error("no address");
  url = `http://127.0.0.1:${addr.port}`;
});
afterAll(async () => {
  await app?.close();
  await engine?.close();
});

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- the JSON answers of three routes, read field by field below
async function post(path: string, body: unknown): Promise<{ status: number; body: any }> {
  const res = await fetch(`${url}${path}`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
  return { status: res.status, body: await res.json() };
}

/** engine.score of one prompt, alone in its batch. */
async function alone(p: PromptInput): Promise<Score> {
  const [r] = await engine.score([p], { adapter: "movie" });
  if (r.error !== undefined) throw new Error(r.error);
  return r;
}

// F32 KV: a prompt's logits move between batchings by float32 rounding only (the exact mode's
// batch-invariance promise, 1e-5 relative, test/exact-mode.test.ts); pYes by less
const close = (a: number, b: number) => Math.abs(a - b) <= 1e-5 * Math.max(1, Math.abs(b));

it("merges concurrent /v1/score, /v1/rank and /v1/chat traffic through one scheduler, each score as engine.score alone", async () => {
  const rows = sampleRows("movie")
    .slice(0, 24)
    .map(({ instruction, input }) => ({ instruction, input }));
  const user = { domain: "movie" as const, liked: ["Toy Story (1995)", "Heat (1995)"], disliked: ["Jumanji (1995)"] };
  const candidates = ["Casino (1995)", "Babe (1995)", "Se7en (1995)", "Twister (1996)", "Fargo (1996)", "Scream (1996)"];
  const batchesBefore = engine.scheduler.stats.batches;
  const jobs: number[] = [];
  const removeListener = engine.scheduler.addBatchListener((info) => jobs.push(info.jobs));

  const [scores, ranks, chats] = await Promise.all([
    Promise.all(rows.map((r, i) => post("/v1/score", { items: [{ id: i, ...r }] }))),
    Promise.all([0, 1, 2].map((k) => post("/v1/rank", { ...user, liked: [...user.liked, `Extra ${k}`], candidates }))),
    Promise.all([1, 2, 3].map((u) => post("/v1/chat", { user: u, message: "a comedy", explain: false }))),
  ]);
  removeListener();

  for (const r of [...scores, ...ranks, ...chats]) expect(r.status, JSON.stringify(r.body).slice(0, 300)).toBe(200);
  // the traffic was merged: batches held several callers' prompts
  expect(engine.scheduler.stats.batches - batchesBefore).toBeLessThan(rows.length + ranks.length + chats.length);
  expect(Math.max(...jobs)).toBeGreaterThan(1);

  // /v1/score: each item as engine.score alone
  for (const [i, r] of scores.entries()) {
    const want = await alone(rows[i]);
    const got = r.body.results[0];
    expect(close(got.logitYes, want.logitYes), `score ${i}: ${got.logitYes} vs ${want.logitYes}`).toBe(true);
    expect(close(got.logitNo, want.logitNo), `score ${i}`).toBe(true);
  }
  // /v1/rank: each candidate's score, and the order by pYes
  for (const [k, r] of ranks.entries()) {
    const liked = [...user.liked, `Extra ${k}`];
    expect(r.body.ranking).toHaveLength(candidates.length);
    for (const entry of r.body.ranking) {
      const want = await alone({ ...user, liked, target: candidates[entry.index] });
      expect(close(entry.logitYes, want.logitYes), `rank ${k} candidate ${entry.index}`).toBe(true);
    }
    const p = r.body.ranking.map((e: { pYes: number }) => e.pYes);
    expect([...p].sort((a, b) => b - a)).toEqual(p);
  }
  // /v1/chat: each recommendation's pYes is engine.score's for the session's TALLRec prompt
  for (const r of chats) {
    const session = (await (await fetch(`${url}/v1/chat/${r.body.sessionId}`)).json()) as { liked: string[]; disliked: string[] };
    expect(r.body.recommendations.length).toBeGreaterThan(0);
    for (const rec of r.body.recommendations as Array<{ title: string; pYes: number; coldStart: boolean }>) {
      if (rec.coldStart) continue;
      const want = await alone({ domain: "movie", liked: session.liked, disliked: session.disliked, target: rec.title });
      expect(Math.abs(rec.pYes - want.pYes), `chat ${r.body.sessionId} ${rec.title}`).toBeLessThanOrEqual(1e-5);
    }
  }
});
