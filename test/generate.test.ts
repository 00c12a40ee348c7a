import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { Engine } from "../src/engine/engine.js";
import { renderPrompt } from "../src/engine/prompt.js";
import { testModels } from "./helpers/models.js";
import { loadReference } from "./reference/llama64.js";

let engine: Engine;
let m: Awaited<ReturnType<typeof testModels>>;

beforeAll(async () => {
  m = await testModels();
  engine = await Engine.load({ model: m.tiny, adapters: [{ name: "a", path: m.loraA }], gpu: "cpu" });
});
afterAll(async () => engine?.close());

describe("generation", () => {
  it("greedy decoding picks the float64 reference's argmax token, and is reproducible", async () => {
    const prompt = renderPrompt({ instruction: "Name a movie.", input: "" });
    const ref = loadReference(m.tiny);
    const row = ref.forwardLastLogits(Array.from(engine.tokenize(prompt)));
    let best = 0;
    for (let i = 1; i < row.length; i++) if (row[i] > row[best]) best = i;
    const a = await engine.generate(prompt, { temperature: 0, maxTokens: 1, repeatPenalty: 1 });
    expect(a.tokens).toBe(1);
    expect(a.text).toBe(engine.detokenize([best]));
    const b = await engine.generate(prompt, { temperature: 0, maxTokens: 12, repeatPenalty: 1 });
    const c = await engine.generate(prompt, { temperature: 0, maxTokens: 12, repeatPenalty: 1 });
    expect(b.text).toBe(c.text);
    expect(b.text.startsWith(a.text)).toBe(true);
  });

  it("streams the text before the answer is complete; the pieces make the whole text", async () => {
    const events: Array<{ t: number; piece: string }> = [];
    let done = 0;
    const p = engine.generate([{ role: "user", content: "Why would someone like Heat (1995)?" }], {
      maxTokens: 24,
      seed: 3,
      onText: (piece) => events.push({ t: performance.now(), piece }),
    });
    const r = await p.then((x) => ((done = performance.now()), x));
    expect(events.length).toBeGreaterThan(3);
    expect(events[0].t).toBeLessThan(done);
    expect(events.map((e) => e.piece).join("")).toBe(r.text);
    expect(r.stopReason === "length" || r.stopReason === "eos" || r.stopReason === "stop").toBe(true);
  });

  it("seeds make sampling reproducible, and different seeds differ", async () => {
    const opts = { maxTokens: 16, temperature: 1.2, topK: 0, topP: 1, minP: 0 };
    const a = await engine.generate("Once upon a time", { ...opts, seed: 7 });
    const b = await engine.generate("Once upon a time", { ...opts, seed: 7 });
    const c = await engine.generate("Once upon a time", { ...opts, seed: 8 });
    expect(a.text).toBe(b.text);
    expect(c.text).not.toBe(a.text);
  });

  it("stops before a stop string, also one that spans tokens, and never streams any of it", async () => {
    const free = await engine.generate("Once upon a time", { maxTokens: 30, temperature: 0, repeatPenalty: 1 });
    // a stop string made of the end of one generated piece and the start of the next
    const cut = Math.floor(free.text.length / 2);
    const stop = free.text.slice(cut - 2, cut + 2);
    let streamed = "";
    const r = await engine.generate("Once upon a time", { maxTokens: 30, temperature: 0, repeatPenalty: 1, stop: [stop], onText: (s) => (streamed += s) });
    expect(r.stopReason).toBe("stop");
    expect(r.text).toBe(free.text.slice(0, free.text.indexOf(stop)));
    expect(streamed).toBe(r.text);
  });

  it("honours maxTokens and abort, and rejects bad options", async () => {
    const r = await engine.generate("Hello", { maxTokens: 5, temperature: 0 });
    expect(r.tokens).toBeLessThanOrEqual(5);
    const ac = new AbortController();
    const aborted = await engine.generate("Hello", { maxTokens: 2000, onText: () => ac.abort(), signal: ac.signal });
    expect(aborted.stopReason).toBe("abort");
    expect(aborted.tokens).toBeLessThan(2000);
    await expect(engine.generate("Hello", { maxTokens: -1 })).rejects.toThrow(/maxTokens must be an integer >= 0/);
    await expect(engine.generate([{ role: "robot" as never, content: "x" }])).rejects.toThrow(/role must be/);
  });

  it("formats a conversation with TALLRec's Alpaca layout when the GGUF has no chat template", async () => {
    // the tiny model has no template: the fallback's markers end generation, and the prompt is
    // exactly the layout (checked through its token count)
    const msgs = [
      { role: "system" as const, content: "You recommend movies." },
      { role: "user" as const, content: "Something like Fargo?" },
    ];
    const r = await engine.generate(msgs, { maxTokens: 1, temperature: 0 });
    expect(r.promptTokens).toBe(engine.tokenize("You recommend movies.\n\n### Instruction:\nSomething like Fargo?\n\n### Response:\n").length);
  });

  it("does not disturb scoring: scores before and after generation are identical", async () => {
    const row = { instruction: "Q?", input: 'User Preference: "Heat (1995)"' };
    const before = await engine.score([row]);
    await engine.generate("Hello", { maxTokens: 8 });
    const after = await engine.score([row]);
    expect(after).toEqual(before);
  });
});

describe("embeddings", () => {
  it("are normalized, deterministic, and do not depend on what they are batched with", async () => {
    const texts = ["Heat (1995): a crime thriller", "Toy Story (1995): animation for children", "Fargo (1996): dark comedy"];
    const together = await engine.embed(texts);
    expect(together).toHaveLength(3);
    for (const v of together) {
      expect(v.length).toBe(64);
      expect(Math.abs(v.reduce((s, x) => s + x * x, 0) - 1)).toBeLessThan(1e-5);
    }
    const alone = await engine.embed([texts[1]]);
    for (let i = 0; i < 64; i++) expect(Math.abs(alone[0][i] - together[1][i])).toBeLessThan(1e-4);
    const cos = (a: Float32Array, b: Float32Array) => a.reduce((s, x, i) => s + x * b[i], 0);
    expect(cos(together[0], together[0])).toBeCloseTo(1, 5);
    expect(cos(together[0], together[1])).toBeLessThan(0.9999);
    expect(await engine.embed([])).toEqual([]);
  });
});
