/**
 * The thread governor (native/src/threads.cpp): each decode runs on as many of the configured
 * threads as other processes leave cores free. Checked with real competing processes (busy loops
 * on every core this process may use), and for what must not change: a score does not depend on
 * how many threads computed it.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { availableParallelism, platform } from "node:os";

import { afterEach, beforeAll, describe, expect, it } from "vitest";

import { loadEngine } from "../src/cli/common.js";
import { Engine } from "../src/engine/engine.js";
import { renderPrompt } from "../src/engine/prompt.js";
import { samplePrompts } from "./helpers/data.js";
import { testModels } from "./helpers/models.js";

const cores = availableParallelism();
const maxThreads = Math.min(cores, 4);
const canAdapt = platform() === "linux" && cores >= 2;
const why = platform() !== "linux" ? "the governor reads /proc/stat (Linux only)" : "one core: no fewer threads to choose";

let hogs: ChildProcess[] = [];
function startHogs(n: number): void {
  hogs = Array.from({ length: n }, () => spawn(process.execPath, ["-e", "for (;;) {}"], { stdio: "ignore" }));
}
function stopHogs(): void {
  for (const h of hogs) h.kill("SIGKILL");
  hogs = [];
}
afterEach(stopHogs);

/** Scores the prompts again and again until `done(info)` holds or `ms` pass; returns the last info. */
async function scoreUntil(engine: Engine, prompts: string[], done: (c: Engine["info"]["context"]) => boolean, ms: number) {
  const end = Date.now() + ms;
  let c = engine.info.context;
  while (Date.now() < end) {
    await engine.score(prompts);
    c = engine.info.context;
    if (done(c)) break;
  }
  return c;
}

describe("thread count", () => {
  let model: string;
  let prompts: string[];
  beforeAll(async () => {
    model = (await testModels()).tiny;
    prompts = samplePrompts("movie", 8).map(renderPrompt);
  });

  it("does not change a score: 1 thread and several give the same bits", async () => {
    const values: number[][] = [];
    for (const threads of [1, Math.max(2, maxThreads)]) {
      const engine = await Engine.load({ model, gpu: "cpu", threads, adaptThreads: false, contextSize: 2048 });
      try {
        const r = await engine.score(prompts, { share: false });
        values.push(r.flatMap((x) => (x.error === undefined ? [x.logitYes, x.logitNo] : [NaN])));
        expect(engine.info.context.threadsNow).toBe(threads);
      } finally {
        await engine.close();
      }
    }
    expect(values[1]).toEqual(values[0]);
  });

  it.skipIf(!canAdapt)(`follows the cores other processes leave free${canAdapt ? "" : ` (skipped: ${why})`}`, { timeout: 60_000 }, async () => {
    const engine = await Engine.load({ model, gpu: "cpu", threads: maxThreads, contextSize: 2048 });
    const fixed = await Engine.load({ model, gpu: "cpu", threads: maxThreads, adaptThreads: false, contextSize: 2048 });
    try {
      expect(engine.info.context).toMatchObject({ adaptThreads: true, threads: maxThreads, threadsNow: maxThreads });
      // a first estimate of the other processes' load (whatever it is on this machine)
      let c = await scoreUntil(engine, prompts, (x) => x.otherCores >= 0, 5_000);
      expect(c.otherCores).toBeGreaterThanOrEqual(0);
      // a busy loop on every core: other processes now hold most of them
      startHogs(cores);
      c = await scoreUntil(engine, prompts, (x) => x.threadsNow < maxThreads, 15_000);
      expect(c.otherCores).toBeGreaterThan(0.5);
      expect(c.threadsNow).toBeLessThan(maxThreads);
      // with adaptThreads off, the same load changes nothing
      const f = await scoreUntil(fixed, prompts, () => false, 1_000);
      expect(f).toMatchObject({ adaptThreads: false, threadsNow: maxThreads, otherCores: -1 });
      // the load goes away: back to every thread
      stopHogs();
      c = await scoreUntil(engine, prompts, (x) => x.threadsNow === maxThreads, 15_000);
      expect(c.threadsNow).toBe(maxThreads);
    } finally {
      await engine.close();
      await fixed.close();
    }
  });

  it("is fixed by the CLI's --fixed-threads, adaptive without it", async () => {
    for (const fixedThreads of [true, undefined]) {
      const engine = await loadEngine({ gpu: "cpu", threads: 2, fixedThreads, quiet: true }, { model, lora: [] });
      try {
        expect(engine.info.context.adaptThreads).toBe(fixedThreads ? false : platform() === "linux");
      } finally {
        await engine.close();
      }
    }
  });

  it("rejects an adaptThreads that is not a boolean", async () => {
    await expect(Engine.load({ model, gpu: "cpu", adaptThreads: "yes" as unknown as boolean })).rejects.toMatchObject({ code: "invalid_input", message: expect.stringContaining("adaptThreads") });
  });
});
