#!/usr/bin/env node
// The correctness stage of the GPU check, through the engine users call (engine.score):
//   - gpu "auto" picks the expected backend (CUDA on the device) and says which;
//   - the check models (n_embd 256, 2 layers, GQA; F32 and F16 weights) with adapters at scales
//     0, 0.5 and 1 against the float64 reference (reference.mjs), within the bounds below;
//   - batch invariance: a prompt's scores alone, among 7 and among 64, with sharing on and off;
//   - adapter switching A, B, A: the two A calls give identical bits;
//   - with CUDA, the same scores from the CPU variant, for comparison.
//   node bench/gpu/correctness.mjs --dir WORK --reference reference.json --backend cuda|cpu --out correctness.json
import { join } from "node:path";
import { parseArgs } from "node:util";

import { dist, log, now, readJson, relDiff, root, SIZES, writeJson } from "./common.mjs";

const { values: a } = parseArgs({
  options: { dir: { type: "string" }, reference: { type: "string" }, backend: { type: "string", default: "cuda" }, out: { type: "string" }, mode: { type: "string" } },
});
if (!a.dir || !a.reference || !a.out) throw new Error("usage: correctness.mjs --dir WORK --reference reference.json --backend cuda|cpu --out correctness.json");
const { Engine } = await import(join(dist, "index.js"));
const { loadBinding } = await import(join(dist, "engine", "native.js"));
const mode = a.mode ?? (a.backend === "cuda" ? "gpu" : "cpu");
const gpu = a.backend === "cuda" ? "cuda" : "cpu";
const paths = { F32: join(a.dir, "check-f32.gguf"), F16: join(a.dir, "check-f16.gguf"), a: join(a.dir, "check-lora-a.gguf"), b: join(a.dir, "check-lora-b.gguf") };
const { prompts } = readJson(join(root, "bench", "gpu", "check-prompts.json"));
const reference = readJson(a.reference);
const workload = readJson(join(a.dir, "prompts.json"));

/**
 * Bounds on |engine - float64 reference| / max(1, |reference|) for the two answer logits and the
 * log-sum-exp. F32 weights with an F32 KV cache is README's exact mode, promised to 1e-5 and
 * batching-independent; that promise is checked as is on every backend. On CUDA it is not expected
 * to hold: cuBLAS runs F32 products of more than a few tokens on TF32 tensor cores (ggml-cuda sets
 * CUBLAS_TF32_TENSOR_OP_MATH: inputs rounded to a 10-bit mantissa), so this measures by how much.
 * With an F16 KV cache or F16 weights llama.cpp rounds to half precision (README: "Exactness");
 * on this deliberately sensitive model that is a few 1e-3 on the CPU (measured: 2.9e-3 and 3.8e-3),
 * and CUDA adds half-precision accumulation (cuBLAS CUBLAS_COMPUTE_16F for F16 weights). A real
 * bug is larger: an adapter applied at scale 0.8 instead of 1 moves these logits by about 0.2.
 */
const BOUNDS = {
  cpu: { "F32/f32": 1e-5, "F32/f16": 1e-2, "F16/f16": 1e-2 },
  cuda: { "F32/f32": 1e-5, "F32/f16": 2e-2, "F16/f16": 2e-2 },
};
/** README: in the exact mode batching changes nothing beyond 1e-5. */
const INVARIANCE_BOUND = 1e-5;
const TF32_NOTE = "on CUDA, cuBLAS's TF32 tensor cores round F32 products' inputs: the exact mode's 1e-5 is measured, not expected";

const res = { backend: a.backend, checks: [], ok: true };
const check = (name, ok, details) => {
  res.checks.push({ name, ok, ...details });
  if (!ok) res.ok = false;
  log(`${ok ? "ok  " : "FAIL"} ${name} ${JSON.stringify(details)}`);
};
const t0 = now();

// 1. gpu "auto" picks the expected backend and says so
{
  const e = await Engine.load({ model: paths.F32, gpu: "auto" });
  const info = e.info;
  const devices = info.backend === "cuda" ? loadBinding("auto").devices.map((d) => `${d.name}: ${d.description} (${(d.memoryTotal / 2 ** 30).toFixed(0)} GiB)`) : [];
  await e.close();
  check(`gpu "auto" picks ${a.backend}`, info.backend === a.backend, { backend: info.backend, variant: info.variant, fallbackReason: info.fallbackReason ?? null, devices });
}

// 2. scores against the float64 reference
const tokensOk = [];
const refFor = (model, label) => reference.results.find((r) => r.model === model && r.adapters === label).values;
const SETS = {
  base: [],
  "a@0": [{ name: "a", scale: 0 }],
  "a@0.5": [{ name: "a", scale: 0.5 }],
  "a@1": [{ name: "a", scale: 1 }],
  "b@1": [{ name: "b", scale: 1 }],
  "a@0.5+b@1": [
    { name: "a", scale: 0.5 },
    { name: "b", scale: 1 },
  ],
};
let cudaScores = null;
for (const [model, kvType] of [
  ["F32", "f32"],
  ["F32", "f16"],
  ["F16", "f16"],
]) {
  const key = `${model}/${kvType}`;
  const bound = BOUNDS[a.backend][key];
  const e = await Engine.load({
    model: paths[model],
    adapters: [
      { name: "a", path: paths.a },
      { name: "b", path: paths.b },
    ],
    defaultAdapter: null,
    gpu,
    contextSize: 1024,
    kvType,
  });
  if (tokensOk.length === 0) for (const p of prompts) tokensOk.push(JSON.stringify(Array.from(e.tokenize(p.text))) === JSON.stringify(p.tokens));
  let worst = 0;
  const per = {};
  const got = {};
  for (const [label, adapters] of Object.entries(SETS)) {
    got[label] = await e.score(
      prompts.map((p) => p.text),
      { adapter: adapters, scoring: "tallrec-compat" },
    );
    if (label === "a@0") continue;
    const ref = refFor(model, label);
    let w = 0;
    got[label].forEach((r, i) => {
      if (r.error) throw new Error(`${key} ${label} prompt ${i}: ${r.error}`);
      w = Math.max(w, relDiff(r.logitYes, ref[i].logitYes), relDiff(r.logitNo, ref[i].logitNo), relDiff(r.logSumExp, ref[i].logSumExp));
    });
    per[label] = Number(w.toExponential(3));
    worst = Math.max(worst, w);
  }
  check(`${key} (weights/KV cache) within ${bound} of the float64 reference, adapters at scales 0.5 and 1`, worst < bound, {
    maxRelDiff: worst,
    bound,
    perAdapterSet: per,
    ...(a.backend === "cuda" && key === "F32/f32" ? { note: TF32_NOTE } : {}),
  });
  const zero = Math.max(...got["a@0"].map((r, i) => Math.max(relDiff(r.logitYes, got.base[i].logitYes), relDiff(r.logitNo, got.base[i].logitNo))));
  const moved = Math.max(...got["a@1"].map((r, i) => Math.abs(r.logitYes - got.base[i].logitYes) + Math.abs(r.logitNo - got.base[i].logitNo)));
  check(`${key}: adapter at scale 0 equals the base model, at scale 1 moves the logits`, zero < 1e-5 && moved > 1e-2, { scale0MaxRelDiff: zero, scale1Moved: moved });
  if (key === "F32/f32") cudaScores = got["a@1"];
  await e.close();
}
check("the engine tokenizes the check prompts as the reference's token ids", tokensOk.every(Boolean), { prompts: tokensOk });

// 3. batch invariance: alone, among 7, among 64; sharing on and off. In the exact mode (F32
// weights and KV cache) a prompt's float32 math does not depend on its batch beyond reduction
// order (README: 1e-5). With F16 weights or KV cache those last-bit differences flip half-precision
// roundings, which this deliberately sensitive random model amplifies (measured on the CPU: 2e-6
// with F32 weights and cache, up to 3e-3 with F16 ones): held to that configuration's bound.
for (const [model, kvType, bound] of [
  ["F32", "f32", INVARIANCE_BOUND],
  ["F16", "f16", BOUNDS[a.backend]["F16/f16"]],
]) {
  const [n1, n7, n64] = SIZES[mode].invariance;
  const texts = workload.independent.slice(0, n64);
  while (texts.length < n64) texts.push(...workload.independent.slice(0, n64 - texts.length));
  const e = await Engine.load({ model: paths[model], adapters: [{ name: "a", path: paths.a }], gpu, kvType });
  const runs = {};
  for (const share of [true, false]) {
    const all = await e.score(texts, { share });
    const seven = await e.score(texts.slice(0, n7), { share });
    const one = await e.score(texts.slice(0, n1), { share });
    const all2 = await e.score(texts, { share });
    runs[share ? "shared" : "unshared"] = { all, seven, one, all2 };
  }
  const diff = (x, y, n) => {
    let w = 0;
    for (let i = 0; i < n; i++) w = Math.max(w, relDiff(x[i].logitYes, y[i].logitYes), relDiff(x[i].logitNo, y[i].logitNo));
    return w;
  };
  const d = {};
  for (const [k, r] of Object.entries(runs)) {
    d[`${k}: 1 vs 64`] = diff(r.one, r.all, n1);
    d[`${k}: 7 vs 64`] = diff(r.seven, r.all, n7);
    d[`${k}: 64 vs 64 again`] = diff(r.all2, r.all, n64);
  }
  d["shared vs unshared, 64"] = diff(runs.shared.all, runs.unshared.all, n64);
  const worst = Math.max(...Object.values(d));
  check(`batch invariance 1/7/64, sharing on and off, ${model} weights / ${kvType} KV cache, within ${bound}`, worst <= bound, {
    maxRelDiff: worst,
    bound,
    pairs: d,
    ...(a.backend === "cuda" && model === "F32" ? { note: TF32_NOTE } : {}),
  });
  await e.close();
}

// 4. adapter switching A, B, A: identical bits for both A calls
{
  const texts = workload.independent.slice(0, SIZES[mode].switching);
  const e = await Engine.load({
    model: paths.F16,
    adapters: [
      { name: "a", path: paths.a },
      { name: "b", path: paths.b },
    ],
    defaultAdapter: null,
    gpu,
  });
  const out = {};
  for (const share of [true, false]) {
    const s1 = await e.score(texts, { adapter: "a", share });
    const s2 = await e.score(texts, { adapter: "b", share });
    const s3 = await e.score(texts, { adapter: "a", share });
    const same = s1.every((r, i) => r.logitYes === s3[i].logitYes && r.logitNo === s3[i].logitNo);
    const moved = Math.max(...s1.map((r, i) => Math.abs(r.logitYes - s2[i].logitYes)));
    out[share ? "shared" : "unshared"] = { identical: same, bMovesLogitsBy: moved };
  }
  check(
    "adapter switching A, B, A: the A scores are identical bit for bit",
    Object.values(out).every((x) => x.identical && x.bMovesLogitsBy > 1e-3),
    out,
  );
  await e.close();
}

// 5. with CUDA: the CPU variant's scores of the same prompts (F32 weights and KV cache, adapter a)
if (a.backend === "cuda" && cudaScores) {
  try {
    const e = await Engine.load({ model: paths.F32, adapters: [{ name: "a", path: paths.a }], gpu: "cpu", contextSize: 1024, kvType: "f32" });
    const cpu = await e.score(
      prompts.map((p) => p.text),
      { scoring: "tallrec-compat" },
    );
    await e.close();
    const w = Math.max(...cpu.map((r, i) => Math.max(relDiff(cudaScores[i].logitYes, r.logitYes), relDiff(cudaScores[i].logitNo, r.logitNo))));
    res.cudaVsCpu = { maxRelDiff: w, note: "F32 weights and KV cache, adapter a at scale 1: CUDA (TF32) against the CPU variant" };
  } catch (err) {
    res.cudaVsCpu = { error: err.message };
  }
}
res.bounds = BOUNDS[a.backend];
res.seconds = now() - t0;
writeJson(a.out, res);
log(`correctness: ${res.ok ? "all checks passed" : "SOME CHECKS FAILED"} (${res.seconds.toFixed(1)} s)`);
process.exitCode = res.ok ? 0 : 1;
