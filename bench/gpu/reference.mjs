#!/usr/bin/env node
// The float64 reference (test/reference/llama64.ts, compiled to JS) of the correctness prompts on
// the check models: both answer logits and the log-sum-exp of the full row, per model, adapter
// set and prompt. Exact float64 math (no rounding model): the bounds in correctness.mjs say how
// far each backend's float32/TF32/F16 arithmetic may stray. Needs no GPU and no addon, so the
// device runs it while llama.cpp compiles.
//   node bench/gpu/reference.mjs --dir WORK --ref REF/test/reference/llama64.js --out reference.json
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { parseArgs } from "node:util";

import { log, now, readJson, root, writeJson } from "./common.mjs";

const { values: a } = parseArgs({ options: { dir: { type: "string" }, ref: { type: "string" }, out: { type: "string" } } });
if (!a.dir || !a.ref || !a.out) throw new Error("usage: reference.mjs --dir WORK --ref llama64.js --out reference.json");
const { loadReference } = await import(pathToFileURL(resolve(a.ref)).href);
const { prompts } = readJson(join(root, "bench", "gpu", "check-prompts.json"));
const YES = 8241;
const NO = 3782;

/** Adapter sets checked: the base model, TALLRec's adapter at scales 0.5 and 1, a seven-target adapter, and two at once. */
export const ADAPTER_SETS = [
  { label: "base", adapters: [] },
  { label: "a@0.5", adapters: [{ name: "a", scale: 0.5 }] },
  { label: "a@1", adapters: [{ name: "a", scale: 1 }] },
  { label: "b@1", adapters: [{ name: "b", scale: 1 }] },
  {
    label: "a@0.5+b@1",
    adapters: [
      { name: "a", scale: 0.5 },
      { name: "b", scale: 1 },
    ],
  },
];

function lse(row) {
  let m = -Infinity;
  for (const v of row) m = Math.max(m, v);
  let s = 0;
  for (const v of row) s += Math.exp(v - m);
  return m + Math.log(s);
}

const t0 = now();
const paths = { F32: join(a.dir, "check-f32.gguf"), F16: join(a.dir, "check-f16.gguf"), a: join(a.dir, "check-lora-a.gguf"), b: join(a.dir, "check-lora-b.gguf") };
const out = { note: "exact float64 forward passes (test/reference/llama64.ts)", results: [] };
for (const model of ["F32", "F16"]) {
  for (const set of ADAPTER_SETS) {
    const ref = loadReference(
      paths[model],
      set.adapters.map((x) => ({ path: paths[x.name], scale: x.scale })),
      {},
    );
    const values = prompts.map((p) => {
      const row = ref.forwardLastLogits(p.tokens);
      return { logitYes: row[YES], logitNo: row[NO], logSumExp: lse(row) };
    });
    out.results.push({ model, adapters: set.label, values });
    log(`reference ${model} ${set.label}: ${(now() - t0).toFixed(1)} s`);
  }
}
out.seconds = now() - t0;
writeJson(a.out, out);
