#!/usr/bin/env node
// npm run test:isa — the exactness and batch-invariance tests again, on a second build of
// llama.cpp for another x86-64 instruction-set level (AVX2 + FMA + F16C, no AVX-512), so that a
// machine with AVX-512 also checks the kernels an AVX2-only CPU runs: ggml picks vector widths,
// dot-product kernels and matrix-multiply tiles at compile time, so the native build of an
// AVX-512 machine never runs the AVX2 code paths. The build is cached in native/.cache/ like the
// native one (about 5 minutes once on 2 cores). On a machine where the level cannot run (arm64,
// or an x86-64 CPU without AVX2/FMA/F16C) it says so and counts the run as skipped.
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const ISA = "avx2";
const NEEDS = ["avx2", "fma", "f16c"];
// what the ISA run repeats: the float64 reference (both modes), batch invariance, and both KV layouts
const FILES = ["test/reference-native.test.ts", "test/engine.test.ts", "test/kv-layout.test.ts"];

function skip(reason) {
  process.stdout.write(`test:isa skipped: ${reason}\n0 passed, 0 failed, 1 skipped\n`);
  process.exit(0);
}

if (process.arch !== "x64") skip(`this is ${process.arch}: the ${ISA} level is x86-64 only (arm64/NEON is covered by the native build alone; see the README)`);
const flags = existsSync("/proc/cpuinfo") ? (readFileSync("/proc/cpuinfo", "utf8").match(/^flags\s*:(.*)$/m)?.[1] ?? "").trim().split(/\s+/) : [];
const missing = NEEDS.filter((f) => !flags.includes(f));
if (flags.length > 0 && missing.length > 0) skip(`this CPU lacks ${missing.join(", ")}, so code built for ${ISA} cannot run here`);

const build = spawnSync(process.execPath, [join(root, "native", "build.mjs"), "--isa", ISA], { stdio: "inherit", cwd: root });
if (build.status !== 0) {
  process.stderr.write(`test:isa: building the cpu-${ISA} variant failed (exit ${build.status})\n`);
  process.exit(1);
}
const vitest = join(root, "node_modules", "vitest", "vitest.mjs");
const run = spawnSync(process.execPath, [vitest, "run", "--config", "test/vitest.config.ts", ...FILES], {
  stdio: "inherit",
  cwd: root,
  env: { ...process.env, TALLREC_VARIANT: `cpu-${ISA}` },
});
process.exit(run.status ?? 1);
