import { describe, expect, it } from "vitest";

import { Scheduler, SchedulerClosedError, QueueFullError, type BatchInfo } from "../src/engine/scheduler.js";

interface Call {
  group: string;
  items: number[];
  at: number;
}

/** A runner that records its calls; results are item * 10. Optionally held until released. */
function recorder(options: { hold?: boolean } = {}) {
  const calls: Call[] = [];
  const releases: Array<() => void> = [];
  let running = 0;
  let maxRunning = 0;
  const run = async (group: string, items: number[]) => {
    calls.push({ group, items: [...items], at: performance.now() });
    running++;
    maxRunning = Math.max(maxRunning, running);
    if (options.hold) await new Promise<void>((r) => releases.push(r));
    else await new Promise((r) => setTimeout(r, 1));
    running--;
    return items.map((i) => i * 10);
  };
  return {
    calls,
    run,
    get maxRunning() {
      return maxRunning;
    },
    /** Lets the oldest held call finish. */
    release: () => releases.shift()?.(),
    held: () => releases.length,
  };
}

const tick = (ms = 0) => new Promise((r) => setTimeout(r, ms));
async function until(cond: () => boolean, ms = 2000): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > ms) throw new Error("condition not met in time");
    await tick(1);
  }
}
const range = (a: number, b: number) => Array.from({ length: b - a }, (_, i) => a + i);

describe("Scheduler", () => {
  it("merges concurrent jobs into one runner call and splits the results back in order", async () => {
    const r = recorder();
    const b = new Scheduler<number, number, string>({ run: r.run, maxBatch: 64, maxWaitMs: 20 });
    const jobs = [b.submit([1, 2], { group: "g" }), b.submit([3], { group: "g" }), b.submit([4, 5, 6], { group: "g" })];
    const out = await Promise.all(jobs);
    expect(r.calls).toHaveLength(1);
    expect(r.calls[0].items).toEqual([1, 2, 3, 4, 5, 6]);
    expect(out.map((o) => o.results)).toEqual([[10, 20], [30], [40, 50, 60]]);
    expect(out.every((o) => o.batches === 1)).toBe(true);
  });

  it("keeps groups apart: a batch holds one group's items only", async () => {
    const r = recorder();
    const b = new Scheduler<number, number, string>({ run: r.run, maxBatch: 64, maxWaitMs: 10 });
    const out = await Promise.all([b.submit([1], { group: "movie" }), b.submit([2], { group: "book" }), b.submit([3], { group: "movie" })]);
    expect(out.map((o) => o.results)).toEqual([[10], [20], [30]]);
    expect(r.calls.map((c) => [c.group, c.items])).toEqual([
      ["movie", [1, 3]],
      ["book", [2]],
    ]);
  });

  it("groups by groupKey, not object identity", async () => {
    const calls: Array<{ group: { adapter: string }; n: number }> = [];
    const b = new Scheduler<number, number, { adapter: string }>({
      run: async (group, items) => {
        calls.push({ group, n: items.length });
        return items;
      },
      maxWaitMs: 10,
    });
    await Promise.all([b.submit([1], { group: { adapter: "a" } }), b.submit([2], { group: { adapter: "a" } }), b.submit([3], { group: { adapter: "b" } })]);
    expect(calls.map((c) => [c.group.adapter, c.n])).toEqual([
      ["a", 2],
      ["b", 1],
    ]);
  });

  it("waits at most maxWaitMs for company, and not at all once maxBatch items are queued", async () => {
    const r = recorder();
    const slow = new Scheduler<number, number, string>({ run: r.run, maxBatch: 8, maxWaitMs: 40 });
    const t0 = performance.now();
    await slow.submit([1], { group: "g" });
    const waited = r.calls[0].at - t0;
    expect(waited).toBeGreaterThanOrEqual(35);
    expect(waited).toBeLessThan(1000);

    const r2 = recorder();
    const full = new Scheduler<number, number, string>({ run: r2.run, maxBatch: 4, maxWaitMs: 60_000 });
    const t1 = performance.now();
    const out = await full.submit([1, 2, 3, 4], { group: "g" });
    expect(out.results).toEqual([10, 20, 30, 40]);
    expect(r2.calls[0].at - t1).toBeLessThan(1000);
  });

  it("never calls the runner again before the previous call settled, and never exceeds maxBatch", async () => {
    const r = recorder();
    const b = new Scheduler<number, number, string>({ run: r.run, maxBatch: 5, maxWaitMs: 1 });
    const jobs = range(0, 40).map((i) => b.submit([i, i + 100], { group: "g" }));
    const out = await Promise.all(jobs);
    expect(out.map((o) => o.results)).toEqual(range(0, 40).map((i) => [i * 10, (i + 100) * 10]));
    expect(r.maxRunning).toBe(1);
    expect(Math.max(...r.calls.map((c) => c.items.length))).toBeLessThanOrEqual(5);
    expect(r.calls.reduce((s, c) => s + c.items.length, 0)).toBe(80);
    expect(b.stats).toMatchObject({ queuedItems: 0, runningItems: 0, itemsRun: 80 });
  });

  it("splits a large job across batches, in order", async () => {
    const r = recorder();
    const b = new Scheduler<number, number, string>({ run: r.run, maxBatch: 4, maxWaitMs: 0 });
    const out = await b.submit(range(0, 10), { group: "g" });
    expect(out.results).toEqual(range(0, 10).map((i) => i * 10));
    expect(out.batches).toBe(3);
    expect(r.calls.map((c) => c.items)).toEqual([range(0, 4), range(4, 8), range(8, 10)]);
  });

  it("is fair: a small job queued behind a large one waits for one of its batches, not all", async () => {
    const r = recorder({ hold: true });
    const b = new Scheduler<number, number, string>({ run: r.run, maxBatch: 4, maxWaitMs: 0 });
    const big = b.submit(range(100, 120), { group: "g" });
    await until(() => r.held() === 1); // the big job's first batch is running
    const small = b.submit([1], { group: "g" });
    let smallDone = false;
    void small.then(() => (smallDone = true));
    r.release();
    await until(() => r.held() === 1);
    // the second batch holds the small job's item and more of the big job
    expect(r.calls[1].items).toEqual([104, 105, 106, 1]);
    r.release();
    await until(() => smallDone);
    const pump = setInterval(() => r.release(), 1);
    const bigOut = await big;
    clearInterval(pump);
    expect(bigOut.batches).toBe(6); // 4 + 3 (sharing with the small job) + 4 + 4 + 4 + 1
    expect(bigOut.results).toEqual(range(100, 120).map((i) => i * 10));
    expect((await small).results).toEqual([10]);
  });

  it("shares a batch's room equally among the jobs of its group", async () => {
    const r = recorder();
    const b = new Scheduler<number, number, string>({ run: r.run, maxBatch: 6, maxWaitMs: 10 });
    // the second submit brings 8 items: a full batch starts at once, 3 slots each (FIFO would give 4 + 2)
    const out = await Promise.all([b.submit(range(0, 4), { group: "g" }), b.submit(range(10, 14), { group: "g" })]);
    expect(r.calls.map((c) => c.items)).toEqual([
      [0, 1, 2, 10, 11, 12],
      [3, 13],
    ]);
    expect(out.map((o) => o.results)).toEqual([
      [0, 10, 20, 30],
      [100, 110, 120, 130],
    ]);

    // three jobs, one needing less than its share: its spare slot goes to the others
    const r2 = recorder();
    const b2 = new Scheduler<number, number, string>({ run: r2.run, maxBatch: 7, maxWaitMs: 10 });
    await Promise.all([b2.submit(range(0, 3), { group: "g" }), b2.submit([10], { group: "g" }), b2.submit(range(20, 24), { group: "g" })]);
    expect(r2.calls[0].items).toEqual([0, 1, 2, 10, 20, 21, 22]);
  });

  it("keeps an atomic job in one runner call, waiting for a batch with room", async () => {
    const r = recorder();
    const b = new Scheduler<number, number, string>({ run: r.run, maxBatch: 4, maxWaitMs: 10 });
    const [x, y] = await Promise.all([b.submit([1, 2, 3], { group: "g" }), b.submit([4, 5, 6], { group: "g", atomic: true })]);
    expect(x.results).toEqual([10, 20, 30]);
    expect(y.results).toEqual([40, 50, 60]);
    expect(r.calls.map((c) => c.items)).toEqual([
      [1, 2, 3],
      [4, 5, 6],
    ]);
    await expect(b.submit([1, 2, 3, 4, 5], { group: "g", atomic: true })).rejects.toMatchObject({ code: "too_many_items" });
  });

  it("refuses work past maxQueue with QueueFullError and a Retry-After estimate, then recovers", async () => {
    const r = recorder({ hold: true });
    const b = new Scheduler<number, number, string>({ run: r.run, maxBatch: 2, maxWaitMs: 0, maxQueue: 5 });
    const first = b.submit([0, 0], { group: "g" });
    await until(() => r.held() === 1);
    const queued = [b.submit([1, 2, 3], { group: "g" }), b.submit([4, 5], { group: "g" })];
    expect(b.stats.queuedItems).toBe(5);
    const refused = await b.submit([6], { group: "g" }).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(QueueFullError);
    expect((refused as QueueFullError).retryAfterSeconds).toBeGreaterThanOrEqual(1);
    expect((refused as QueueFullError).retryAfterSeconds).toBeLessThanOrEqual(60);
    expect(b.stats.rejected).toBe(1);
    expect(b.stats.queuedItems).toBe(5); // the refused job took no room
    const done = Promise.all([first, ...queued]);
    const pump = setInterval(() => r.release(), 1);
    const out = await done;
    clearInterval(pump);
    expect(out.map((o) => o.results)).toEqual([
      [0, 0],
      [10, 20, 30],
      [40, 50],
    ]);
    expect(b.stats.queuedItems).toBe(0);
    // room again
    const again = b.submit([7], { group: "g" });
    await until(() => r.held() === 1);
    r.release();
    expect((await again).results).toEqual([70]);
  });

  it("cancels a queued job on abort: rejected at once, its items never run, its room freed", async () => {
    const r = recorder({ hold: true });
    const b = new Scheduler<number, number, string>({ run: r.run, maxBatch: 8, maxWaitMs: 0 });
    const first = b.submit([1], { group: "g" });
    await until(() => r.held() === 1);
    const ac = new AbortController();
    const doomed = b.submit([66, 77, 88], { group: "g", signal: ac.signal });
    const kept = b.submit([2], { group: "g" });
    expect(b.stats.queuedItems).toBe(4);
    ac.abort(new Error("client went away"));
    await expect(doomed).rejects.toThrow("client went away");
    expect(b.stats.queuedItems).toBe(1);
    expect(b.stats.cancelled).toBe(1);
    r.release();
    await until(() => r.held() === 1);
    r.release();
    expect((await first).results).toEqual([10]);
    expect((await kept).results).toEqual([20]);
    expect(r.calls.flatMap((c) => c.items)).toEqual([1, 2]);
    // already aborted: refused without queueing
    await expect(b.submit([1], { group: "g", signal: AbortSignal.abort(new Error("gone")) })).rejects.toThrow("gone");
  });

  it("rejects an aborted job whose items are running at once; the batch's other jobs still get results", async () => {
    const r = recorder({ hold: true });
    const b = new Scheduler<number, number, string>({ run: r.run, maxBatch: 8, maxWaitMs: 5 });
    const ac = new AbortController();
    const doomed = b.submit([1], { group: "g", signal: ac.signal });
    const other = b.submit([2], { group: "g" });
    await until(() => r.held() === 1);
    expect(r.calls[0].items).toEqual([1, 2]);
    ac.abort(new Error("bye"));
    await expect(doomed).rejects.toThrow("bye");
    r.release();
    expect((await other).results).toEqual([20]);
  });

  it("fails only the jobs of a failed batch, and checks the runner's result count", async () => {
    let n = 0;
    const b = new Scheduler<number, number, string>({
      run: async (group, items) => {
        n++;
        if (group === "bad") throw new Error("engine exploded");
        if (group === "short") return items.slice(1);
        return items;
      },
      maxWaitMs: 5,
    });
    const [bad, short, good] = await Promise.allSettled([b.submit([1], { group: "bad" }), b.submit([2, 3], { group: "short" }), b.submit([4], { group: "good" })]);
    expect(bad).toMatchObject({ status: "rejected", reason: { message: "engine exploded" } });
    expect(short.status).toBe("rejected");
    expect(String((short as PromiseRejectedResult).reason)).toContain("returned 1 results for 2 items");
    expect(good).toMatchObject({ status: "fulfilled", value: { results: [4] } });
    expect(n).toBe(3);
  });

  it("runs exclusive work between batches, never during one", async () => {
    const r = recorder({ hold: true });
    const b = new Scheduler<number, number, string>({ run: r.run, maxBatch: 8, maxWaitMs: 0 });
    const events: string[] = [];
    const first = b.submit([1], { group: "g" }).then(() => events.push("batch 1 done"));
    await until(() => r.held() === 1);
    const second = b.submit([2], { group: "g" }).then(() => events.push("batch 2 done"));
    const ex = b.exclusive(() => {
      events.push(`exclusive (running ${r.held()})`);
      return 42;
    });
    await tick(5);
    expect(events).toEqual([]);
    r.release();
    expect(await ex).toBe(42);
    await until(() => r.held() === 1);
    r.release();
    await Promise.all([first, second]);
    expect(events).toEqual(["batch 1 done", "exclusive (running 0)", "batch 2 done"]);
    await expect(b.exclusive(() => Promise.reject(new Error("nope")))).rejects.toThrow("nope");
  });

  it("after close refuses new jobs but finishes queued ones; idle() resolves when done", async () => {
    const r = recorder();
    const b = new Scheduler<number, number, string>({ run: r.run, maxBatch: 2, maxWaitMs: 0 });
    const queued = b.submit([1, 2, 3], { group: "g" });
    b.close();
    await expect(b.submit([4], { group: "g" })).rejects.toBeInstanceOf(SchedulerClosedError);
    await b.idle();
    expect(b.stats).toMatchObject({ queuedItems: 0, runningItems: 0 });
    expect((await queued).results).toEqual([10, 20, 30]);
  });

  it("reports each batch to onBatch, and validates its options", async () => {
    const seen: Array<BatchInfo<string>> = [];
    const b = new Scheduler<number, number, string>({ run: async (_g, items) => items, maxBatch: 3, maxWaitMs: 5, onBatch: (i) => seen.push(i) });
    await Promise.all([b.submit([1, 2], { group: "g" }), b.submit([3, 4], { group: "g" })]);
    expect(seen.map((s) => [s.group, s.items, s.jobs])).toEqual([
      ["g", 3, 2],
      ["g", 1, 1],
    ]);
    expect(seen.every((s) => s.runMs >= 0 && s.error === undefined)).toBe(true);
    await expect(b.submit([], { group: "g" })).rejects.toMatchObject({ code: "empty" });
    expect(() => new Scheduler({ run: async () => [], maxBatch: 0 })).toThrow(/maxBatch/);
    expect(() => new Scheduler({ run: async () => [], maxWaitMs: -1 })).toThrow(/maxWaitMs/);
  });

  it("takes new bounds with configure() from the next batch, and refuses bad ones with invalid_input", async () => {
    const r = recorder();
    const b = new Scheduler<number, number, string>({ run: r.run, maxBatch: 2, maxWaitMs: 0 });
    await b.submit([1, 2, 3], { group: "g" });
    b.configure({ maxBatch: 5, maxQueue: 6 });
    await b.submit([4, 5, 6, 7, 8], { group: "g" });
    expect(r.calls.map((c) => c.items.length)).toEqual([2, 1, 5]);
    await expect(b.submit([1, 2, 3, 4, 5, 6, 7], { group: "g" })).rejects.toMatchObject({ code: "queue_full" });
    expect(() => b.configure({ maxBatch: 0 })).toThrow(expect.objectContaining({ code: "invalid_input" }));
    expect(b.maxBatch).toBe(5); // a refused configure changes nothing
  });

  it("wraps every runner call in its interceptors (last added outermost) until they are removed", async () => {
    const r = recorder();
    const b = new Scheduler<number, number, string>({ run: r.run, maxBatch: 8, maxWaitMs: 0 });
    const trace: string[] = [];
    const removeA = b.intercept(async (_g, items, next) => {
      trace.push(`a ${items.length}`);
      return next();
    });
    const removeB = b.intercept(async (_g, items, next) => {
      trace.push(`b ${items.length}`);
      const out = await next();
      return out.map((x) => x + 1);
    });
    expect((await b.submit([1, 2], { group: "g" })).results).toEqual([11, 21]);
    removeB();
    expect((await b.submit([3], { group: "g" })).results).toEqual([30]);
    removeA();
    await b.submit([4], { group: "g" });
    expect(trace).toEqual(["b 2", "a 2", "a 1"]);
    const seen: number[] = [];
    const removeL = b.addBatchListener((info) => seen.push(info.items));
    await b.submit([5, 6], { group: "g" });
    removeL();
    await b.submit([7], { group: "g" });
    expect(seen).toEqual([2]);
  });

  it("aborts a running batch's signal only when every job in it was cancelled", async () => {
    const signals: AbortSignal[] = [];
    const releases: Array<() => void> = [];
    const b = new Scheduler<number, number, string>({
      run: async (_g, items, signal) => {
        signals.push(signal);
        await new Promise<void>((r) => releases.push(r));
        return items;
      },
      maxBatch: 8,
      maxWaitMs: 5,
    });
    const a1 = new AbortController();
    const a2 = new AbortController();
    const j1 = b.submit([1], { group: "g", signal: a1.signal });
    const j2 = b.submit([2], { group: "g", signal: a2.signal });
    await until(() => signals.length === 1);
    a1.abort(new Error("first gone"));
    await expect(j1).rejects.toThrow("first gone");
    await tick(1);
    expect(signals[0].aborted).toBe(false); // the second job still wants the batch
    a2.abort(new Error("second gone"));
    await expect(j2).rejects.toThrow("second gone");
    await tick(1);
    expect(signals[0].aborted).toBe(true);
    expect(signals[0].reason).toMatchObject({ code: "aborted" });
    releases.shift()!();
    await b.idle();
  });
});
