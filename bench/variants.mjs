#!/usr/bin/env node
// npm run bench:variants [-- --model tiny|bench|PATH --prompts 100 --threads 2 --reps 3]
//
// The addon built against llama.cpp compiled from the bundled source with native CPU flags (the
// default, build/cpu) against the addon linked to node-llama-cpp's prebuilt CPU libraries
// (TALLREC_LLAMA=prebuilt, build/cpu-prebuilt), on the same prompts, alternating between them in
// child processes (TALLREC_VARIANT picks the build). Builds the prebuilt variant when missing
// (seconds) and leaves the default build in place.
import { execFileSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const { values: a } = parseArgs({
  options: {
    model: { type: "string", default: "tiny" },
    prompts: { type: "string", default: "100" },
    threads: { type: "string", default: "2" },
    reps: { type: "string", default: "3" },
    child: { type: "boolean", default: false },
  },
});

async function child() {
  const { Engine } = await import("../dist/index.js");
  const { ensureTestModels } = await import("../dist/synth/index.js");
  const model = a.model === "tiny" ? (await ensureTestModels(join(root, "models"))).tiny : a.model === "bench" ? join(root, "models", "bench.gguf") : a.model;
  const rows = JSON.parse(readFileSync(join(root, "..", "shared", "data", "tallrec", "movie", "test.json"), "utf8")).slice(0, Number(a.prompts));
  const engine = await Engine.load({ model, gpu: "cpu", threads: Number(a.threads) });
  await engine.score(rows.slice(0, 4), { share: false });
  const t0 = performance.now();
  const { results: res, stats } = await engine.scoreWithStats(rows, { share: false });
  const seconds = (performance.now() - t0) / 1000;
  const tokens = stats.decodedTokens;
  const variant = engine.info.variant;
  await engine.close();
  process.stdout.write(JSON.stringify({ variant, seconds, tokens, pYes: res.map((r) => r.pYes) }) + "\n");
}

async function main() {
  if (!existsSync(join(root, "build", "cpu-prebuilt", "variant.json"))) {
    execFileSync(process.execPath, [join(root, "native", "build.mjs")], { env: { ...process.env, TALLREC_LLAMA: "prebuilt" }, stdio: "inherit" });
    execFileSync(process.execPath, [join(root, "native", "build.mjs")], { stdio: "inherit" }); // restore the default variants
  }
  const runs = { cpu: [], "cpu-prebuilt": [] };
  const answers = {};
  for (let r = 0; r < Number(a.reps); r++) {
    for (const v of Object.keys(runs)) {
      const out = execFileSync(process.execPath, [fileURLToPath(import.meta.url), "--child", ...process.argv.slice(2)], { env: { ...process.env, TALLREC_VARIANT: v }, encoding: "utf8" });
      const res = JSON.parse(out.trim().split("\n").pop());
      runs[v].push(res.tokens / res.seconds);
      answers[v] = res.pYes;
    }
  }
  const median = (xs) => [...xs].sort((p, q) => p - q)[Math.floor(xs.length / 2)];
  const src = median(runs.cpu);
  const pre = median(runs["cpu-prebuilt"]);
  const diff = Math.max(...answers.cpu.map((p, i) => Math.abs(p - answers["cpu-prebuilt"][i])));
  console.log("| llama.cpp | decoded tokens/s (median) |");
  console.log("| --- | ---: |");
  console.log(`| built from the bundled source (default) | ${src.toFixed(0)} |`);
  console.log(`| node-llama-cpp's prebuilt libraries | ${pre.toFixed(0)} |`);
  console.log(`\nsource / prebuilt: ${(src / pre).toFixed(2)}x; max |ΔpYes| ${diff.toExponential(1)}`);
}

if (a.child) await child();
else await main();
