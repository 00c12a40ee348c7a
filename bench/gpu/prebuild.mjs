#!/usr/bin/env node
// Builds llama.cpp from the bundled source into the very cache folder that native/build.mjs (the
// addon build users run) looks in, with the same options, so that the addon build then only
// compiles the addon. What differs is how, for the one-shot GPU check: Ninja (when present),
// all cores (TALLREC_JOBS), the CPU and CUDA builds side by side, and, for CUDA, the target
// architectures given and GGML_CUDA_FA_ALL_QUANTS off (llama.cpp's default, stated).
// The installed libraries are what buildLlama (native/llama.mjs) would install: the same options,
// prefix and stamp; it is called at the end and must find them.
//   node bench/gpu/prebuild.mjs [--cuda --archs 90]
import { createHash } from "node:crypto";
import { existsSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { parseArgs } from "node:util";

import { buildLlama, bundleInfo, cacheRoot, extractSource, findNvcc, jobs, llamaOptions, root, run, which } from "../../native/llama.mjs";

const { values: a } = parseArgs({ options: { cuda: { type: "boolean", default: false }, archs: { type: "string", default: "90" } } });
const cuda = a.cuda;
const archs = cuda ? a.archs.split(/[,;\s]+/).filter(Boolean) : [];
let env = process.env;
if (cuda) {
  const nvcc = findNvcc();
  if (!nvcc) throw new Error("--cuda needs nvcc (PATH or /usr/local/cuda/bin)");
  env = { ...process.env, PATH: `${dirname(nvcc)}:${process.env.PATH}`, CUDACXX: nvcc };
}
const info = bundleInfo();
const options = llamaOptions({ cuda, archs });
// native/llama.mjs's cache key: sha256(commit, then the options' JSON), first 12 hex digits
const key = createHash("sha256").update(info.commit).update(JSON.stringify(options)).digest("hex").slice(0, 12);
const prefix = join(cacheRoot, `llama-${cuda ? "cuda" : "cpu"}-${key}`);
const stamp = join(prefix, ".tallrec-stamp");
const generator = which("ninja") ? "Ninja" : "Unix Makefiles";
const t0 = Date.now();
const cached = existsSync(stamp);
if (!cached) {
  const src = extractSource(info);
  const build = `${prefix}.build`;
  rmSync(build, { recursive: true, force: true });
  const extra = { CMAKE_INSTALL_PREFIX: prefix, ...(cuda ? { GGML_CUDA_FA_ALL_QUANTS: "OFF" } : {}) };
  process.stderr.write(`[gpu-check] llama.cpp ${cuda ? `CUDA ${archs.join(",")}` : "CPU"}: ${generator}, ${jobs} jobs\n`);
  run("cmake", ["-S", src, "-B", build, "-G", generator, ...Object.entries({ ...options, ...extra }).map(([k, v]) => `-D${k}=${v}`)], { env });
  run("cmake", ["--build", build, "--config", "Release", "-j", jobs], { env });
  run("cmake", ["--install", build, "--config", "Release"], { env });
  writeFileSync(stamp, JSON.stringify({ commit: info.commit, options, seconds: (Date.now() - t0) / 1000, generator, extra }, null, 2));
  rmSync(build, { recursive: true, force: true });
}
const seconds = (Date.now() - t0) / 1000;
// the addon build must find this prefix without building anything
const found = buildLlama(info, { cuda, archs, env });
if (found !== prefix) throw new Error(`native/llama.mjs looks in ${found}, this built ${prefix}: the cache key formula changed, update bench/gpu/prebuild.mjs`);
console.log(JSON.stringify({ backend: cuda ? "cuda" : "cpu", archs, prefix: relative(root, prefix), cached, seconds, generator, jobs: Number(jobs), commit: info.commit }));
