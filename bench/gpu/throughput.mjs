#!/usr/bin/env node
// Throughput of tallrec on the big model (LLaMA-7B's shape on the device) with its TALLRec-shaped
// LoRA, in two parts:
//   --part headline: engine.score as users call it (default options), TALLRec movie prompts
//     (independent pairs) and ranking (one user x N candidates), sharing on and off; writes the
//     token ids and tallrec's scores for the peers (--tokens-out, --scores-out);
//   --part sweep: the options a user can set, through the addon directly so that the model loads
//     once: round size (roundTokens), flash attention, micro-batch (ubatchSize), sharing.
// Each figure: pairs/s, prompt tokens/s, evaluated (decoded) tokens/s, and the useful FLOP rate
// against the H200's dense F16 tensor-core peak (989.4 TFLOP/s, NVIDIA's datasheet; 790 TFLOP/s
// measured for a bf16 8192^3 product on such a machine here). Useful FLOPs: 2 x the matrix
// parameters per evaluated token (LoRA included), causal attention (4 x n_embd x position per layer
// and evaluated token: masked cells of other prompts are not counted), and the output head once
// per prompt (2 x n_embd x n_vocab).
//   node bench/gpu/throughput.mjs --part headline|sweep --model M --lora L --prompts prompts.json
//        --backend cuda|cpu --out part.json [--tokens-out tokens.json --scores-out scores.json]
//        [--deadline EPOCH] [--mode gpu|cpu]
import { existsSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";

import { SIZES, deadlineFrom, dist, log, median, now, readJson, writeJson } from "./common.mjs";

const { values: a } = parseArgs({
  options: {
    part: { type: "string" },
    model: { type: "string" },
    lora: { type: "string" },
    prompts: { type: "string" },
    backend: { type: "string", default: "cuda" },
    mode: { type: "string" },
    out: { type: "string" },
    "tokens-out": { type: "string" },
    "scores-out": { type: "string" },
    tokens: { type: "string" },
    deadline: { type: "string", default: "0" },
    reps: { type: "string", default: "2" },
  },
});
if (!a.part || !a.model || !a.lora || !a.prompts || !a.out) throw new Error("usage: throughput.mjs --part headline|sweep --model M --lora L --prompts P --out OUT");
const left = deadlineFrom(a.deadline);
const mode = a.mode ?? (a.backend === "cuda" ? "gpu" : "cpu");
const sizes = SIZES[mode];
const reps = Number(a.reps);
const gpu = a.backend === "cuda" ? "cuda" : "cpu";
const PEAK_DENSE_F16 = 989.4e12;
const MEASURED_BF16 = 790e12;
const { plannedTokens, planScoring, roundBudget } = await import(join(dist, "engine", "plan.js"));
const { planStreams } = await import(join(dist, "engine", "plan-streams.js"));
const { Engine, defaultThreads } = await import(join(dist, "engine", "engine.js"));
const { openGgufSync, getMetadataNumber } = await import(join(dist, "gguf", "reader.js"));
const work = readJson(a.prompts);

// the model's shape, for the FLOP count
const g = openGgufSync(a.model);
const shape = {
  nEmbd: getMetadataNumber(g, "llama.embedding_length"),
  nLayer: getMetadataNumber(g, "llama.block_count"),
  nHead: getMetadataNumber(g, "llama.attention.head_count"),
  nHeadKv: getMetadataNumber(g, "llama.attention.head_count_kv"),
  nFf: getMetadataNumber(g, "llama.feed_forward_length"),
  nVocab: g.tensorsByName.get("output.weight").dims[1],
};
const lf = openGgufSync(a.lora);
let loraParams = 0;
for (const t of lf.tensors) loraParams += t.dims.reduce((x, y) => x * y, 1);
const dKv = (shape.nEmbd / shape.nHead) * shape.nHeadKv;
// per block: q (d x d), k and v (d x dKv), o (d x d), gate, up and down (d x n_ff)
const linearParams = shape.nLayer * (shape.nEmbd * (shape.nEmbd + 2 * dKv) + shape.nEmbd * shape.nEmbd + 3 * shape.nEmbd * shape.nFf);
const flopsModel = {
  perEvaluatedToken: 2 * (linearParams + loraParams),
  attentionPerTokenAndPosition: 4 * shape.nEmbd * shape.nLayer,
  headPerPrompt: 2 * shape.nEmbd * shape.nVocab,
  note: "2 x matrix parameters (LoRA included) per evaluated token + 4 x n_embd x n_layer x (position + 1) causal attention + 2 x n_embd x n_vocab per prompt",
};

/** Useful FLOPs of a plan (what a perfect implementation must compute). */
function usefulFlops(plan, nPrompts) {
  let attn = 0;
  for (let i = 0; i < plan.tokens.length; i++) attn += plan.pos[i] + 1;
  // the streams layout's padding is not useful work (its attention is left in: a slight overcount)
  const useful = plan.tokens.length - (plan.stats.paddingTokens ?? 0);
  return useful * flopsModel.perEvaluatedToken + attn * flopsModel.attentionPerTokenAndPosition + nPrompts * flopsModel.headPerPrompt;
}

function figures(nPrompts, promptTokens, decoded, seconds, flops) {
  return {
    prompts: nPrompts,
    promptTokens,
    evaluatedTokens: decoded,
    seconds,
    pairsPerSecond: nPrompts / seconds,
    promptTokensPerSecond: promptTokens / seconds,
    evaluatedTokensPerSecond: decoded / seconds,
    usefulTflopPerSecond: flops / seconds / 1e12,
    fractionOfDenseF16Peak: flops / seconds / PEAK_DENSE_F16,
    fractionOfMeasuredBf16: flops / seconds / MEASURED_BF16,
  };
}

const res = { part: a.part, backend: a.backend, shape, flopsModel, peak: { denseF16: PEAK_DENSE_F16, measuredBf16: MEASURED_BF16 }, runs: [], skipped: [] };
const save = () => writeJson(a.out, res);

if (a.part === "headline") {
  const t0 = now();
  const engine = await Engine.load({ model: a.model, adapters: [{ name: "movie", path: a.lora }], gpu });
  const info = engine.info;
  res.load = { seconds: now() - t0, backend: info.backend, variant: info.variant, context: info.context, answerTokens: info.answerTokens };
  log(`loaded in ${res.load.seconds.toFixed(1)} s on ${info.backend} (${info.variant}); round ${info.context.roundTokens} cells`);
  const tok = (texts) => texts.map((t) => Array.from(engine.tokenize(t)));
  const tokens = { independent: tok(work.independent), ranking: tok(work.ranking) };
  if (a["tokens-out"]) writeJson(a["tokens-out"], tokens);
  const limits = { nCtx: info.context.nCtx, nBatch: info.context.nBatch, nSeqMax: info.context.nSeqMax, roundCells: info.context.roundTokens };
  for (const [workload, texts, ids] of [
    ["independent", work.independent, tokens.independent],
    ["ranking", work.ranking, tokens.ranking],
  ]) {
    for (const share of [true, false]) {
      const label = `engine.score, ${workload}, sharing ${share ? "on" : "off"}`;
      if (left() < 30) {
        res.skipped.push(`${label}: out of time`);
        continue;
      }
      await engine.score(texts.slice(0, 32), { share }); // warm-up (allocations, kernels)
      const secs = [];
      let stats;
      for (let r = 0; r < reps; r++) {
        const s0 = now();
        const { results: out, stats: callStats } = await engine.scoreWithStats(texts, { share });
        secs.push(now() - s0);
        stats = callStats;
        const bad = out.find((x) => x.error);
        if (bad) throw new Error(`${label}: ${bad.error}`);
      }
      const plan = planScoring(
        ids.map((x) => Int32Array.from(x)),
        limits,
        { share },
      );
      const run = {
        label,
        workload,
        share,
        ...figures(texts.length, stats.promptTokens, stats.decodedTokens, median(secs), usefulFlops(plan, texts.length)),
        reusedTokens: stats.reusedTokens,
        decodeCalls: stats.decodeCalls,
        repSeconds: secs,
      };
      res.runs.push(run);
      log(`${label}: ${run.pairsPerSecond.toFixed(1)} pairs/s, ${run.evaluatedTokensPerSecond.toFixed(0)} evaluated tokens/s, ${(100 * run.fractionOfDenseF16Peak).toFixed(1)}% of dense F16 peak`);
      save();
    }
  }
  const speed = (w, s) => res.runs.find((r) => r.workload === w && r.share === s)?.pairsPerSecond;
  if (speed("ranking", true) && speed("ranking", false)) res.rankingSharingSpeedup = speed("ranking", true) / speed("ranking", false);
  if (speed("independent", true) && speed("independent", false)) res.independentSharingSpeedup = speed("independent", true) / speed("independent", false);
  // tallrec's scores of the independent prompts, both rules, for the peers' |ΔpYes|
  if (a["scores-out"]) {
    const compat = await engine.score(work.independent, { scoring: "tallrec-compat" });
    writeJson(a["scores-out"], {
      logitYes: compat.map((r) => r.logitYes),
      logitNo: compat.map((r) => r.logitNo),
      pYes: compat.map((r) => 1 / (1 + Math.exp(r.logitNo - r.logitYes))),
      pYesCompat: compat.map((r) => r.pYes),
      logSumExp: compat.map((r) => r.logSumExp),
    });
  }
  await engine.close();
} else if (a.part === "sweep") {
  const { loadBinding } = await import(join(dist, "engine", "native.js"));
  const { binding, backend, variant } = loadBinding(gpu);
  const t0 = now();
  const model = await binding.Model.load(a.model, { gpuLayers: backend === "cuda" ? -1 : 0, useMmap: true });
  const lora = await binding.Lora.load(model, a.lora);
  res.load = { seconds: now() - t0, backend, variant };
  const tokenize = (texts) => texts.map((t) => model.tokenize(t, true, false));
  const ids = existsSync(a.tokens ?? "")
    ? Object.fromEntries(Object.entries(readJson(a.tokens)).map(([k, v]) => [k, v.map((x) => Int32Array.from(x))]))
    : { independent: tokenize(work.independent), ranking: tokenize(work.ranking) };
  const independent = ids.independent.slice(0, sizes.sweepPrompts);
  const ranking = ids.ranking;
  const nCtx = 4096;
  const def = roundBudget(shape, nCtx);
  const threads = defaultThreads();
  // contexts (KV layout, flash attention, micro-batch) and, in each, the runs (workload, sharing,
  // round size; a streams context has no rounds to size: its round is its streams), most
  // informative first (the deadline cuts the tail): the headline already has the defaults. Both
  // layouts with flash attention off and on, so one GPU run measures them side by side (the cost
  // model's CUDA constant, src/engine/cost.ts, comes from the first two).
  const STREAMS = 8;
  // [workload, sharing, round cells] runs; a streams context ignores the round size
  const both = (round) => [
    ["independent", true, round],
    ["independent", false, round],
  ];
  const three = (round) => [...both(round), ["ranking", true, round]];
  const matrix =
    mode === "gpu"
      ? [
          { layout: "unified", fa: false, ub: 512, runs: three(def) },
          { layout: "streams", fa: false, ub: 512, runs: three(0) },
          { layout: "streams", fa: true, ub: 512, runs: three(0) },
          { layout: "unified", fa: true, ub: 512, runs: three(def) },
          { layout: "unified", fa: true, ub: 2048, runs: both(4096) },
          {
            layout: "unified",
            fa: false,
            ub: 512,
            runs: [
              ["independent", true, 1024],
              ["independent", true, 4096],
              ["ranking", false, def],
            ],
          },
        ]
      : [
          { layout: "unified", fa: false, ub: 512, runs: three(def) },
          { layout: "streams", fa: false, ub: 512, runs: three(0) },
          { layout: "streams", fa: true, ub: 512, runs: both(0) },
          { layout: "unified", fa: true, ub: 512, runs: both(def) },
        ];
  res.defaultRoundTokens = def;
  let lastSeconds = 0;
  for (const c of matrix) {
    const streams = c.layout === "streams";
    const limits = { nCtx, nBatch: nCtx, nSeqMax: 64 };
    const ctx = await binding.Context.create(model, {
      nCtx,
      nBatch: nCtx,
      nUbatch: c.ub,
      nSeqMax: streams ? STREAMS : 64,
      kvUnified: !streams,
      threads,
      threadsBatch: threads,
      flashAttn: c.fa ? "on" : "off",
      kvType: "f16",
      poll: 0,
    });
    const streamCells = ctx.info().nCtxSeq;
    let warmed = false;
    for (const [workload, share, round] of c.runs) {
      const label = `${workload}, sharing ${share ? "on" : "off"}, ${streams ? `${STREAMS} KV streams of ${streamCells} cells` : `unified KV, round ${round} cells`}, flash attention ${c.fa ? "on" : "off"}, ubatch ${c.ub}`;
      if (left() < Math.max(20, 3 * lastSeconds)) {
        res.skipped.push(`${label}: out of time`);
        continue;
      }
      const prompts = workload === "independent" ? independent : ranking;
      if (streams && prompts.some((p) => p.length > streamCells)) {
        res.skipped.push(`${label}: a prompt is longer than a stream`);
        continue;
      }
      const plan = streams ? planStreams(prompts, { streams: STREAMS, streamCells, nBatch: nCtx }, { share }) : planScoring(prompts, { ...limits, roundCells: round }, { share });
      const runPlan = () =>
        ctx.run({
          ...plannedTokens(plan),
          adapters: [lora],
          scales: Float32Array.of(1),
          targets: Int32Array.of(8241, 3782) /* LLaMA's Yes / No */,
          lse: false,
        });
      const s0 = now();
      if (!warmed) {
        await runPlan();
        warmed = true;
      }
      const secs = [];
      for (let r = 0; r < reps; r++) {
        const s = now();
        await runPlan();
        secs.push(now() - s);
      }
      lastSeconds = now() - s0;
      const run = {
        label,
        workload,
        share,
        kvLayout: c.layout,
        roundTokens: streams ? null : round,
        flashAttention: c.fa,
        ubatch: c.ub,
        ...figures(prompts.length, plan.stats.promptTokens, plan.stats.decodedTokens, median(secs), usefulFlops(plan, prompts.length)),
        decodeCalls: plan.stats.decodeCalls,
        rounds: plan.stats.rounds,
        repSeconds: secs,
      };
      res.runs.push(run);
      log(`${label}: ${run.pairsPerSecond.toFixed(1)} pairs/s, ${run.evaluatedTokensPerSecond.toFixed(0)} tokens/s, ${(100 * run.fractionOfDenseF16Peak).toFixed(1)}% of peak`);
      save();
    }
    ctx.dispose();
  }
  lora.dispose();
  model.dispose();
} else {
  throw new Error(`--part must be headline or sweep, not ${a.part}`);
}
save();
