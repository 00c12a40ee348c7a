/**
 * Checks the float64 reference forward pass (test/reference/llama64.ts) against
 * llama.cpp itself, through node-llama-cpp's prebuilt CPU binaries, on the
 * generated tiny models, with and without LoRA adapters, on real TALLRec prompts.
 *
 * node-llama-cpp picks its prebuilt CPU library for the machine's instruction set at run time
 * (AVX2, AVX-512, ...), so this is a second build of llama.cpp checked on every machine. Bounds
 * per mode as in reference-native.test.ts: 1e-5 relative in the exact mode (F32 weights and KV
 * cache), the error model's K·σ where llama.cpp rounds to F16 (σ of a log-probability taken as
 * σ(logit) + σ(log-sum-exp), which ignores their correlation and so errs on the loose side).
 */
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { getLlama, LlamaLogLevel, type Llama, type LlamaModel, type Token } from "node-llama-cpp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadLlamaTokenizer } from "../src/synth/vocab.js";
import { cachedError, referenceBound } from "./reference/error-model.js";
import { loadReference, logSoftmax, type ReferenceAdapter, type ReferencePrecision } from "./reference/llama64.js";
import { hasRealTallrec, realTallrecRows, sampleRow, sampleRows } from "./helpers/data.js";

const root = fileURLToPath(new URL("..", import.meta.url));
const models = join(root, "models");
const TINY = join(models, "tiny.gguf");
const TINY_F16 = join(models, "tiny-f16.gguf");
const LORA_A = join(models, "tiny-lora-a.gguf");
const LORA_B = join(models, "tiny-lora-b.gguf");
const YES = 8241;
const NO = 3782;
/** The README's exact-mode promise (F32 weights, F32 KV cache). */
const EXACT = 1e-5;

interface Row {
  instruction: string;
  input: string;
  output: string;
}

/** TALLRec's prompt, byte for byte (see the facts file). */
function tallrecPrompt(r: Row): string {
  return (
    "Below is an instruction that describes a task, paired with an input that provides further context. " +
    "Write a response that appropriately completes the request.  # noqa: E501\n\n" +
    `### Instruction:\n${r.instruction}\n\n### Input:\n${r.input}\n\n### Response:\n`
  );
}

let llama: Llama;
const loaded = new Map<string, LlamaModel>();
let encode: (text: string) => number[];

async function model(path: string): Promise<LlamaModel> {
  let m = loaded.get(path);
  if (!m) {
    m = await llama.loadModel({ modelPath: path });
    loaded.set(path, m);
  }
  return m;
}

/** llama.cpp's next-token distribution after each prompt (one sequence, one thread, no flash attention). */
async function llamaCppNext(modelPath: string, adapters: readonly ReferenceAdapter[], prompts: number[][], kvType: "F32" | "F16"): Promise<Array<Map<number, number>>> {
  const m = await model(modelPath);
  const ctx = await m.createContext({
    contextSize: 1024,
    sequences: 1,
    flashAttention: false,
    // one thread: on a shared 2-core machine, llama.cpp's spinning worker threads are 100x slower under contention
    threads: 1,
    experimentalKvCacheKeyType: kvType,
    experimentalKvCacheValueType: kvType,
    lora: adapters.length ? { adapters: adapters.map((a) => ({ filePath: a.path, scale: a.scale })) } : undefined,
  });
  try {
    const seq = ctx.getSequence();
    const out: Array<Map<number, number>> = [];
    for (const ids of prompts) {
      await seq.clearHistory();
      const toks = ids as Token[];
      const res = await seq.controlledEvaluate([...toks.slice(0, -1), [toks[toks.length - 1], { generateNext: { probabilities: true } }]]);
      const probs = res[res.length - 1]?.next.probabilities;
      if (!probs) throw new Error("node-llama-cpp returned no probabilities");
      out.push(probs);
    }
    return out;
  } finally {
    await ctx.dispose();
  }
}

beforeAll(async () => {
  llama = await getLlama({ gpu: false, build: "never", logLevel: LlamaLogLevel.error, progressLogs: false });
  const tok = await loadLlamaTokenizer();
  encode = (text) => tok.encode(text, true, true);
});

afterAll(async () => {
  for (const m of loaded.values()) await m.dispose();
  await llama?.dispose();
});

describe("tokenization", () => {
  /** Tokenizes each row's prompt with llama.cpp and llama-tokenizer-js; returns how many were compared. */
  async function compareTokenization(rows: readonly Row[]): Promise<number> {
    const m = await model(TINY);
    expect(m.tokens.bos).toBe(1);
    expect(m.tokens.eos).toBe(2);
    let checked = 0;
    for (const r of rows) {
      const text = tallrecPrompt(r);
      const expected = encode(text);
      const got = [m.tokens.bos as number, ...m.tokenize(text, false).map(Number)];
      if (got.length !== expected.length || got.some((t, i) => t !== expected[i])) {
        expect.fail(`prompt tokenized differently:\n${text}\nllama.cpp: ${got.join(",")}\nllama-tokenizer-js: ${expected.join(",")}`);
      }
      checked++;
    }
    return checked;
  }

  it("the generated vocabulary tokenizes the sample's TALLRec prompts exactly like llama-tokenizer-js", async () => {
    const rows = [...sampleRows("movie"), ...sampleRows("book")];
    const checked = await compareTokenization(rows);
    expect(checked).toBe(rows.length);
    expect(checked).toBeGreaterThan(250);
  });

  it.skipIf(!hasRealTallrec)("the generated vocabulary tokenizes TALLRec prompts exactly like llama-tokenizer-js (real data)", async () => {
    const movie = realTallrecRows("movie", "test").filter((_, i) => i % 5 === 0);
    const book = realTallrecRows("book", "test").filter((_, i) => i % 10 === 0);
    const checked = await compareTokenization([...movie, ...book]);
    expect(checked).toBe(movie.length + book.length);
    expect(checked).toBeGreaterThan(250);
  });
});

describe("float64 reference vs llama.cpp", () => {
  const prompts = (): number[][] => [0, 137, 402, 777].map((i) => encode(tallrecPrompt(sampleRow("movie", i))));
  const configs: Array<{ name: string; model: string; adapters: ReferenceAdapter[]; kv: "F32" | "F16" }> = [
    { name: "tiny", model: TINY, adapters: [], kv: "F32" },
    { name: "tiny + lora-a@1", model: TINY, adapters: [{ path: LORA_A, scale: 1 }], kv: "F32" },
    { name: "tiny + lora-a@0.5", model: TINY, adapters: [{ path: LORA_A, scale: 0.5 }], kv: "F32" },
    { name: "tiny + lora-b@1", model: TINY, adapters: [{ path: LORA_B, scale: 1 }], kv: "F32" },
    { name: "tiny + lora-b@0.5", model: TINY, adapters: [{ path: LORA_B, scale: 0.5 }], kv: "F32" },
    {
      name: "tiny + lora-a@1 + lora-b@0.5",
      model: TINY,
      adapters: [
        { path: LORA_A, scale: 1 },
        { path: LORA_B, scale: 0.5 },
      ],
      kv: "F32",
    },
    { name: "tiny-f16", model: TINY_F16, adapters: [], kv: "F32" },
    { name: "tiny-f16 + lora-a@0.5", model: TINY_F16, adapters: [{ path: LORA_A, scale: 0.5 }], kv: "F32" },
    { name: "tiny-f16 + lora-b@1", model: TINY_F16, adapters: [{ path: LORA_B, scale: 1 }], kv: "F32" },
    // llama.cpp's default F16 KV cache: still within tolerance
    { name: "tiny, F16 KV cache", model: TINY, adapters: [], kv: "F16" },
    { name: "tiny + lora-a@1, F16 KV cache", model: TINY, adapters: [{ path: LORA_A, scale: 1 }], kv: "F16" },
  ];
  const yesMinusNo = new Map<string, number[]>();
  const summary: string[] = [];

  for (const cfg of configs) {
    // what llama.cpp rounds in this configuration, and whether it is the exact mode (README)
    const f16Model = cfg.model === TINY_F16;
    const precision: ReferencePrecision = { f16Activations: f16Model, f16Kv: cfg.kv === "F16", f32Rope: true };
    const exact = !f16Model && cfg.kv === "F32";
    const bound = (sigma: number, x: number) => (exact ? EXACT * Math.max(1, Math.abs(x)) : referenceBound(sigma, x));
    it(`${cfg.name}: Yes/No log-probabilities agree within ${exact ? "the exact mode's 1e-5·max(1,|x|)" : "the error model's bound"}`, async () => {
      const ps = prompts();
      const ref = loadReference(cfg.model, cfg.adapters, precision);
      const cpp = await llamaCppNext(cfg.model, cfg.adapters, ps, cfg.kv);
      let maxYesNo = 0;
      let maxDiff = 0;
      let maxFull = 0;
      const diffs: number[] = [];
      ps.forEach((ids, i) => {
        const logits = ref.forwardLastLogits(ids);
        const ls = logSoftmax(logits);
        const probs = cpp[i];
        const e = cachedError({ model: cfg.model, adapters: cfg.adapters, precision, tokens: ids, realizations: exact ? 0 : 8 });
        for (const [id, sigma] of [
          [YES, e.sigmaYes + e.sigmaLse],
          [NO, e.sigmaNo + e.sigmaLse],
        ]) {
          const got = Math.log(probs.get(id) ?? 0);
          const d = Math.abs(got - ls[id]);
          maxYesNo = Math.max(maxYesNo, d);
          expect(d, `${cfg.name} prompt ${i} token ${id}: llama.cpp ${got} reference ${ls[id]} σ ${sigma.toExponential(2)}`).toBeLessThanOrEqual(bound(sigma, ls[id]));
        }
        // the Yes−No logit difference (independent of the normalisation)
        const dRef = logits[YES] - logits[NO];
        const dCpp = Math.log(probs.get(YES)!) - Math.log(probs.get(NO)!);
        maxDiff = Math.max(maxDiff, Math.abs(dRef - dCpp));
        expect(Math.abs(dRef - dCpp)).toBeLessThanOrEqual(bound(e.sigmaYes + e.sigmaNo, dRef));
        diffs.push(dRef);
        // the whole distribution where it is not negligible, and the argmax
        let argRef = 0;
        for (let t = 1; t < logits.length; t++) if (logits[t] > logits[argRef]) argRef = t;
        expect(probs.keys().next().value).toBe(argRef);
        for (const [t, p] of probs) if (p > 1e-6) maxFull = Math.max(maxFull, Math.abs(Math.log(p) - ls[t]));
      });
      expect(maxFull).toBeLessThan(0.02);
      yesMinusNo.set(cfg.name, diffs);
      summary.push(`${cfg.name}: max |Δ log p(Yes|No)| ${maxYesNo.toExponential(2)}, max |Δ(yes−no)| ${maxDiff.toExponential(2)}, max |Δ log p| (p>1e-6) ${maxFull.toExponential(2)}`);
    });
  }

  it("adapters and their scales change the Yes−No logit difference measurably", () => {
    const base = yesMinusNo.get("tiny")!;
    for (const name of ["tiny + lora-a@1", "tiny + lora-a@0.5", "tiny + lora-b@1", "tiny + lora-b@0.5"]) {
      const d = yesMinusNo.get(name)!;
      expect(Math.max(...d.map((v, i) => Math.abs(v - base[i]))), name).toBeGreaterThan(0.1);
    }
    const half = yesMinusNo.get("tiny + lora-a@0.5")!;
    const full = yesMinusNo.get("tiny + lora-a@1")!;
    expect(Math.max(...half.map((v, i) => Math.abs(v - full[i])))).toBeGreaterThan(0.05);
    // and the prompts themselves matter: not all equal, not saturated
    expect(Math.max(...base) - Math.min(...base)).toBeGreaterThan(0.3);
    expect(Math.max(...base.map(Math.abs))).toBeLessThan(15);
    console.info(`reference vs llama.cpp:\n  ${summary.join("\n  ")}`);
  });
});
