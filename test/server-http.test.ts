/**
 * The HTTP server listening on 127.0.0.1: batching invisible to clients, fairness, the queue
 * bound (429), timeouts, disconnects, and graceful shutdown under load.
 */
import type { FastifyInstance } from "fastify";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";

import { Engine } from "../src/engine/engine.js";
import { promptText } from "../src/engine/prompt.js";
import { buildServer, type ServerEngine, type ServerOptions } from "../src/server/index.js";
import { sampleRows } from "./helpers/data.js";
import { testModels } from "./helpers/models.js";

let engine: Engine;

beforeAll(async () => {
  const m = await testModels();
  engine = await Engine.load({ model: m.tiny, adapters: [{ name: "a", path: m.loraA }], gpu: "cpu", threads: 1, contextSize: 1024, sequences: 32, kvType: "f32" }); // exact mode: merged batches move scores by float32 noise only
});
afterAll(async () => engine?.close());

/**
 * The engine with a gate in its scheduler: while the gate is shut, batches wait (after recording
 * their size and prompts) before they run; close() is recorded, not passed on (the next test still
 * needs the engine). Call `g.done()` after the test to remove the gate.
 */
function gatedEngine() {
  let open: (() => void) | null = null;
  let gate: Promise<void> | null = null;
  const batches: number[] = [];
  const seen: number[][][] = [];
  const g = {
    batches,
    seen,
    closes: 0,
    /** Called when the server closes the engine. */
    onClose: async () => {},
    shut() {
      gate ??= new Promise<void>((r) => (open = r));
    },
    open() {
      open?.();
      gate = null;
      open = null;
    },
    waiting: 0,
    done: () => {},
    engine: {
      scoreWithStats: (inputs, options) => engine.scoreWithStats(inputs, options),
      get scheduler() {
        return engine.scheduler;
      },
      get info() {
        return engine.info;
      },
      adapterNames: () => engine.adapterNames(),
      loadAdapter: (s) => engine.loadAdapter(s),
      unloadAdapter: (n) => engine.unloadAdapter(n),
      async close() {
        g.closes++;
        await g.onClose();
      },
    } as ServerEngine,
  };
  g.done = engine.scheduler.intercept(async (_group, items, next) => {
    batches.push(items.length);
    seen.push(items.map((t) => [...t]));
    if (gate) {
      g.waiting++;
      await gate;
      g.waiting--;
    }
    return next();
  });
  gates.push(g.done);
  return g;
}

const gates: Array<() => void> = [];
afterEach(() => {
  for (const remove of gates.splice(0)) remove();
});

/** A prompt's tokens, as the batches hold them (for `seen`). */
const tokensOf = (p: { instruction: string; input: string }) => [...engine.tokenize(promptText(p))];

async function listen(options: ServerOptions): Promise<{ app: FastifyInstance; url: string }> {
  const app = await buildServer({ processMetrics: false, ...options });
  await app.listen({ host: "127.0.0.1", port: 0 });
  const addr = app.server.address();
  if (!addr || typeof addr === "string") throw new Error("no address");
  return { app, url: `http://127.0.0.1:${addr.port}` };
}

interface Reply {
  status: number;
  headers: Headers;
  body: { results?: Array<{ id: number | string; pYes?: number; logitYes?: number; logitNo?: number; error?: string }>; message?: string; code?: string; usage?: { tokens: number } };
}

async function score(url: string, payload: unknown, signal?: AbortSignal): Promise<Reply> {
  const res = await fetch(`${url}/v1/score`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(payload), signal });
  return { status: res.status, headers: res.headers, body: (await res.json()) as Reply["body"] };
}

const tick = (ms = 0) => new Promise((r) => setTimeout(r, ms));
async function until(cond: () => boolean, what: string, ms = 10_000): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`);
    await tick(2);
  }
}

const rows = () => sampleRows("movie").map(({ instruction, input }) => ({ instruction, input }));

describe("HTTP server on 127.0.0.1", () => {
  it("scores the same whether 50 items come in one request or in 50 concurrent ones (batching is invisible)", async () => {
    const g = gatedEngine();
    const { app, url } = await listen({ engine: g.engine, maxBatch: 64, batchWaitMs: 5 });
    try {
      const items = rows()
        .slice(100, 150)
        .map((r, i) => ({ id: `r${i}`, ...r }));
      const one = await score(url, { items });
      expect(one.status).toBe(200);
      expect(g.batches).toEqual([50]);
      const many = await Promise.all(items.map((item) => score(url, { items: [item] })));
      expect(many.every((r) => r.status === 200)).toBe(true);
      // the 50 requests were merged into far fewer engine calls...
      expect(g.batches.length - 1).toBeLessThan(25);
      // ...and every item's scores are the same as in the single request
      many.forEach((r, i) => {
        const got = r.body.results![0];
        const want = one.body.results![i];
        expect(got.id).toBe(want.id);
        expect(Math.abs(got.logitYes! - want.logitYes!), `item ${i}`).toBeLessThan(1e-4);
        expect(Math.abs(got.logitNo! - want.logitNo!), `item ${i}`).toBeLessThan(1e-4);
        expect(Math.abs(got.pYes! - want.pYes!), `item ${i}`).toBeLessThan(1e-4);
      });
    } finally {
      await app.close();
    }
  });

  it("does not make a small request wait for all of a large one: it joins the next batch", async () => {
    const g = gatedEngine();
    const { app, url } = await listen({ engine: g.engine, maxBatch: 8, batchWaitMs: 1, maxItems: 64 });
    try {
      const all = rows();
      g.shut();
      let bigDone = -1;
      let smallDone = -1;
      const big = score(url, { items: all.slice(0, 48) }).then((r) => ((bigDone = performance.now()), r));
      await until(() => g.waiting === 1, "the large request's first batch");
      const small = score(url, { items: [all[200]] }).then((r) => ((smallDone = performance.now()), r));
      await until(() => app.tallrec.queue.queuedJobs === 2, "the small request to be queued");
      g.open();
      const [b, s] = await Promise.all([big, small]);
      expect(b.status).toBe(200);
      expect(s.status).toBe(200);
      expect(smallDone).toBeLessThan(bigDone);
      // the large request went through in batches of at most 8; the small one rode in the second
      expect(g.batches[0]).toBe(8);
      expect(g.batches.every((n) => n <= 8)).toBe(true);
      expect(g.seen[1]).toContainEqual(tokensOf(all[200]));
      expect(g.batches.reduce((x, y) => x + y, 0)).toBe(49);
    } finally {
      g.open();
      await app.close();
    }
  });

  it("answers 429 with Retry-After past the queue bound, and serves the accepted requests", async () => {
    const g = gatedEngine();
    const { app, url } = await listen({ engine: g.engine, maxQueue: 4, maxBatch: 2, batchWaitMs: 0 });
    try {
      const all = rows();
      g.shut();
      const first = score(url, { items: all.slice(0, 2) });
      await until(() => g.waiting === 1, "the first batch to run");
      const queued = [score(url, { items: all.slice(2, 4) }), score(url, { items: all.slice(4, 6) })];
      await until(() => app.tallrec.queue.queuedItems === 4, "4 queued prompts");
      const refused = await score(url, { items: all.slice(6, 7) });
      expect(refused.status).toBe(429);
      expect(Number(refused.headers.get("retry-after"))).toBeGreaterThanOrEqual(1);
      expect(refused.body.code).toBe("queue_full");
      expect(refused.body.message).toMatch(/^the queue is full \(4 of 4 items queued, 1 more requested\)/);
      // more prompts than the whole queue holds: no use retrying
      const never = await score(url, { items: all.slice(0, 5) });
      expect(never.status).toBe(413);
      expect(never.body.message).toBe("the request has 5 prompts but the queue holds at most 4");
      g.open();
      const done = await Promise.all([first, ...queued]);
      expect(done.map((r) => r.status)).toEqual([200, 200, 200]);
      expect(done.map((r) => r.body.results!.length)).toEqual([2, 2, 2]);
      const metrics = await (await fetch(`${url}/metrics`)).text();
      expect(metrics).toContain('tallrec_rejected_total{reason="queue_full"} 1');
      expect(metrics).toContain('tallrec_http_requests_total{method="POST",route="/v1/score",status_code="429"} 1');
    } finally {
      g.open();
      await app.close();
    }
  });

  it("drops the queued work of a client that disconnects", async () => {
    const g = gatedEngine();
    const { app, url } = await listen({ engine: g.engine, maxBatch: 4, batchWaitMs: 0 });
    try {
      const all = rows();
      g.shut();
      const first = score(url, { items: all.slice(0, 1) });
      await until(() => g.waiting === 1, "the first batch to run");
      const ac = new AbortController();
      const leaving = score(url, { items: all.slice(10, 13) }, ac.signal);
      await until(() => app.tallrec.queue.queuedItems === 3, "the second request to be queued");
      ac.abort();
      await expect(leaving).rejects.toThrow();
      await until(() => app.tallrec.queue.queuedItems === 0, "the queue to be freed");
      expect(app.tallrec.queue.cancelled).toBe(1);
      g.open();
      expect((await first).status).toBe(200);
      await engine.scheduler.idle();
      // the engine never saw the departed client's prompts
      expect(g.batches).toEqual([1]);
      const metrics = await (await fetch(`${url}/metrics`)).text();
      expect(metrics).toContain('tallrec_rejected_total{reason="disconnected"} 1');
    } finally {
      g.open();
      await app.close();
    }
  });

  it("answers 503 with Retry-After when a request's scores take longer than the timeout", async () => {
    const g = gatedEngine();
    const { app, url } = await listen({ engine: g.engine, timeoutMs: 300, batchWaitMs: 0 });
    try {
      g.shut();
      const t0 = performance.now();
      const res = await score(url, { items: rows().slice(0, 1) });
      const took = performance.now() - t0;
      expect(res.status).toBe(503);
      expect(res.body.code).toBe("timeout");
      expect(res.body.message).toBe("the request timed out after 300 ms (the server is overloaded); retry later");
      expect(Number(res.headers.get("retry-after"))).toBeGreaterThanOrEqual(1);
      expect(took).toBeGreaterThanOrEqual(250);
      expect(took).toBeLessThan(5000);
    } finally {
      g.open();
      await app.close();
    }
  });

  it("shuts down under load: answers every accepted request, then closes the engine", async () => {
    const g = gatedEngine();
    const { app, url } = await listen({ engine: g.engine, maxBatch: 8, batchWaitMs: 1 });
    const all = rows();
    g.shut();
    const requests = Array.from({ length: 30 }, (_, i) => score(url, { items: all.slice(2 * i, 2 * i + 2) }));
    const q = () => app.tallrec.queue;
    await until(() => g.waiting === 1 && q().queuedItems + q().runningItems === 60, "30 requests accepted (one batch running, the rest queued)");
    let idleAtClose: boolean | null = null;
    let answeredAtClose = -1;
    g.onClose = async () => {
      idleAtClose = q().queuedItems === 0 && q().runningItems === 0;
      const counts = (await app.tallrec.metrics.httpRequests.get()).values;
      answeredAtClose = counts.find((v) => v.labels.route === "/v1/score" && v.labels.status_code === "200")?.value ?? 0;
    };
    const closing = app.close();
    await tick(20);
    // a new request is refused while closing (the socket no longer accepts, or 503 on a kept-alive one)
    const late = await score(url, { items: all.slice(0, 1) }).then(
      (r) => r.status,
      () => "refused",
    );
    expect([503, "refused"]).toContain(late);
    expect(g.closes).toBe(0);
    g.open();
    const opened = performance.now();
    const answers = await Promise.all(requests);
    await closing;
    // kept-alive connections are closed after their response, not left to their keep-alive timeout
    expect(performance.now() - opened).toBeLessThan(10_000);
    expect(answers.map((r) => r.status)).toEqual(new Array(30).fill(200));
    answers.forEach((r, i) => {
      expect(r.body.results!.map((x) => x.id)).toEqual([0, 1]);
      expect(
        r.body.results!.every((x) => typeof x.pYes === "number"),
        `request ${i}`,
      ).toBe(true);
    });
    expect(g.batches.reduce((x, y) => x + y, 0)).toBe(60);
    expect(g.closes).toBe(1);
    expect(idleAtClose).toBe(true);
    expect(answeredAtClose).toBe(30); // the engine was closed after the last response
    expect(app.tallrec.status).toBe("stopping");
  });
});
