import { readFileSync, readdirSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { defineConfig } from "vitest/config";

const root = fileURLToPath(new URL("..", import.meta.url));

/*
 * The two halves of the suite. `npm test` runs every test file (test/**\/*.test.ts) as one run;
 * `npm run test:unit` runs UNIT_TESTS alone (test/vitest.unit.config.ts), `npm run test:addon`
 * ADDON_TESTS (test/vitest.addon.config.ts). Every test file is in exactly one list: both halves
 * refuse to start otherwise (checkTestSets), so a new file cannot be left out of them.
 */

/**
 * Pure TypeScript: neither the native addon (Engine.load, loadBinding, quantize, `tallrec inspect`)
 * nor node-llama-cpp, nor the compiled CLI in dist/ (child processes), so they need no build at all.
 * Generated GGUF files (testModels, src/synth) are plain TypeScript and allowed.
 */
export const UNIT_TESTS = [
  "test/chatrec-units.test.ts",
  "test/convert-formats.test.ts",
  "test/convert-model.test.ts",
  "test/gguf.test.ts",
  "test/io-checkpoint.test.ts",
  "test/io-csv.test.ts",
  "test/io-jsonl.test.ts",
  "test/io-table.test.ts",
  "test/layers.test.ts",
  "test/metrics.test.ts",
  "test/plan.test.ts",
  "test/cost.test.ts",
  "test/prompt.test.ts",
  "test/recsys-data.test.ts",
  "test/recsys-metrics.test.ts",
  "test/recsys-ml100k.test.ts",
  "test/recsys-models.test.ts",
  "test/recsys-persist.test.ts",
  "test/recsys-split.test.ts",
  "test/recsys-synthetic.test.ts",
  "test/scheduler.test.ts",
];

/** Load the addon or node-llama-cpp's llama.cpp, or run the built CLI / bench scripts over dist/ (npm test's pretest builds it). */
export const ADDON_TESTS = [
  "test/threads.test.ts", // Engine, the thread governor, competing processes
  "test/kv-layout.test.ts", // Engine, the streams KV layout
  "test/backend.test.ts", // Engine.load, backend selection
  "test/chatrec-cli.test.ts", // dist/ CLI, Engine
  "test/chatrec-engine.test.ts", // Engine
  "test/chatrec-http.test.ts", // Engine
  "test/cli.test.ts", // dist/cli/main.js
  "test/convert-lora.test.ts", // Engine scores the converted adapter
  "test/convert-merge.test.ts", // quantizeModel (addon), Engine
  "test/distributed.test.ts", // dist/ CLI workers, redis-server
  "test/engine.test.ts", // Engine
  "test/error-codes.test.ts", // every error code through Engine, the dist/ CLI and the server
  "test/errors.test.ts", // Engine
  "test/exact-mode.test.ts", // dist/ CLI
  "test/fuzz.test.ts", // bench/fuzz over dist/ and Engine
  "test/generate.test.ts", // Engine
  "test/harness.test.ts", // bench/gpu harness, built with llama.cpp
  "test/hostile-batch.test.ts", // dist/ CLI
  "test/hostile-convert.test.ts", // dist/ CLI and dist/convert in a child
  "test/hostile-gguf.test.ts", // dist/ CLI (inspect, score), llama.cpp in a child
  "test/hostile-http.test.ts", // Engine, server
  "test/native-errors.test.ts", // loadBinding: the addon's error codes
  "test/plots.test.ts", // dist/ CLI (eval --plot)
  "test/reference-native.test.ts", // Engine against the float64 reference
  "test/reference.test.ts", // node-llama-cpp
  "test/server-chat.test.ts", // Engine
  "test/server-cli.test.ts", // dist/ CLI (serve)
  "test/server-http.test.ts", // Engine
  "test/server-mixed.test.ts", // Engine
  "test/server-openai.test.ts", // Engine
  "test/server.test.ts", // Engine
  "test/synth.test.ts", // node-llama-cpp loads the generated models
  "test/web.test.ts", // Engine, Chromium
];

/** What a unit test must not use: the addon, node-llama-cpp, the compiled dist/ or child processes (which run it). */
const NEEDS_A_BUILD = /\bEngine\.load\b|\bloadBinding\b|\bquantize(Model|Command)\b|node-llama-cpp|["'/]dist["'/]|node:child_process|\brun(Cli|Node)\b/;

/**
 * Throws unless every test/**\/*.test.ts file is in exactly one of UNIT_TESTS and ADDON_TESTS and no
 * unit test's text names what needs a build (NEEDS_A_BUILD); warns about listed files that do not exist.
 */
export function checkTestSets(): void {
  const files = (readdirSync(`${root}/test`, { recursive: true }) as string[])
    .map((f) => `test/${f.split("\\").join("/")}`)
    .filter((f) => f.endsWith(".test.ts"))
    .sort();
  const problems: string[] = [];
  for (const f of files) {
    const n = UNIT_TESTS.filter((u) => u === f).length + ADDON_TESTS.filter((a) => a === f).length;
    if (n === 0) problems.push(`${f} is in neither UNIT_TESTS nor ADDON_TESTS`);
    if (n > 1) problems.push(`${f} is listed ${n} times`);
  }
  // a listed file that does not exist (renamed, removed, or not written yet) runs nothing: said, not fatal
  for (const f of [...UNIT_TESTS, ...ADDON_TESTS]) if (!files.includes(f)) console.warn(`test/vitest.config.ts: ${f} is listed but does not exist`);
  for (const f of UNIT_TESTS.filter((u) => files.includes(u))) {
    const m = NEEDS_A_BUILD.exec(readFileSync(`${root}/${f}`, "utf8"));
    if (m) problems.push(`${f} is in UNIT_TESTS but uses ${m[0]} (move it to ADDON_TESTS)`);
  }
  if (problems.length > 0) {
    throw new Error(`test/vitest.config.ts: the unit/addon split is out of date:\n  ${problems.join("\n  ")}\nAdd each test file to UNIT_TESTS (no addon, no node-llama-cpp, no dist/) or ADDON_TESTS.`);
  }
}

/** The one configuration of every run; only the files differ. */
export function testConfig(include: string[]) {
  return defineConfig({
    root,
    test: {
      include,
      globalSetup: ["test/setup/global.ts"],
      testTimeout: 120_000,
      hookTimeout: 300_000,
      // Two cores: native tests load models and use threads; run files one at a time.
      fileParallelism: false,
      // One llama.cpp thread per engine (and CLI child): with two, any other load on the machine
      // makes their per-operation synchronisation 10-30x slower (seen on a shared 2-core VM).
      env: { TALLREC_THREADS: process.env.TALLREC_THREADS ?? "1" },
    },
  });
}

export default testConfig(["test/**/*.test.ts"]);
