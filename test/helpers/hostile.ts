/**
 * Hostile inputs for the regression tests of issue 11: mutants of the generated test models
 * (written with the project's own GGUF rewriter) and a way to run the built CLI, or raw
 * llama.cpp, in a child process, so that a crash is a failed test, not a dead test runner.
 */
import { spawn } from "node:child_process";
import { join } from "node:path";

import { openGgufSync } from "../../src/gguf/reader.js";
import { rewriteGguf, type GgufEdits } from "../../src/gguf/rewrite.js";
import { GgufValueType } from "../../src/gguf/types.js";
import { gv } from "../../src/gguf/writer.js";
import { repoRoot } from "./data.js";

export const cliPath = join(repoRoot, "dist", "cli", "main.js");

export interface ChildRun {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Runs `node args...` and collects its output; a signal (a crash) is reported, never thrown. */
export function runNode(args: string[], options: { env?: Record<string, string>; timeoutMs?: number; input?: string } = {}): Promise<ChildRun> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, args, { env: { ...process.env, ...options.env }, stdio: ["pipe", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (d: string) => (stdout += d));
    child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
    const timer = setTimeout(() => child.kill("SIGKILL"), options.timeoutMs ?? 120_000);
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
    child.stdin.end(options.input ?? "");
  });
}

/** Runs the built `tallrec` CLI (llama.cpp on one thread). */
export function runCli(args: string[], options: { env?: Record<string, string>; timeoutMs?: number } = {}): Promise<ChildRun> {
  return runNode([cliPath, "--threads", "1", ...args], options);
}

function f32Bytes(values: number[]): Uint8Array {
  return new Uint8Array(Float32Array.from(values).buffer);
}

/** Sets element `i` (F32) of a tensor's bytes. */
export function pokeF32(i: number, x: number): (old: Uint8Array) => Uint8Array {
  return (old) => {
    const c = old.slice();
    c.set(f32Bytes([x]), i * 4);
    return c;
  };
}

/** A mutant: a name, what it is for, and how to write it from the test models. */
export interface Mutant {
  name: string;
  /** "model" mutants replace the model, "adapter" mutants are loaded on the tiny model. */
  kind: "model" | "adapter";
  /** What llama.cpp does with it unchecked ("abort", "segfault", "nan", "throws"). */
  raw: "abort" | "segfault" | "nan" | "throws";
  /** The message tallrec refuses it with. */
  message: RegExp;
  edits: (source: string) => GgufEdits;
}

/** Hostile GGUFs of issue 11 (D1-D4, D6, D13), each a small edit of tiny.gguf or tiny-lora-a.gguf. */
export const MUTANTS: Mutant[] = [
  // D1: alpha read with gguf_get_val_f32, which asserts the type and a single value
  { name: "alpha-string", kind: "adapter", raw: "abort", message: /adapter\.lora\.alpha is STRING, expected FLOAT32/, edits: () => ({ metadata: { "adapter.lora.alpha": gv.str("16") } }) },
  {
    name: "alpha-array",
    kind: "adapter",
    raw: "abort",
    message: /adapter\.lora\.alpha is ARRAY of FLOAT32, expected FLOAT32/,
    edits: () => ({ metadata: { "adapter.lora.alpha": gv.numArray(GgufValueType.FLOAT32, [16, 16]) } }),
  },
  { name: "general-type-u32", kind: "adapter", raw: "abort", message: /general\.type is UINT32, expected STRING/, edits: () => ({ metadata: { "general.type": gv.u32(1) } }) },
  // D2: two vocabulary entries with one string
  {
    name: "vocab-duplicate",
    kind: "model",
    raw: "abort",
    message: /the vocabulary has the string .* twice \(tokens 1000 and 1001\)/,
    edits: (src) => {
      const tokens = (openGgufSync(src).metadata.get("tokenizer.ggml.tokens")!.value as string[]).slice();
      tokens[1000] = tokens[1001];
      return { metadata: { "tokenizer.ggml.tokens": gv.strArray(tokens) } };
    },
  },
  // D3: block count outside 1..512
  { name: "block-count-0", kind: "model", raw: "abort", message: /llama\.block_count is 0: it must be 1\.\.512/, edits: () => ({ metadata: { "llama.block_count": gv.u32(0) } }) },
  { name: "block-count-513", kind: "model", raw: "abort", message: /llama\.block_count is 513: it must be 1\.\.512/, edits: () => ({ metadata: { "llama.block_count": gv.u32(513) } }) },
  // D4: a weight typed I32 (ggml type 26, the byte size of F32), in the model and in an adapter
  { name: "weight-i32", kind: "model", raw: "segfault", message: /tensor "blk\.0\.attn_q\.weight" is I32, a type llama\.cpp cannot multiply with/, edits: () => ({ tensors: { "blk.0.attn_q.weight": { type: 26 } } }) },
  {
    name: "lora-i32",
    kind: "adapter",
    raw: "segfault",
    message: /tensor "blk\.0\.attn_q\.weight\.lora_a" is I32; LoRA tensors must be F32, F16, BF16 or Q8_0/,
    edits: () => ({ tensors: { "blk.0.attn_q.weight.lora_a": { type: 26 } } }),
  },
  // D6: non-finite or absurd alpha and weights (llama.cpp scores them as NaN)
  { name: "alpha-inf", kind: "adapter", raw: "nan", message: /adapter\.lora\.alpha is Infinity: it must be a finite number/, edits: () => ({ metadata: { "adapter.lora.alpha": gv.f32(Infinity) } }) },
  { name: "alpha-nan", kind: "adapter", raw: "nan", message: /adapter\.lora\.alpha is NaN: it must be a finite number/, edits: () => ({ metadata: { "adapter.lora.alpha": gv.f32(NaN) } }) },
  {
    name: "alpha-1e6",
    kind: "adapter",
    raw: "nan",
    message: /adapter\.lora\.alpha 1000000 with rank 8 scales the update by 125000, beyond the sane bound 1000/,
    edits: () => ({ metadata: { "adapter.lora.alpha": gv.f32(1e6) } }),
  },
  {
    name: "weight-inf",
    kind: "adapter",
    raw: "nan",
    message: /"blk\.0\.attn_q\.weight\.lora_a" holds Infinity at element 5/,
    edits: () => ({ tensors: { "blk.0.attn_q.weight.lora_a": { data: pokeF32(5, Infinity) } } }),
  },
  {
    name: "weight-1e38",
    kind: "adapter",
    raw: "nan",
    message: /"blk\.1\.attn_v\.weight\.lora_b" holds 9\.99\d*e\+37 at element 3/,
    edits: () => ({ tensors: { "blk.1.attn_v.weight.lora_b": { data: pokeF32(3, 1e38) } } }),
  },
  { name: "weight-minus-1e38", kind: "adapter", raw: "nan", message: /holds -9\.99\d*e\+37 at element 0/, edits: () => ({ tensors: { "blk.0.attn_v.weight.lora_a": { data: pokeF32(0, -1e38) } } }) },
  // more of what llama.cpp asserts on or divides by
  {
    name: "norm-f16",
    kind: "model",
    raw: "abort",
    message: /tensor "blk\.0\.attn_norm\.weight" is F16, but norm weights and biases must be F32/,
    edits: () => ({ tensors: { "blk.0.attn_norm.weight": { type: 1, data: new Uint8Array(128) } } }),
  },
  {
    name: "value-length",
    kind: "model",
    raw: "throws",
    message: /llama\.attention\.value_length is 8, but a LLaMA head has 64 \/ 4 = 16 dimensions/,
    edits: () => ({ metadata: { "llama.attention.value_length": gv.u32(8) } }),
  },
  {
    name: "rope-scaling-type",
    kind: "model",
    raw: "abort",
    message: /llama\.rope\.scaling\.type is "bogus", not one of none, linear, yarn, longrope/,
    edits: () => ({ metadata: { "llama.rope.scaling.type": gv.str("bogus") } }),
  },
  { name: "experts-used", kind: "model", raw: "abort", message: /expert_used_count \(2\) exceeds llama\.expert_count \(0\)/, edits: () => ({ metadata: { "llama.expert_used_count": gv.u32(2) } }) },
  { name: "no-vocab", kind: "model", raw: "abort", message: /tokenizer\.ggml\.model is "none"/, edits: () => ({ metadata: { "tokenizer.ggml.model": gv.str("none") } }) },
];

/** Writes mutant `m` of `source` to `dir/<name>.gguf` and returns its path. */
export async function writeMutant(m: Mutant, source: string, dir: string): Promise<string> {
  const out = join(dir, `${m.name}.gguf`);
  await rewriteGguf(source, out, m.edits(source));
  return out;
}

/**
 * A script that loads a model (and an adapter) with the native addon directly, bypassing
 * tallrec's checks, and scores one prompt: what llama.cpp does with a file on its own.
 */
export function rawLlamaScript(model: string, adapter?: string): string {
  const addon = join(repoRoot, "build", "cpu", "Release", "tallrec.node");
  const plan = join(repoRoot, "dist", "engine", "plan.js");
  return `
    const b = require(${JSON.stringify(addon)});
    (async () => {
      const { planScoring } = await import(${JSON.stringify(plan)});
      const m = await b.Model.load(${JSON.stringify(model)}, {});
      const adapters = ${adapter ? `[await b.Lora.load(m, ${JSON.stringify(adapter)})]` : "[]"};
      const ctx = await b.Context.create(m, { nCtx: 256, nBatch: 256, nUbatch: 256, nSeqMax: 4, threads: 1, threadsBatch: 1, flashAttn: "off", kvType: "f16", poll: 0 });
      const toks = m.tokenize("Is this a yes?", true, false);
      const plan = planScoring([toks], { nCtx: 256, nBatch: 256, nSeqMax: 4, roundCells: 256 }, { share: false, resident: new Int32Array(0) });
      const out = await ctx.run({ adapters, scales: Float32Array.from(adapters.map(() => 1)), tokens: plan.tokens, pos: plan.pos, out: plan.out, seqOffsets: plan.seqOffsets, seqIds: plan.seqIds, steps: plan.steps, nOutputs: plan.nOutputs, targets: Int32Array.of(8241, 3782), lse: false });
      console.log("LOGITS " + out.values[0] + " " + out.values[1]);
    })().catch((e) => { console.log("THROWS " + e.message); });`;
}
