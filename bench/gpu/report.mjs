#!/usr/bin/env node
// Gathers the GPU check's stage files into OUT/results.json and prints a summary: stage timings,
// builds, correctness, throughput (engine.score and the option sweep), the peers, and the issue's
// targets (which apply to the device run; a --cpu rehearsal's figures are CPU figures).
//   node bench/gpu/report.mjs --mode gpu|cpu --work WORK --out OUT --started EPOCH
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";

import { root, writeJson } from "./common.mjs";

const { values: a } = parseArgs({ options: { mode: { type: "string" }, work: { type: "string" }, out: { type: "string" }, started: { type: "string" } } });
const W = (f) => join(a.work, f);
const json = (p) => {
  try {
    return existsSync(p) ? JSON.parse(readFileSync(p, "utf8")) : null;
  } catch (e) {
    return { unreadable: `${p}: ${e.message}` };
  }
};
/** The last line of a stage's output that is a JSON object. */
const lastJson = (p) => {
  if (!existsSync(p)) return null;
  const lines = readFileSync(p, "utf8").trim().split("\n").reverse();
  for (const l of lines) {
    try {
      if (l.startsWith("{")) return JSON.parse(l);
    } catch {}
  }
  return null;
};
const stages = existsSync(join(a.out, "stages.jsonl"))
  ? readFileSync(join(a.out, "stages.jsonl"), "utf8")
      .trim()
      .split("\n")
      .filter(Boolean)
      .map((l) => JSON.parse(l))
  : [];
const headline = json(W("throughput-headline.json"));
const sweep = json(W("throughput-sweep.json"));
const peers = json(W("peers.json"));
const correctness = json(W("correctness.json"));
const res = {
  mode: a.mode,
  note: a.mode === "cpu" ? "CPU rehearsal of the GPU check: small models on the CPU; no figure here is a GPU figure" : "device run",
  finished: new Date().toISOString(),
  totalSeconds: Date.now() / 1000 - Number(a.started),
  machine: existsSync(W("env.txt")) ? readFileSync(W("env.txt"), "utf8").trim().split("\n") : null,
  stages,
  builds: { llamaCuda: lastJson(W("build-llama-cuda.out")), llamaCpu: lastJson(W("build-llama-cpu.out")), variants: json(join(root, "build", "variants.json")) },
  models: { ...json(W("models.json")), bigModel: lastJson(W("big-model.out")) },
  correctness,
  throughput: { headline, sweep },
  peers,
};

// the issue's targets, from the figures above
const run = (w, share) => headline?.runs?.find((r) => r.workload === w && r.share === share);
const gen = peers?.peers?.find((p) => p.system?.includes("evaluate.py"));
const fwd = (peers?.peers ?? []).filter((p) => p.system?.includes("forward"));
const indep = [...(headline?.runs ?? []), ...(sweep?.runs ?? [])].filter((r) => r.workload === "independent");
const best = indep.reduce((b, r) => (!b || r.fractionOfDenseF16Peak > b.fractionOfDenseF16Peak ? r : b), null);
const bestFwd = fwd.reduce((b, r) => (!b || r.pairsPerSecond > b.pairsPerSecond ? r : b), null);
res.targets = {
  appliesTo: "the device run on LLaMA-7B's shape (a --cpu rehearsal only shows that the stages run)",
  vsTallrecEvaluate:
    gen && run("independent", true)
      ? { target: 20, measured: run("independent", true).pairsPerSecond / gen.pairsPerSecond, tallrecPairsPerSecond: run("independent", true).pairsPerSecond, evaluatePyPairsPerSecond: gen.pairsPerSecond }
      : null,
  vsTransformersForward: bestFwd && run("independent", true) ? { measured: run("independent", true).pairsPerSecond / bestFwd.pairsPerSecond, forwardPairsPerSecond: bestFwd.pairsPerSecond, batch: bestFwd.batch } : null,
  fractionOfDenseF16Peak: run("independent", true) ? { target: 0.5, default: run("independent", true).fractionOfDenseF16Peak, best: best?.fractionOfDenseF16Peak, bestConfig: best?.label } : null,
  rankingVsNoSharing: headline?.rankingSharingSpeedup ? { target: 5, measured: headline.rankingSharingSpeedup } : null,
  scoresWithinBounds: correctness ? correctness.ok : null,
};
// the KV layouts and flash attention side by side (the sweep's default-round runs), pairs/s
const sw = (layout, fa, w, share) =>
  sweep?.runs?.find((r) => r.kvLayout === layout && r.flashAttention === fa && r.workload === w && r.share === share && r.ubatch === 512 && (layout === "streams" || r.roundTokens === sweep.defaultRoundTokens))
    ?.pairsPerSecond ?? null;
res.kvLayouts = [
  ["independent", true],
  ["independent", false],
  ["ranking", true],
].map(([w, share]) => ({ workload: w, share, unified: sw("unified", false, w, share), streams: sw("streams", false, w, share), unifiedFlash: sw("unified", true, w, share), streamsFlash: sw("streams", true, w, share) }));
writeJson(join(a.out, "results.json"), res);

// summary
const f = (x, d = 1) => (typeof x === "number" ? x.toFixed(d) : "-");
console.log(`GPU check (${a.mode}${a.mode === "cpu" ? ": CPU rehearsal, not GPU figures" : ""}), ${f(res.totalSeconds)} s`);
console.log("stage                 status      seconds  started at");
for (const s of stages) console.log(`${s.stage.padEnd(21)} ${String(s.status).slice(0, 11).padEnd(11)} ${f(s.seconds).padStart(7)} ${f(s.startedAt).padStart(10)}${s.note ? `  ${s.note.slice(0, 90)}` : ""}`);
if (correctness) for (const c of correctness.checks) console.log(`${c.ok ? "ok  " : "FAIL"} ${c.name}${c.maxRelDiff !== undefined ? ` (max ${c.maxRelDiff.toExponential(2)})` : ""}`);
for (const r of [...(headline?.runs ?? []), ...(sweep?.runs ?? [])]) {
  console.log(`${r.label.padEnd(92)} ${f(r.pairsPerSecond).padStart(8)} pairs/s ${f(r.evaluatedTokensPerSecond, 0).padStart(8)} tok/s ${f(100 * r.fractionOfDenseF16Peak, 2).padStart(6)}% peak`);
}
for (const p of peers?.peers ?? []) console.log(`${p.system.padEnd(92)} ${f(p.pairsPerSecond).padStart(8)} pairs/s  max|ΔpYes| ${p.maxAbsDiffPYes ?? p.maxAbsDiffPYesCompat ?? "-"}`);
if (peers?.skipped) console.log(`peers: ${peers.skipped}`);
if (peers?.selftest) console.log(`peers self-test (GGUF -> Hugging Face conversion): ${peers.selftest.ok ? "ok" : "FAILED"}`);
for (const e of peers?.errors ?? []) console.log(`peers ${e.stage}: ${e.error}`);
for (const k of res.kvLayouts)
  console.log(`KV layouts, ${k.workload}, sharing ${k.share ? "on" : "off"} (pairs/s): unified ${f(k.unified)}, streams ${f(k.streams)}, unified+FA ${f(k.unifiedFlash)}, streams+FA ${f(k.streamsFlash)}`);
console.log(`targets: ${JSON.stringify(res.targets)}`);
