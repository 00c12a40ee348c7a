/**
 * Issue 11 over HTTP (D5, D7, D14): `tallrec serve` runs as a child process with the hostile
 * adapters in its models folder. POST /v1/adapters with each crasher or NaN-maker answers 422
 * naming the problem (D5 killed the server), absurd scales are a 400 (D7 accepted them, then every
 * score was a 500), and after each one the server still scores. Router errors (a path parameter
 * over 100 characters, a malformed URL, an unknown route) have the same shape as every other
 * error (D14).
 */
import { spawn, type ChildProcess } from "node:child_process";
import { copyFileSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { Engine } from "../src/engine/engine.js";
import { rewriteGguf } from "../src/gguf/rewrite.js";
import { buildServer } from "../src/server/index.js";
import { cliPath, MUTANTS, writeMutant } from "./helpers/hostile.js";
import { testModels } from "./helpers/models.js";

let dir: string;
let m: Awaited<ReturnType<typeof testModels>>;
let server: ChildProcess;
let url: string;
let stderr = "";

beforeAll(async () => {
  m = await testModels();
  dir = mkdtempSync(join(tmpdir(), "tallrec-hostile-http-"));
  copyFileSync(m.loraA, join(dir, "good.gguf"));
  for (const mu of MUTANTS) if (mu.kind === "adapter") await writeMutant(mu, m.loraA, dir);
  await writeMutant(
    MUTANTS.find((mu) => mu.name === "vocab-duplicate")!,
    m.tiny,
    dir,
  );
  server = spawn(process.execPath, [cliPath, "--threads", "1", "serve", "--port", "0", "-m", m.tiny, "-l", `good=${join(dir, "good.gguf")}`, "--models-dir", dir, "--batch-wait-ms", "0"], {
    stdio: ["ignore", "ignore", "pipe"],
  });
  url = await new Promise<string>((resolve, reject) => {
    server.stderr!.setEncoding("utf8").on("data", (d: string) => {
      stderr += d;
      const found = /Server listening at (http:\/\/127\.0\.0\.1:\d+)/.exec(stderr);
      if (found) resolve(found[1]);
    });
    server.on("exit", (code, signal) => reject(new Error(`the server exited (${code ?? signal}): ${stderr}`)));
  });
  for (let i = 0; i < 500 && (await fetch(`${url}/health`)).status !== 200; i++) await new Promise((r) => setTimeout(r, 20));
});
afterAll(() => {
  server?.kill("SIGKILL");
  rmSync(dir, { recursive: true, force: true });
});

const json = { "content-type": "application/json" };
const ITEM = { domain: "movie", liked: ["Heat (1995)"], disliked: [], target: "Casino (1995)" };

async function call(method: string, path: string, body?: unknown): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`${url}${path}`, { method, headers: body === undefined ? {} : json, body: body === undefined ? undefined : JSON.stringify(body) });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

/** The server is alive and scores with its good adapter. */
async function stillServing(): Promise<void> {
  expect(server.exitCode, stderr).toBeNull();
  expect(server.signalCode, stderr).toBeNull();
  const r = await call("POST", "/v1/score", { adapter: "good", items: [ITEM] });
  expect(r.status, JSON.stringify(r.body)).toBe(200);
  const [res] = r.body.results as Array<{ pYes: number }>;
  expect(Number.isFinite(res.pYes)).toBe(true);
}

/** Every error body: statusCode, error, code, message. */
function errorShape(body: Record<string, unknown>, status: number): void {
  expect(Object.keys(body).sort()).toEqual(["code", "error", "message", "statusCode"]);
  expect(body.statusCode).toBe(status);
  expect(typeof body.error).toBe("string");
  expect(typeof body.code).toBe("string");
  expect(typeof body.message).toBe("string");
}

describe("POST /v1/adapters with hostile files (D5)", () => {
  it.each(MUTANTS.filter((mu) => mu.kind === "adapter").map((mu) => [mu.name, mu] as const))("%s: 422 naming the problem, and the server keeps serving", async (name, mu) => {
    const r = await call("POST", "/v1/adapters", { name: "x", path: `${name}.gguf` });
    expect(r.status, JSON.stringify(r.body)).toBe(422);
    errorShape(r.body, 422);
    expect(r.body.code).toBe("invalid_file");
    expect(r.body.message).toMatch(mu.message);
    expect(r.body.message).not.toContain(dir); // the path as the client gave it
    await stillServing();
  });

  it("a model given as an adapter (one that aborts llama.cpp's vocabulary loader) is refused too", async () => {
    const r = await call("POST", "/v1/adapters", { name: "x", path: "vocab-duplicate.gguf" });
    expect(r.status).toBe(422);
    expect(r.body.message).toMatch(/not a LoRA adapter/);
    await stillServing();
  });
});

describe("absurd adapter scales (D7)", () => {
  it("a scale of 1e308 (or beyond ±1000) is a 400, and the adapters stay as they were", async () => {
    for (const scale of [1e308, -1e308, 1000.5]) {
      const r = await call("POST", "/v1/adapters", { name: "big", path: "good.gguf", scale });
      expect(r.status, JSON.stringify(r.body)).toBe(400);
      errorShape(r.body, 400);
      expect(r.body.message).toMatch(/body\/scale must be/);
    }
    const list = await call("GET", "/v1/adapters");
    expect((list.body.adapters as Array<{ name: string }>).map((a) => a.name)).toEqual(["good"]);
    // a sane scale loads, and scores are numbers
    const ok = await call("POST", "/v1/adapters", { name: "half", path: "good.gguf", scale: 0.5 });
    expect(ok.status).toBe(201);
    const r = await call("POST", "/v1/score", { adapter: "half", items: [ITEM] });
    expect(r.status).toBe(200);
    expect(Number.isFinite((r.body.results as Array<{ pYes: number }>)[0].pYes)).toBe(true);
    expect((await call("DELETE", "/v1/adapters/half")).status).toBe(200);
    await stillServing();
  });
});

describe("non-finite scores over HTTP", () => {
  it("a model whose logits overflow gives each item an error, never a null pYes (in-process: the model is not a crasher)", async () => {
    const overflow = join(dir, "overflow-model.gguf");
    await rewriteGguf(m.tiny, overflow, { tensors: { "output.weight": { data: (old) => new Uint8Array(new Float32Array(old.length / 4).fill(3e38).buffer) } } });
    const engine = await Engine.load({ model: overflow, gpu: "cpu", threads: 1, contextSize: 512 });
    const app = await buildServer({ engine, processMetrics: false });
    try {
      const res = await app.inject({ method: "POST", url: "/v1/score", payload: { items: [ITEM, ITEM] }, headers: json });
      expect(res.statusCode).toBe(400);
      const body = res.json() as { code: string; results: Array<{ error?: string; pYes?: unknown }> };
      expect(body.code).toBe("invalid_input");
      expect(body.results).toHaveLength(2);
      for (const r of body.results) {
        expect(r.error).toMatch(/non-finite logits/);
        expect(r.pYes).toBeUndefined();
      }
      expect(res.body).not.toMatch(/"pYes"|:null/);
    } finally {
      await app.close();
    }
  });
});

describe("every HTTP error has one shape (D14)", () => {
  it("a path parameter over 100 characters is a 414 with statusCode, error, code and message", async () => {
    const r = await call("DELETE", `/v1/adapters/${"a".repeat(101)}`);
    expect(r.status).toBe(414);
    errorShape(r.body, 414);
    expect(r.body).toMatchObject({ error: "URI Too Long", code: "uri_too_long" });
    const chat = await call("GET", `/v1/chat/${"s".repeat(101)}`); // no chat service here: an unknown route
    expect([404, 414]).toContain(chat.status);
    errorShape(chat.body, chat.status);
  });

  it("unknown routes and malformed URLs too", async () => {
    const nf = await call("GET", "/v1/nope");
    expect(nf.status).toBe(404);
    errorShape(nf.body, 404);
    expect(nf.body).toMatchObject({ error: "Not Found", code: "not_found", message: "no route GET /v1/nope" });
    const bad = await call("DELETE", "/v1/adapters/%E0%A4%A");
    expect(bad.status).toBe(400);
    errorShape(bad.body, 400);
    const badJson = await fetch(`${url}/v1/score`, { method: "POST", headers: json, body: "{" });
    expect(badJson.status).toBe(400);
    errorShape((await badJson.json()) as Record<string, unknown>, 400);
  });

  it("the server never died", async () => {
    await stillServing();
  });
});
