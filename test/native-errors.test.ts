/**
 * Issue 12 (typed errors end to end), the native layer: every error the addon throws or rejects
 * with carries a `code` from src/errors.ts (set in C++: native/src/common.h, log.h), so
 * `codeOf(err)` reads it without matching messages. Each code the addon sets is triggered here
 * through the real addon, and the messages are the ones it gave before codes existed.
 */
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { codeOf, isErrorCode, type ErrorCode } from "../src/errors.js";
import { NATIVE_ERROR_CODES, loadBinding, type NativeBinding, type NativeContext, type NativeModel } from "../src/engine/native.js";
import { repoRoot } from "./helpers/data.js";
import { testModels } from "./helpers/models.js";
import { onePromptPlan } from "./helpers/plans.js";

let b: NativeBinding;
let m: Awaited<ReturnType<typeof testModels>>;
let model: NativeModel;
let ctx: NativeContext;
let dir: string;

beforeAll(async () => {
  m = await testModels();
  b = loadBinding("cpu").binding;
  model = await b.Model.load(m.tiny);
  ctx = await b.Context.create(model, { nCtx: 256, nBatch: 256, nUbatch: 256, nSeqMax: 4, threads: 1, threadsBatch: 1, poll: 0 });
  dir = mkdtempSync(join(tmpdir(), "tallrec-native-errors-"));
});
afterAll(() => {
  ctx?.dispose();
  model?.dispose();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** The error `fn` throws synchronously or its promise rejects with. */
async function caught(fn: () => unknown): Promise<Error & { code?: unknown }> {
  try {
    await fn();
  } catch (err) {
    return err as Error & { code?: unknown };
  }
  throw new Error("expected an error");
}

async function expectCode(fn: () => unknown, code: ErrorCode, message: string | RegExp, name = "Error"): Promise<Error> {
  const err = await caught(fn);
  expect(err.message).toEqual(typeof message === "string" ? message : expect.stringMatching(message));
  expect(err.code).toBe(code);
  expect(codeOf(err)).toBe(code);
  expect(err.name).toBe(name);
  expect(err).toBeInstanceOf(Error);
  return err;
}

describe("the codes the addon sets", () => {
  it("are the ones native.ts documents, and every one is in ERROR_CODES", () => {
    const header = readFileSync(join(repoRoot, "native", "src", "log.h"), "utf8");
    const block = header.slice(header.indexOf("namespace codes {"), header.indexOf("}  // namespace codes"));
    const inHeader = [...block.matchAll(/=\s*"([a-z_]+)"/g)].map((x) => x[1]);
    expect([...inHeader].sort()).toEqual([...NATIVE_ERROR_CODES].sort());
    for (const c of inHeader) expect(isErrorCode(c), c).toBe(true);
  });

  it("every error the C++ sources raise goes through a coded helper (no bare Napi::Error::New or std::runtime_error)", () => {
    const src = join(repoRoot, "native", "src");
    for (const f of readdirSync(src).filter((n) => n.endsWith(".cpp"))) {
      const text = readFileSync(join(src, f), "utf8");
      expect(text, f).not.toMatch(/Napi::(Type|Range)?Error::New\(/);
      expect(text, f).not.toMatch(/throw std::runtime_error\(/);
      expect(text, f).not.toMatch(/\bSetError\(/);
    }
  });
});

describe("invalid_input: arguments of the wrong type or range", () => {
  it("type checks throw a TypeError with code invalid_input", async () => {
    await expectCode(() => b.Model.load(42 as unknown as string), "invalid_input", "path must be a string", "TypeError");
    await expectCode(() => model.tokenize(5 as unknown as string), "invalid_input", "text must be a string", "TypeError");
    await expectCode(() => b.Context.create(model, { flashAttn: "maybe" as "on" }), "invalid_input", 'flashAttn must be "off", "on" or "auto"', "TypeError");
    await expectCode(() => b.Context.create({} as NativeModel), "invalid_input", "model must be a Model", "TypeError");
    await expectCode(() => ctx.run({ ...onePromptPlan(4, [0, 0, 4]), tokens: [1, 2, 3, 4] as unknown as Int32Array }), "invalid_input", "tokens must be an Int32Array", "TypeError");
  });

  it("range checks throw a RangeError with code invalid_input", async () => {
    await expectCode(() => b.Context.create(model, { nCtx: 8 }), "invalid_input", "nCtx must be at least 16", "RangeError");
    await expectCode(() => model.detokenize(Int32Array.of(-1)), "invalid_input", /^token id -1 at index 0 is outside the vocabulary \(0\.\.\d+\)$/, "RangeError");
    await expectCode(() => ctx.run(onePromptPlan(300, [0, 0, 300])), "invalid_input", "decode step of 300 tokens exceeds nBatch 256", "RangeError");
    // a KV copy between two different sequences of the context, never one onto itself or out of range (llama.cpp asserts)
    await expectCode(() => ctx.run(onePromptPlan(4, [3, 0, 0, 0, 0, 4])), "invalid_input", "copy step needs two different sequence ids in 0..3", "RangeError");
    await expectCode(() => ctx.run(onePromptPlan(4, [3, 0, 4, 0, 0, 4])), "invalid_input", "copy step needs two different sequence ids in 0..3", "RangeError");
    await expectCode(() => b.quantize(m.tiny, join(dir, "q.gguf"), "Q9"), "invalid_input", "unknown quantization type Q9", "RangeError");
  });

  it("embed() on a context not created for embeddings", async () => {
    await expectCode(() => ctx.embed([Int32Array.of(1, 2)]), "invalid_input", "this context was not created for embeddings");
  });
});

describe("empty: an empty prompt or text", () => {
  it("generate() with no prompt tokens, embed() of an empty text", async () => {
    await expectCode(() => ctx.generate({ tokens: new Int32Array(0) }), "empty", "the prompt is empty", "RangeError");
    const emb = await b.Context.create(model, { nCtx: 64, nBatch: 64, nSeqMax: 2, embeddings: true, threads: 1 });
    try {
      await expectCode(() => emb.embed([Int32Array.of(1, 2), new Int32Array(0)]), "empty", "texts[1] is empty", "RangeError");
      expect((await emb.embed([Int32Array.of(1, 2)])).length).toBeGreaterThan(0);
    } finally {
      emb.dispose();
    }
  });
});

describe("not_found and invalid_file: files llama.cpp cannot load", () => {
  it("a missing model, adapter or quantizer input is not_found", async () => {
    const missing = join(dir, "missing.gguf");
    await expectCode(() => b.Model.load(missing), "not_found", `${missing}: cannot open model file (No such file or directory)`);
    await expectCode(() => b.Lora.load(model, missing), "not_found", `${missing}: cannot open LoRA adapter (No such file or directory)`);
    await expectCode(() => b.quantize(missing, join(dir, "q.gguf"), "Q8_0"), "not_found", new RegExp(`^${missing.replace(/[.\\/]/g, "\\$&")}: quantization to Q8_0 failed`));
  });

  it("a file that is not GGUF, a truncated model and a model given as an adapter are invalid_file", async () => {
    const bad = join(dir, "bad.gguf");
    writeFileSync(bad, "NOPE, not a model");
    await expectCode(() => b.Model.load(bad), "invalid_file", `${bad}: not a GGUF file (bad magic)`);
    await expectCode(() => b.Lora.load(model, bad), "invalid_file", `${bad}: not a GGUF file (bad magic)`);

    const truncated = join(dir, "truncated.gguf");
    writeFileSync(truncated, readFileSync(m.tiny).subarray(0, 4096));
    await expectCode(() => b.Model.load(truncated), "invalid_file", new RegExp(`^${truncated.replace(/[.\\/]/g, "\\$&")}: failed to load model`));

    await expectCode(() => b.Lora.load(model, m.tiny), "invalid_file", new RegExp(`: failed to load LoRA adapter for model `));
  });
});

describe("too_long, backend, busy, aborted: a call on a context", () => {
  it("a prompt longer than the context is too_long", async () => {
    const tokens = Int32Array.from({ length: 300 }, (_, i) => 10 + (i % 50));
    await expectCode(() => ctx.generate({ tokens, maxTokens: 1 }), "too_long", "the prompt has 300 tokens but the context holds 256");
  });

  it("a failed llama_decode is backend", async () => {
    // two decodes of 200 tokens into 256 KV cells: the second finds no slot
    await expectCode(() => ctx.run(onePromptPlan(400, [0, 0, 200, 0, 200, 400])), "backend", /^llama_decode: no KV cache slot for the batch/);
    // the context still works afterwards
    const r = await ctx.run(onePromptPlan(8, [0, 0, 8]));
    expect(Number.isFinite(r.values[0])).toBe(true);
  });

  it("overlapping calls on one context are busy", async () => {
    const first = ctx.run(onePromptPlan(100, [0, 0, 100]));
    await expectCode(() => ctx.run(onePromptPlan(100, [0, 0, 100])), "busy", "the context is busy with another call (calls on one context must not overlap)");
    await first;
  });

  it("a call stopped by the context's abort() is aborted", async () => {
    // many steps, so that the abort is seen at the next step even if a decode is already running
    const steps: number[] = [];
    for (let i = 0; i < 32; i++) steps.push(0, 0, 200, 2, 0, 0);
    const running = ctx.run(onePromptPlan(200, steps));
    ctx.abort();
    await expectCode(() => running, "aborted", /aborted/);
    expect(ctx.info().busy).toBe(false);
  });
});

describe("closed: objects used after dispose()", () => {
  it("a disposed context, model or adapter is closed", async () => {
    const mm = await b.Model.load(m.tiny);
    const lora = await b.Lora.load(mm, m.loraA);
    const c = await b.Context.create(mm, { nCtx: 64, nBatch: 64, nSeqMax: 1, threads: 1 });
    c.dispose();
    await expectCode(() => c.info(), "closed", "the context was disposed");
    await expectCode(() => c.run(onePromptPlan(4, [0, 0, 4])), "closed", "the context was disposed");
    lora.dispose();
    await expectCode(() => lora.meta(), "closed", "the LoRA adapter was disposed");
    mm.dispose();
    await expectCode(() => mm.tokenize("x"), "closed", "the model was disposed");
    await expectCode(() => b.Context.create(mm), "closed", "the model was disposed");
  });
});
