/**
 * The HTTP server through Fastify's inject (no socket): each endpoint, each error class, and
 * scores equal to engine.score's for the same items.
 */
import { copyFileSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

import type { FastifyInstance, LightMyRequestResponse } from "fastify";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { Engine, type Score, type ScoreInput, type ScoreResult } from "../src/engine/engine.js";
import { promptText, type StructuredPrompt } from "../src/engine/prompt.js";
import { buildServer, engineLoaded, type ServerEngine } from "../src/server/index.js";
import { sampleRows } from "./helpers/data.js";
import { relDiff, testModels } from "./helpers/models.js";

function ok(r: ScoreResult): Score {
  if (r.error !== undefined) throw new Error(`unexpected error: ${r.error}`);
  return r;
}

interface Body {
  statusCode?: number;
  message?: string;
  code?: string;
  results?: Array<{ id: string | number; pYes?: number; logitYes?: number; logitNo?: number; tokens?: number; logSumExp?: number; error?: string }>;
  [k: string]: unknown;
}

const json = (r: LightMyRequestResponse) => r.json() as Body;

function expectSameScore(got: { pYes?: number; logitYes?: number; logitNo?: number }, want: Score, what: string) {
  expect(relDiff(got.logitYes!, want.logitYes), `${what} logitYes`).toBeLessThan(1e-4);
  expect(relDiff(got.logitNo!, want.logitNo), `${what} logitNo`).toBeLessThan(1e-4);
  expect(Math.abs(got.pYes! - want.pYes), `${what} pYes`).toBeLessThan(1e-4);
}

const user = { domain: "movie" as const, liked: ["Toy Story (1995)", "Heat (1995)", "Fargo (1996)", "Casino (1995)"], disliked: ["Jumanji (1995)"] };

let engine: Engine;
let app: FastifyInstance;
let modelsDir: string;
let m: Awaited<ReturnType<typeof testModels>>;

beforeAll(async () => {
  m = await testModels();
  engine = await Engine.load({
    model: m.tiny,
    adapters: [
      { name: "a", path: m.loraA },
      { name: "b", path: m.loraB },
    ],
    gpu: "cpu",
    threads: 1,
    contextSize: 1024,
    sequences: 32,
    // exact mode: requests are merged into other batches than the direct calls they are compared
    // with, and in this mode that moves scores by float32 noise only (README: modes)
    kvType: "f32",
  });
  // a models folder of its own: one adapter copied in, a non-adapter, and a link leading out
  modelsDir = mkdtempSync(join(tmpdir(), "tallrec-server-"));
  copyFileSync(m.loraB, join(modelsDir, "b-copy.gguf"));
  writeFileSync(join(modelsDir, "notes.gguf"), "not a gguf file");
  symlinkSync(m.loraA, join(modelsDir, "escape.gguf"));
  app = await buildServer({ engine, defaultAdapter: "a", modelsDir, maxItems: 40, maxBatch: 32, bodyLimit: 256 * 1024, closeEngine: false, processMetrics: false });
});

afterAll(async () => {
  await app?.close();
  await engine?.close();
  if (modelsDir) rmSync(modelsDir, { recursive: true, force: true });
});

const post = (url: string, payload: unknown, headers: Record<string, string> = {}) => app.inject({ method: "POST", url, payload: payload as Record<string, unknown>, headers });

describe("POST /v1/score", () => {
  it("answers engine.score's scores for TALLRec rows and structured items, in order, with ids", async () => {
    const rows = sampleRows("movie").slice(0, 12);
    const structured: StructuredPrompt[] = ["Babe (1995)", "Se7en (1995)"].map((target) => ({ ...user, target }));
    const books: StructuredPrompt = { domain: "book", liked: [{ title: "Dune", author: "Frank Herbert" }], disliked: [], target: { title: "Emma", author: "Jane Austen" } };
    const items = [...rows.map((r, i) => ({ id: `row-${i}`, ...r })), ...structured, { id: 99, ...books }];
    const res = await post("/v1/score", { adapter: "b", items });
    expect(res.statusCode).toBe(200);
    const body = json(res);
    const want = (await engine.score([...rows, ...structured, books] as ScoreInput[], { adapter: "b" })).map(ok);
    expect(body.results!.map((r) => r.id)).toEqual([...rows.map((_, i) => `row-${i}`), 12, 13, 99]);
    body.results!.forEach((r, i) => {
      expectSameScore(r, want[i], `item ${i}`);
      expect(r.tokens).toBe(want[i].tokens);
    });
    expect(body).toMatchObject({ model: engine.info.model.description, adapter: "b", scoring: "softmax" });
    const tokens = want.reduce((s, r) => s + r.tokens, 0);
    const usage = body.usage as { prompts: number; tokens: number; tokensEvaluated: number; tokensSaved: number };
    expect(usage.prompts).toBe(items.length);
    expect(usage.tokens).toBe(tokens);
    // the shared template header and the shared user history are evaluated once
    expect(usage.tokensEvaluated).toBeLessThan(tokens);
    expect(usage.tokensSaved).toBe(tokens - usage.tokensEvaluated);
  });

  it("uses the default adapter when none is named, and the base model for adapter null", async () => {
    const item = { ...user, target: "Babe (1995)" };
    const [withA] = (await engine.score([item], { adapter: "a" })).map(ok);
    const [base] = (await engine.score([item], { adapter: null })).map(ok);
    const d = json(await post("/v1/score", { items: [item] }));
    expect(d.adapter).toBe("a");
    expectSameScore(d.results![0], withA, "default adapter");
    const n = json(await post("/v1/score", { adapter: null, items: [item] }));
    expect(n.adapter).toBeNull();
    expectSameScore(n.results![0], base, "base model");
    expect(Math.abs(base.logitYes - withA.logitYes)).toBeGreaterThan(1e-3); // the adapter matters
  });

  it("offers tallrec-compat scoring with the log-sum-exp", async () => {
    const row = sampleRows("movie")[3];
    const [want] = (await engine.score([row], { adapter: "a", scoring: "tallrec-compat" })).map(ok);
    const body = json(await post("/v1/score", { scoring: "tallrec-compat", items: [row] }));
    expect(body.scoring).toBe("tallrec-compat");
    expectSameScore(body.results![0], want, "compat");
    expect(relDiff(body.results![0].logSumExp!, want.logSumExp!)).toBeLessThan(1e-4);
  });

  it("answers a bad item with { id, error } naming the field, and scores the others (200)", async () => {
    const good = sampleRows("movie").slice(20, 22);
    const items = [
      good[0],
      { id: "t", domain: "movie", liked: ["A (1990)"], disliked: [], target: 5 },
      { id: "l", domain: "movie", liked: ["A (1990)", 7], disliked: [], target: "B (1991)" },
      { instruction: "x" },
      { instruction: "x", input: "y", extra: 1 },
      { id: "d", domain: "film", liked: [], disliked: [], target: "B (1991)" },
      "just a string",
      { id: "long", instruction: "x", input: "word ".repeat(1500) },
      good[1],
    ];
    const res = await post("/v1/score", { items });
    expect(res.statusCode).toBe(200);
    const results = json(res).results!;
    const want = (await engine.score(good, { adapter: "a" })).map(ok);
    expectSameScore(results[0], want[0], "first good item");
    expectSameScore(results[8], want[1], "last good item");
    expect(results.slice(1, 8).map((r) => [r.id, r.error])).toEqual([
      ["t", "body/items/1/target must be a string or { title, author }"],
      ["l", "body/items/2/liked/1 must be a string or { title, author }"],
      [3, "body/items/3/input is required"],
      [4, "body/items/4/extra is not an allowed field"],
      ["d", 'body/items/5/domain must be one of "movie", "book"'],
      [6, "body/items/6 must be object"],
      ["long", expect.stringMatching(/^body\/items\/7: the prompt has \d+ tokens but the context holds 1024/)],
    ]);
    expect(results.slice(1, 8).every((r) => r.pYes === undefined)).toBe(true);
  });

  it("accepts TALLRec data rows as they are (their output field is ignored)", async () => {
    const row = sampleRows("movie")[5];
    expect(row.output).toBeTypeOf("string");
    const res = await post("/v1/score", { items: [row] });
    expect(res.statusCode).toBe(200);
    expectSameScore(json(res).results![0], ok((await engine.score([{ instruction: row.instruction, input: row.input }], { adapter: "a" }))[0]), "row");
  });

  it.each([
    ["malformed JSON", '{"items": [', 400, /^body is not valid JSON$/],
    ["a JSON array body", "[]", 400, /^body must be object$/],
    ["a JSON null body", "null", 400, /^body must be object$/],
    ["no items field", "{}", 400, /^body\/items is required$/],
    ["items not an array", '{"items": {"instruction": "x", "input": "y"}}', 400, /^body\/items must be array$/],
    ["empty items", '{"items": []}', 400, /^body\/items must NOT have fewer than 1 items$/],
    ["an unknown field", '{"adaptr": "a", "items": [{"instruction": "x", "input": "y"}]}', 400, /^body\/adaptr is not an allowed field$/],
    ["a wrong adapter type", '{"adapter": 3, "items": [{"instruction": "x", "input": "y"}]}', 400, /^body\/adapter must be string,null$/],
    ["an unknown scoring rule", '{"scoring": "max", "items": [{"instruction": "x", "input": "y"}]}', 400, /^body\/scoring must be one of "softmax", "tallrec-compat"$/],
    ["an unknown adapter", '{"adapter": "zz", "items": [{"instruction": "x", "input": "y"}]}', 404, /^body\/adapter: no adapter named "zz" is loaded \(loaded: "a", "b"\)$/],
    ["too many items", JSON.stringify({ items: Array.from({ length: 41 }, () => ({ instruction: "x", input: "y" })) }), 413, /^body\/items must NOT have more than 40 items$/],
    ["a body over the limit", JSON.stringify({ items: [{ instruction: "x".repeat(300 * 1024), input: "y" }] }), 413, /^body is larger than the limit of 262144 bytes$/],
    ["only bad items", '{"items": [{"instruction": 1, "input": "y"}, {"target": "x"}]}', 400, /^no item could be scored; the first: body\/items\/0\/instruction must be string$/],
    ["only too-long prompts", JSON.stringify({ items: [{ instruction: "x", input: "word ".repeat(1500) }] }), 413, /^body\/items\/0: the prompt has \d+ tokens but the context holds 1024/],
  ])("answers %s with a 4xx naming the field", async (_what, payload, status, message) => {
    const res = await app.inject({ method: "POST", url: "/v1/score", payload, headers: { "content-type": "application/json" } });
    expect(res.statusCode).toBe(status);
    const body = json(res);
    expect(body.statusCode).toBe(status);
    expect(body.message).toMatch(message);
  });

  it("answers an unsupported content type with 415", async () => {
    const res = await app.inject({ method: "POST", url: "/v1/score", payload: "items=1", headers: { "content-type": "application/x-www-form-urlencoded" } });
    expect(res.statusCode).toBe(415);
  });

  it("asks for an adapter when several are loaded and none is the default", async () => {
    const noDefault = await buildServer({ engine, closeEngine: false, processMetrics: false });
    try {
      const res = await noDefault.inject({ method: "POST", url: "/v1/score", payload: { items: [{ instruction: "x", input: "y" }] } });
      expect(res.statusCode).toBe(400);
      expect(json(res).message).toBe("body/adapter is required: several adapters are loaded (a, b) and none is the default");
    } finally {
      await noDefault.close();
    }
  });

  it("never answers a client's input with a 5xx", async () => {
    const bodies = [
      "",
      " ",
      "0",
      "1e999",
      '"x"',
      "true",
      "[[]]",
      '{"items": null}',
      '{"items": [null]}',
      '{"items": [[]]}',
      '{"items": [{}]}',
      '{"items": [{"domain": "movie"}]}',
      '{"items": [{"domain": "movie", "liked": "x", "disliked": [], "target": "t"}]}',
      '{"items": [{"domain": "book", "liked": [{"title": "a"}], "disliked": [], "target": {"title": "t", "author": 1}}]}',
      '{"items": [{"instruction": "x", "input": "y", "id": 1.5}]}',
      '{"items": [{"instruction": "x", "input": "y", "id": {}}]}',
      '{"__proto__": {"x": 1}, "items": [{"instruction": "x", "input": "y"}]}',
      '{"constructor": {"prototype": {}}, "items": []}',
      '{"items": [{"instruction": "\\u0000", "input": "\\ud800"}]}',
      '{"adapter": "", "items": [{"instruction": "x", "input": "y"}]}',
      '{"adapter": ["a"], "items": [{"instruction": "x", "input": "y"}]}',
      '{"items": [{"instruction": "x", "input": ""}]}',
    ];
    for (const payload of bodies) {
      for (const url of ["/v1/score", "/v1/rank"]) {
        const res = await app.inject({ method: "POST", url, payload, headers: { "content-type": "application/json" } });
        expect(res.statusCode, `${url} ${payload}`).toBeLessThan(500);
        expect(typeof json(res)).toBe("object");
      }
    }
  });
});

describe("POST /v1/rank", () => {
  const candidates = ["Babe (1995)", { id: "se7en", target: "Se7en (1995)" }, "Twister (1996)", "Scream (1996)", "Mars Attacks! (1996)"];
  const targets = ["Babe (1995)", "Se7en (1995)", "Twister (1996)", "Scream (1996)", "Mars Attacks! (1996)"];

  it("sorts the candidates by engine.score's pYes and evaluates the user's prefix once", async () => {
    const res = await post("/v1/rank", { adapter: "b", ...user, candidates });
    expect(res.statusCode).toBe(200);
    const body = res.json() as {
      ranking: Array<{ rank: number; index: number; id: string | number; pYes: number; logitYes: number; logitNo: number }>;
      errors: unknown[];
      usage: { tokens: number; tokensEvaluated: number };
    };
    const prompts = targets.map((target) => ({ ...user, target }));
    const want = (await engine.score(prompts, { adapter: "b" })).map(ok);
    const order = want
      .map((w, i) => ({ i, p: w.pYes }))
      .sort((x, y) => y.p - x.p || x.i - y.i)
      .map((x) => x.i);
    expect(body.ranking.map((r) => r.index)).toEqual(order);
    expect(body.ranking.map((r) => r.rank)).toEqual([1, 2, 3, 4, 5]);
    for (const r of body.ranking) expectSameScore(r, want[r.index], `candidate ${r.index}`);
    expect(body.ranking.find((r) => r.index === 1)!.id).toBe("se7en");
    expect(body.errors).toEqual([]);
    // the prompts' common prefix (template + the user's history) is evaluated once, not per candidate
    const toks = prompts.map((p) => Array.from(engine.tokenize(promptText(p))));
    let common = 0;
    while (toks.every((t) => t[common] === toks[0][common])) common++;
    expect(common).toBeGreaterThan(100);
    expect(body.usage.tokens).toBe(toks.reduce((s, t) => s + t.length, 0));
    expect(body.usage.tokensEvaluated).toBeLessThanOrEqual(body.usage.tokens - (targets.length - 1) * common);
  });

  it("returns the top candidates only when asked, and lists bad candidates apart", async () => {
    const res = await post("/v1/rank", { ...user, candidates: [...candidates, { target: 5 }, { id: "x", name: "y" }], top: 2 });
    expect(res.statusCode).toBe(200);
    const body = res.json() as { ranking: Array<{ index: number }>; errors: Array<{ index: number; id: string | number; error: string }> };
    expect(body.ranking).toHaveLength(2);
    expect(body.errors).toEqual([
      { index: 5, id: 5, error: "body/candidates/5/target must be a string or { title, author }", code: "invalid_input" },
      { index: 6, id: "x", error: "body/candidates/6/target is required", code: "invalid_input" },
    ]);
  });

  it("fails the whole request for a bad user field, too many candidates, or an unknown adapter", async () => {
    const cases: Array<[unknown, number, RegExp]> = [
      [{ ...user, liked: "Heat", candidates }, 400, /^body\/liked must be array$/],
      [{ ...user, domain: "music", candidates }, 400, /^body\/domain must be one of "movie", "book"$/],
      [{ liked: [], disliked: [], candidates }, 400, /^body\/domain is required$/],
      [{ ...user, candidates: [] }, 400, /^body\/candidates must NOT have fewer than 1 items$/],
      [{ ...user, candidates: Array.from({ length: 33 }, (_, i) => `M ${i}`) }, 413, /^body\/candidates must NOT have more than 32 items$/],
      [{ ...user, candidates, top: 0 }, 400, /^body\/top must be >= 1$/],
      [{ ...user, candidates, adapter: "nope" }, 404, /^body\/adapter: no adapter named "nope"/],
      [{ ...user, candidates: [{ target: 1 }] }, 400, /^body\/candidates\/0\/target must be a string or \{ title, author \}$/],
    ];
    for (const [payload, status, message] of cases) {
      const res = await post("/v1/rank", payload);
      expect(res.statusCode, JSON.stringify(payload).slice(0, 80)).toBe(status);
      expect(json(res).message).toMatch(message);
    }
  });
});

describe("adapters", () => {
  it("lists the loaded adapters with the default", async () => {
    const res = await app.inject({ method: "GET", url: "/v1/adapters" });
    expect(res.statusCode).toBe(200);
    const body = res.json() as { adapters: Array<{ name: string; rank: number; alpha: number; scale: number }>; default: string; runtimeLoading: boolean };
    expect(body.adapters.map((a) => [a.name, a.rank, a.alpha, a.scale])).toEqual([
      ["a", 8, 16, 1],
      ["b", 4, 8, 1],
    ]);
    expect(body.default).toBe("a");
    expect(body.runtimeLoading).toBe(true);
  });

  it("loads an adapter from the models folder, scores with it, and unloads it", async () => {
    const load = await post("/v1/adapters", { name: "b2", path: "b-copy.gguf" });
    expect(load.statusCode).toBe(201);
    expect(load.json()).toMatchObject({ adapter: { name: "b2", path: "b-copy.gguf", rank: 4, scale: 1 } });
    expect(engine.adapterNames()).toContain("b2");
    const item = { ...user, target: "Babe (1995)" };
    const [viaB] = (await engine.score([item], { adapter: "b" })).map(ok);
    const scored = json(await post("/v1/score", { adapter: "b2", items: [item] }));
    expectSameScore(scored.results![0], viaB, "the same file under another name");
    expect((await post("/v1/adapters", { name: "b2", path: "b-copy.gguf" })).statusCode).toBe(409);

    const del = await app.inject({ method: "DELETE", url: "/v1/adapters/b2" });
    expect(del.statusCode).toBe(200);
    expect(del.json()).toEqual({ unloaded: "b2" });
    expect(engine.adapterNames()).not.toContain("b2");
    expect((await post("/v1/score", { adapter: "b2", items: [item] })).statusCode).toBe(404);
    const again = await app.inject({ method: "DELETE", url: "/v1/adapters/b2" });
    expect(again.statusCode).toBe(404);
    expect(json(again).message).toBe('params/name: no adapter named "b2" is loaded');
  });

  it.each([
    ["a path that climbs out", { name: "x", path: "../x.gguf" }, 400, /^body\/path must stay inside the models folder$/],
    ["a deep climb", { name: "x", path: "a/../../../../etc/passwd" }, 400, /^body\/path must stay inside the models folder$/],
    ["an absolute path", { name: "x", path: "/etc/passwd" }, 400, /^body\/path must be relative to the models folder/],
    ["a link leading out", { name: "x", path: "escape.gguf" }, 400, /^body\/path leads outside the models folder/],
    ["a missing file", { name: "x", path: "missing.gguf" }, 404, /^body\/path: no file "missing.gguf" in the models folder$/],
    ["the folder itself", { name: "x", path: "." }, 400, /^body\/path must stay inside the models folder$/],
    ["a file that is no adapter", { name: "x", path: "notes.gguf" }, 422, /^body\/path: notes.gguf: /],
    ["a bad name", { name: "../x", path: "b-copy.gguf" }, 400, /^body\/name must match pattern/],
    ["no name", { path: "b-copy.gguf" }, 400, /^body\/name is required$/],
  ])("refuses %s", async (_what, payload, status, message) => {
    const res = await post("/v1/adapters", payload);
    expect(res.statusCode).toBe(status);
    expect(json(res).message).toMatch(message);
    expect(engine.adapterNames()).toEqual(["a", "b"]);
  });

  it("refuses runtime loading and unloading without a models folder (403)", async () => {
    const locked = await buildServer({ engine, defaultAdapter: "a", closeEngine: false, processMetrics: false });
    try {
      expect((await locked.inject({ method: "POST", url: "/v1/adapters", payload: { name: "x", path: "b-copy.gguf" } })).statusCode).toBe(403);
      expect((await locked.inject({ method: "DELETE", url: "/v1/adapters/b" })).statusCode).toBe(403);
      expect(engine.adapterNames()).toEqual(["a", "b"]);
    } finally {
      await locked.close();
    }
  });
});

describe("health, metrics, docs, auth, request ids", () => {
  it("says 503 while the model loads and 200 once it is loaded; scoring waits for it", async () => {
    let release!: (e: ServerEngine) => void;
    const pending = new Promise<ServerEngine>((r) => (release = r));
    const loading = await buildServer({ engineFactory: () => pending, closeEngine: false, processMetrics: false, defaultAdapter: "a" });
    try {
      const h1 = await loading.inject({ url: "/health" });
      expect(h1.statusCode).toBe(503);
      expect(h1.json()).toMatchObject({ status: "loading" });
      expect(h1.headers["retry-after"]).toBe("2");
      const s1 = await loading.inject({ method: "POST", url: "/v1/score", payload: { items: [{ instruction: "x", input: "y" }] } });
      expect(s1.statusCode).toBe(503);
      expect(json(s1).code).toBe("loading");
      release(engine);
      await engineLoaded(loading);
      const h2 = await loading.inject({ url: "/health" });
      expect(h2.statusCode).toBe(200);
      expect(h2.json()).toMatchObject({ status: "ok", backend: "cpu", adapters: ["a", "b"] });
      expect((await loading.inject({ method: "POST", url: "/v1/score", payload: { items: [{ instruction: "x", input: "y" }] } })).statusCode).toBe(200);
    } finally {
      await loading.close();
    }
  });

  it("says 503 with the reason when the model failed to load", async () => {
    const failed = await buildServer({ engineFactory: () => Promise.reject(new Error("models/x.gguf: no such file")), processMetrics: false });
    try {
      await expect(engineLoaded(failed)).rejects.toThrow("no such file");
      const h = await failed.inject({ url: "/health" });
      expect(h.statusCode).toBe(503);
      expect(h.json()).toEqual({ status: "failed", message: "the model failed to load: models/x.gguf: no such file" });
      const s = await failed.inject({ method: "POST", url: "/v1/score", payload: { items: [{ instruction: "x", input: "y" }] } });
      expect(s.statusCode).toBe(503);
    } finally {
      await failed.close();
    }
  });

  it("exposes Prometheus metrics: requests, latency, batches, prompts, tokens, tokens saved, queue, threads", async () => {
    const fresh = await buildServer({ engine, defaultAdapter: "a", closeEngine: false, processMetrics: false });
    try {
      const rank = await fresh.inject({ method: "POST", url: "/v1/rank", payload: { ...user, candidates: ["Babe (1995)", "Se7en (1995)", "Heat (1995)"] } });
      expect(rank.statusCode).toBe(200);
      const usage = (rank.json() as { usage: { tokens: number; tokensEvaluated: number; tokensSaved: number } }).usage;
      expect((await fresh.inject({ method: "POST", url: "/v1/score", payload: { items: [] } })).statusCode).toBe(400);
      const res = await fresh.inject({ url: "/metrics" });
      expect(res.statusCode).toBe(200);
      expect(res.headers["content-type"]).toMatch(/^text\/plain/);
      const text = res.body;
      const value = (line: string) => {
        const hit = text.split("\n").find((l) => l.startsWith(`${line} `));
        if (!hit) throw new Error(`no metric line ${line} in:\n${text}`);
        return Number(hit.slice(line.length + 1));
      };
      expect(value('tallrec_http_requests_total{method="POST",route="/v1/rank",status_code="200"}')).toBe(1);
      expect(value('tallrec_http_requests_total{method="POST",route="/v1/score",status_code="400"}')).toBe(1);
      expect(value('tallrec_http_request_duration_seconds_count{method="POST",route="/v1/rank",status_code="200"}')).toBe(1);
      expect(value("tallrec_batch_prompts_count")).toBe(1);
      expect(value("tallrec_batch_prompts_sum")).toBe(3);
      expect(value('tallrec_prompts_scored_total{adapter="a"}')).toBe(3);
      expect(value("tallrec_prompt_tokens_total")).toBe(usage.tokens);
      expect(value("tallrec_tokens_evaluated_total")).toBe(usage.tokensEvaluated);
      expect(value("tallrec_tokens_saved_total")).toBe(usage.tokensSaved);
      expect(usage.tokensSaved).toBeGreaterThan(200);
      expect(value("tallrec_queue_prompts")).toBe(0);
      expect(value('tallrec_rejected_total{reason="queue_full"}')).toBe(0);
      // the thread governor's gauges read the engine's own state
      const c = engine.info.context;
      expect(value("tallrec_decode_threads")).toBe(c.threadsNow);
      expect(value("tallrec_decode_threads")).toBeGreaterThanOrEqual(1);
      expect(value("tallrec_other_cores")).toBe(c.otherCores);
    } finally {
      await fresh.close();
    }
  });

  it("serves an OpenAPI 3.1 document generated from the route schemas", async () => {
    const res = await app.inject({ url: "/openapi.json" });
    expect(res.statusCode).toBe(200);
    const doc = res.json() as {
      openapi: string;
      paths: Record<string, Record<string, { requestBody?: { content: Record<string, { schema: { properties: Record<string, { items?: { oneOf?: Array<{ title: string; required: string[] }> } }> } }> } }>>;
    };
    expect(doc.openapi).toBe("3.1.0");
    expect(Object.keys(doc.paths).sort()).toEqual([
      "/health",
      "/health/live",
      "/health/ready",
      "/metrics",
      "/v1/adapters",
      "/v1/adapters/{name}",
      "/v1/chat/completions",
      "/v1/embeddings",
      "/v1/models",
      "/v1/rank",
      "/v1/score",
    ]);
    const items = doc.paths["/v1/score"].post.requestBody!.content["application/json"].schema.properties.items.items!;
    expect(items.oneOf!.map((s) => [s.title, s.required])).toEqual([
      ["InstructionItem", ["instruction", "input"]],
      ["StructuredItem", ["domain", "liked", "disliked", "target"]],
    ]);
    const docs = await app.inject({ url: "/docs" });
    expect(docs.statusCode).toBe(302);
    expect(docs.headers.location).toBe("/openapi.json");
  });

  it("requires the API key (bearer token) on every route but /health when one is set", async () => {
    const secured = await buildServer({ engine, defaultAdapter: "a", apiKey: "s3cret", closeEngine: false, processMetrics: false });
    try {
      const payload = { items: [{ instruction: "x", input: "y" }] };
      const none = await secured.inject({ method: "POST", url: "/v1/score", payload });
      expect(none.statusCode).toBe(401);
      expect(none.headers["www-authenticate"]).toMatch(/^Bearer/);
      expect(json(none).message).toMatch(/^headers\/authorization: an API key is required/);
      const wrong = await secured.inject({ method: "POST", url: "/v1/score", payload, headers: { authorization: "Bearer s3cre" } });
      expect(wrong.statusCode).toBe(401);
      expect(json(wrong).message).toBe("headers/authorization: the API key is wrong");
      expect((await secured.inject({ method: "POST", url: "/v1/score", payload, headers: { authorization: "Basic czNjcmV0" } })).statusCode).toBe(401);
      expect((await secured.inject({ method: "POST", url: "/v1/score", payload, headers: { authorization: "Bearer s3cret" } })).statusCode).toBe(200);
      for (const url of ["/metrics", "/v1/adapters", "/openapi.json"]) expect((await secured.inject({ url })).statusCode, url).toBe(401);
      expect((await secured.inject({ url: "/health" })).statusCode).toBe(200);
      const doc = (await secured.inject({ url: "/openapi.json", headers: { authorization: "Bearer s3cret" } })).json() as { components: { securitySchemes: unknown } };
      expect(doc.components.securitySchemes).toEqual({ bearer: { type: "http", scheme: "bearer" } });
    } finally {
      await secured.close();
    }
  });

  it("echoes the client's X-Request-Id and makes one up otherwise", async () => {
    const mine = await app.inject({ url: "/health", headers: { "x-request-id": "abc-123" } });
    expect(mine.headers["x-request-id"]).toBe("abc-123");
    const made = await app.inject({ url: "/health" });
    expect(made.headers["x-request-id"]).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
  });
});
