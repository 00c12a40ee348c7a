/**
 * The native scorer against an independent float64 forward pass written in TypeScript
 * (test/reference/llama64.ts, reading the GGUF with tallrec's own reader): the two answer logits
 * and the full-row log-sum-exp, with and without adapters, at scales 0, 0.5 and 1, on F32 and F16
 * models with grouped-query attention and non-unit norms.
 *
 * The bounds, per mode (the README's table):
 * - exact mode (F32 weights, `kvType: "f32"`): llama.cpp computes in float32 throughout, so it
 *   agrees with float math to float32 noise: within 1e-5 × max(1, |x|), the README's promise.
 *   (The reference computes RoPE angles in float32 as ggml does, `f32Rope`: ggml's angle at
 *   position p is off by up to p·2^-24 rad, which alone moved logits by up to 6e-5.)
 * - F16 KV cache and/or F16 weights: llama.cpp rounds to half precision at known places (K, V,
 *   Q·K's Q, the attention probabilities; every input of a product with an F16 weight), which the
 *   reference reproduces. What it cannot reproduce is which way a float32 value that llama.cpp
 *   computed in another order (vector width, batch shape) rounds when it lies within float32 noise
 *   of an F16 rounding boundary: one F16 ulp here and there, which this deliberately sensitive
 *   model amplifies. The bound is K·σ from the error model (test/reference/error-model.ts): σ is
 *   measured per prompt on the reference by perturbing every float32 result by its rounding noise.
 * The bounds are checked to be tight enough to see a wrong adapter scale.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { Engine, type Score } from "../src/engine/engine.js";
import { renderPrompt } from "../src/engine/prompt.js";
import { sampleRows } from "./helpers/data.js";
import { relDiff, testModels } from "./helpers/models.js";
import { cachedError, referenceBound } from "./reference/error-model.js";
import { type ReferenceAdapter, type ReferencePrecision } from "./reference/llama64.js";

/** The README's exact-mode promise: F32 weights, F32 KV cache. */
const EXACT = 1e-5;

const configs: Array<{ label: string; which: "tiny" | "tinyF16"; kvType: "f16" | "f32"; precision: ReferencePrecision; exact: boolean }> = [
  { label: "F32 model, F32 KV cache (exact mode)", which: "tiny", kvType: "f32", precision: { f32Rope: true }, exact: true },
  { label: "F32 model, F16 KV cache (default)", which: "tiny", kvType: "f16", precision: { f16Kv: true, f32Rope: true }, exact: false },
  { label: "F16 model, F32 KV cache", which: "tinyF16", kvType: "f32", precision: { f16Activations: true, f32Rope: true }, exact: false },
  { label: "F16 model, F16 KV cache", which: "tinyF16", kvType: "f16", precision: { f16Kv: true, f16Activations: true, f32Rope: true }, exact: false },
];

const summary: string[] = [];
afterAll(() => console.info(`native vs float64 reference (worst per configuration):\n  ${summary.join("\n  ")}`));

describe.each(configs)("native scores equal the float64 reference: $label", ({ label, which, kvType, precision, exact }) => {
  let engine: Engine;
  let paths: Awaited<ReturnType<typeof testModels>>;
  beforeAll(async () => {
    paths = await testModels();
    engine = await Engine.load({
      model: paths[which],
      adapters: [
        { name: "a", path: paths.loraA },
        { name: "b", path: paths.loraB },
      ],
      defaultAdapter: null,
      gpu: "cpu",
      contextSize: 1024,
      kvType,
    });
  });
  afterAll(async () => engine?.close());

  // a movie and a book prompt (the book one is longer and has mojibake bytes), plus a short one
  const prompts = () => [renderPrompt(sampleRows("movie")[7]), renderPrompt(sampleRows("book")[11]), renderPrompt({ instruction: "Is it?", input: "" })];

  const cases: Array<{ label: string; adapters: Array<{ name: "a" | "b"; scale: number }> }> = [
    { label: "base model", adapters: [] },
    { label: "adapter a (q,v) scale 1", adapters: [{ name: "a", scale: 1 }] },
    { label: "adapter a scale 0.5", adapters: [{ name: "a", scale: 0.5 }] },
    { label: "adapter a scale 0", adapters: [{ name: "a", scale: 0 }] },
    { label: "adapter b (all seven projections) scale 1", adapters: [{ name: "b", scale: 1 }] },
    {
      label: "adapters a 0.5 + b 1",
      adapters: [
        { name: "a", scale: 0.5 },
        { name: "b", scale: 1 },
      ],
    },
  ];

  let worst = 0;
  let largest = 0;
  afterAll(() => summary.push(`${label}: largest |Δ|/max(1,|x|) ${largest.toExponential(2)}, ${(worst * 100).toFixed(0)}% of the bound`));

  /** The bound for value x with model σ: the exact-mode promise, or K·σ from the error model. */
  const bound = (sigma: number, x: number) => (exact ? EXACT * Math.max(1, Math.abs(x)) : referenceBound(sigma, x));
  const refAdapters = (adapters: ReadonlyArray<{ name: "a" | "b"; scale: number }>): ReferenceAdapter[] => adapters.map((a) => ({ path: a.name === "a" ? paths.loraA : paths.loraB, scale: a.scale }));

  it.each(cases)("$label", async ({ adapters }) => {
    const texts = prompts();
    const got = (await engine.score(texts, { adapter: adapters, scoring: "tallrec-compat" })) as Score[];
    texts.forEach((text, i) => {
      const tokens = Array.from(engine.tokenize(text));
      // exact mode needs no σ (its bound is the promise); the others measure it on the reference
      const e = cachedError({ model: paths[which], adapters: refAdapters(adapters), precision, tokens, realizations: exact ? 0 : 8 });
      expect(got[i].error).toBeUndefined();
      const checks: Array<[string, number, number, number]> = [
        ["yes", got[i].logitYes, e.yes, e.sigmaYes],
        ["no", got[i].logitNo, e.no, e.sigmaNo],
        ["lse", got[i].logSumExp!, e.lse, e.sigmaLse],
      ];
      for (const [what, value, want, sigma] of checks) {
        const b = bound(sigma, want);
        worst = Math.max(worst, Math.abs(value - want) / b);
        largest = Math.max(largest, relDiff(value, want));
        expect(Math.abs(value - want), `${what}, prompt ${i}: native ${value}, reference ${want}, σ ${sigma.toExponential(2)}`).toBeLessThanOrEqual(b);
      }
    });
  });

  it("the bounds are tight enough to see an adapter applied at 0.8 instead of 1", async () => {
    const texts = prompts();
    const got = (await engine.score(texts, { adapter: [{ name: "a", scale: 1 }] })) as Score[];
    let seen = 0;
    texts.forEach((text, i) => {
      const tokens = Array.from(engine.tokenize(text));
      const right = cachedError({ model: paths[which], adapters: refAdapters([{ name: "a", scale: 1 }]), precision, tokens, realizations: exact ? 0 : 8 });
      const wrong = cachedError({ model: paths[which], adapters: refAdapters([{ name: "a", scale: 0.8 }]), precision, tokens, realizations: 0 });
      const dy = Math.abs(got[i].logitYes - wrong.yes) / bound(right.sigmaYes, wrong.yes);
      const dn = Math.abs(got[i].logitNo - wrong.no) / bound(right.sigmaNo, wrong.no);
      seen = Math.max(seen, dy, dn);
    });
    expect(seen, "a 20% error in the adapter's scale stays inside the bound").toBeGreaterThan(1);
  });

  it("scale 0 gives exactly the base model's scores, and adapters move them", async () => {
    const texts = prompts();
    const base = (await engine.score(texts, { adapter: null })) as Score[];
    const zero = (await engine.score(texts, { adapter: [{ name: "a", scale: 0 }] })) as Score[];
    const one = (await engine.score(texts, { adapter: [{ name: "a", scale: 1 }] })) as Score[];
    texts.forEach((_, i) => {
      expect(relDiff(zero[i].logitYes, base[i].logitYes)).toBeLessThan(1e-5);
      expect(Math.abs(one[i].logitYes - base[i].logitYes) + Math.abs(one[i].logitNo - base[i].logitNo)).toBeGreaterThan(1e-2);
    });
  });
});
