/**
 * The KV layouts (EngineOptions.kvLayout): "streams" scores every prompt in a KV stream of its own
 * (a second context with kv_unified off, the call's common prefix decoded once and copied whole),
 * "auto" picks per call by the cost model. What must hold: the same scores as the float64 reference
 * (exact mode: F32 weights and KV, within 1e-5 relative, the README's promise), hence as the
 * unified layout; the header reused across calls; prompts longer than a stream scored unified.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { loadEngine } from "../src/cli/common.js";
import { Engine, type Score, type ScoreResult } from "../src/engine/engine.js";
import { promptText, renderPrompt } from "../src/engine/prompt.js";
import { samplePrompts, sampleRows } from "./helpers/data.js";
import { relDiff, testModels } from "./helpers/models.js";
import { cachedError } from "./reference/error-model.js";

const EXACT = 1e-5;

function ok(r: ScoreResult): Score {
  if (r.error !== undefined) throw new Error(`unexpected error: ${r.error}`);
  return r;
}

describe("KV layouts on the tiny model (exact mode)", () => {
  let paths: Awaited<ReturnType<typeof testModels>>;
  const engines: Record<"unified" | "streams" | "auto", Engine> = {} as never;
  beforeAll(async () => {
    paths = await testModels();
    for (const kvLayout of ["unified", "streams", "auto"] as const) {
      engines[kvLayout] = await Engine.load({
        model: paths.tiny,
        adapters: [{ name: "a", path: paths.loraA }],
        gpu: "cpu",
        contextSize: 2048,
        sequences: 32,
        streams: 4,
        kvType: "f32",
        kvLayout,
      });
    }
  });
  afterAll(async () => {
    for (const e of Object.values(engines)) await e?.close();
  });

  it("reports the layout and the streams' size", () => {
    expect(engines.streams.info.context).toMatchObject({ kvLayout: "streams", streams: 4, streamCells: 512 });
    expect(engines.unified.info.context.kvLayout).toBe("unified");
  });

  it("scores TALLRec prompts in their own streams as the float64 reference does, sharing on and off", async () => {
    const texts = samplePrompts("movie", 3).map(renderPrompt);
    for (const share of [true, false]) {
      const { results, stats } = await engines.streams.scoreWithStats(texts, { share });
      expect(stats.streamsPrompts).toBe(texts.length);
      results.map(ok).forEach((r, i) => {
        const ref = cachedError({ model: paths.tiny, adapters: [{ path: paths.loraA, scale: 1 }], precision: { f32Rope: true }, tokens: Array.from(engines.streams.tokenize(texts[i])), realizations: 0 });
        expect(Math.abs(r.logitYes - ref.yes), `prompt ${i} yes, share ${share}`).toBeLessThanOrEqual(EXACT * Math.max(1, Math.abs(ref.yes)));
        expect(Math.abs(r.logitNo - ref.no), `prompt ${i} no, share ${share}`).toBeLessThanOrEqual(EXACT * Math.max(1, Math.abs(ref.no)));
      });
    }
  });

  it("scores 40 prompts (rounds of 4 streams, padded suffixes) and a user's candidates as the unified layout does", async () => {
    const rows = samplePrompts("movie", 40);
    const user = { domain: "movie" as const, liked: ["Toy Story (1995)", "Heat (1995)", "Fargo (1996)"], disliked: ["Jumanji (1995)"] };
    const ranking = ["Casino (1995)", "Babe (1995)", "Se7en (1995)", "Twister (1996)", "Mars Attacks! (1996)", "Scream (1996)", "Heat (1995)"].map((target) => promptText({ ...user, target }));
    for (const set of [rows.map(renderPrompt), ranking]) {
      for (const share of [true, false]) {
        const u = (await engines.unified.score(set, { share })).map(ok);
        const { results, stats } = await engines.streams.scoreWithStats(set, { share });
        expect(stats.streamsPrompts).toBe(set.length);
        results.map(ok).forEach((s, i) => {
          expect(relDiff(s.logitYes, u[i].logitYes), `prompt ${i}, share ${share}`).toBeLessThan(EXACT);
          expect(relDiff(s.logitNo, u[i].logitNo), `prompt ${i}, share ${share}`).toBeLessThan(EXACT);
        });
      }
    }
  });

  it("keeps the call's common prefix resident in stream 0 for the next call", async () => {
    const rows = sampleRows("book").slice(0, 6);
    await engines.streams.score(rows);
    const again = await engines.streams.scoreWithStats(rows);
    expect(again.stats.streamsPrompts).toBe(rows.length);
    expect(again.stats.reusedTokens).toBeGreaterThan(20); // the template header
    expect(again.stats.decodedTokens).toBeLessThan(again.stats.promptTokens);
  });

  it("scores a prompt longer than a stream in the unified layout instead", async () => {
    const long = promptText({ domain: "movie", liked: Array.from({ length: 60 }, (_, i) => `A Movie Title Number ${i} (1995)`), disliked: [], target: "Heat (1995)" });
    const n = engines.streams.tokenize(long).length;
    expect(n).toBeGreaterThan(512);
    const { results, stats } = await engines.streams.scoreWithStats([long]);
    expect(stats.streamsPrompts).toBe(0);
    const u = ok((await engines.unified.score([long]))[0]);
    expect(relDiff(ok(results[0]).logitYes, u.logitYes)).toBeLessThan(EXACT);
  });

  it("auto: chooses per call, and either way scores as the unified layout does", async () => {
    const texts = samplePrompts("movie", 24).map(renderPrompt);
    const u = (await engines.unified.score(texts)).map(ok);
    const { results, stats } = await engines.auto.scoreWithStats(texts);
    expect([0, texts.length]).toContain(stats.streamsPrompts);
    results.map(ok).forEach((r, i) => expect(relDiff(r.logitYes, u[i].logitYes)).toBeLessThan(EXACT));
  });

  it("is set by the CLI's --kv-layout and --streams (auto when not given)", async () => {
    for (const [kvLayout, streams, want] of [
      ["streams", 2, { kvLayout: "streams", streams: 2, streamCells: 1024 }],
      [undefined, undefined, { kvLayout: "auto", streams: 8, streamCells: 256 }],
    ] as const) {
      const engine = await loadEngine({ gpu: "cpu", threads: 1, ctx: 2048, kvLayout, streams, quiet: true }, { model: paths.tiny, lora: [] });
      try {
        expect(engine.info.context).toMatchObject(want);
      } finally {
        await engine.close();
      }
    }
  });

  it("rejects a bad kvLayout or streams count", async () => {
    await expect(Engine.load({ model: paths.tiny, gpu: "cpu", kvLayout: "paged" as never })).rejects.toMatchObject({ code: "invalid_input", message: expect.stringContaining("kvLayout") });
    await expect(Engine.load({ model: paths.tiny, gpu: "cpu", streams: 0 })).rejects.toMatchObject({ code: "invalid_input", message: expect.stringContaining("streams") });
    await expect(Engine.load({ model: paths.tiny, gpu: "cpu", batchSize: 64, streams: 65 })).rejects.toMatchObject({ code: "invalid_input", message: expect.stringContaining("streams") });
  });
});
