#!/usr/bin/env node
// Builds the native addon (run by `npm install`; safe to re-run).
//
// llama.cpp comes from node-llama-cpp's package: its source as a git bundle
// (llama/gitRelease.bundle) and its prebuilt shared libraries
// (@node-llama-cpp/linux-x64[-cuda]). Nothing is downloaded.
//
// Variants, each one addon file under build/<variant>/tallrec.node:
//   cpu          llama.cpp built from the bundle, static, native CPU flags (default)
//   cpu-prebuilt linked against node-llama-cpp's prebuilt CPU libraries (TALLREC_LLAMA=prebuilt)
//   cuda         llama.cpp built from the bundle with CUDA (when nvcc is present and a GPU is
//                detected, or TALLREC_CUDA=1 / TALLREC_CUDA_ARCHS=90;89 ask for it)
//   cuda-prebuilt linked against the prebuilt CUDA libraries (whenever they are installed; the
//                no-nvcc GPU path; needs libcudart/libcublas 13 at run time)
//
// llama.cpp builds are cached in native/.cache/<key>/ keyed by the bundle's commit and the build
// options, so rebuilding the addon never rebuilds llama.cpp. Environment:
//   TALLREC_LLAMA=source|prebuilt   where the CPU variant's llama.cpp comes from (default source)
//   TALLREC_CUDA=0|1|auto           build the CUDA-from-source variant (default auto)
//   TALLREC_CUDA_ARCHS="90"         CUDA architectures (default: detected with nvidia-smi)
//   TALLREC_JOBS=N                  parallel build jobs (default: number of CPUs)
//   TALLREC_SKIP_NATIVE=1           do nothing (CI steps that only need the TypeScript)
//
// `node native/build.mjs --isa avx2` builds one more CPU variant, cpu-avx2 (llama.cpp for AVX2 +
// FMA + F16C without AVX-512, see ISA_LEVELS in llama.mjs), for `npm run test:isa`. It is not
// listed in build/variants.json, so the engine never picks it by itself; TALLREC_VARIANT=cpu-avx2
// selects it.

import { existsSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";

import { ISA_LEVELS, buildLlama, bundleInfo, detectCudaArchs, extractSource, findNvcc, here, jobs, log, packageDir, root, run } from "./llama.mjs";

function prebuiltDir(pkg, sub) {
  const dir = packageDir(pkg);
  if (!dir) return null;
  const bins = join(dir, "bins", sub);
  return existsSync(bins) ? bins : null;
}

/** Headers for the prebuilt libraries come from the same bundle (they match, see the notes). */
function headersFor(info) {
  const src = extractSource(info);
  return [join(src, "include"), join(src, "ggml", "include")];
}

/** Builds one addon variant into build/<variant>/ and records it there (variant.json). */
function cmakeJs(variant, defs, record, env = process.env) {
  const out = join(root, "build", variant);
  const cli = join(packageDir("cmake-js"), "bin", "cmake-js");
  const args = [cli, "compile", "--directory", here, "--out", out, "--config", "Release", "--parallel", jobs];
  for (const [k, v] of Object.entries(defs)) args.push(`--CD${k}=${v}`);
  log(`compiling addon variant "${variant}"`);
  run(process.execPath, args, { cwd: root, env });
  const built = join(out, "Release", "tallrec.node");
  if (!existsSync(built)) throw new Error(`addon variant ${variant} did not produce ${built}`);
  writeFileSync(join(out, "variant.json"), JSON.stringify({ name: variant, ...record }, null, 2) + "\n");
  return { name: variant, ...record };
}

/** The extra ISA-level CPU variant for test:isa (x86-64 only; returns false where it can't exist). */
function buildIsaVariant(isa) {
  if (!ISA_LEVELS[isa] || isa === "native") throw new Error(`--isa must be one of ${Object.keys(ISA_LEVELS).filter((k) => k !== "native").join(", ")}`);
  if (process.arch !== "x64") {
    log(`--isa ${isa}: this is ${process.arch}, not x86-64; no ${isa} variant can be built or run here`);
    return false;
  }
  const info = bundleInfo();
  const prefix = buildLlama(info, { cuda: false, archs: [], isa });
  cmakeJs(`cpu-${isa}`, { TALLREC_LLAMA_PREFIX: prefix }, { backend: "cpu", isa });
  log(`done: cpu-${isa} (select it with TALLREC_VARIANT=cpu-${isa})`);
  return true;
}

function main() {
  const isaArg = process.argv.indexOf("--isa");
  if (isaArg >= 0) {
    buildIsaVariant(process.argv[isaArg + 1]);
    return;
  }
  if (process.env.TALLREC_SKIP_NATIVE === "1") {
    log("TALLREC_SKIP_NATIVE=1: skipping the native build");
    return;
  }
  const info = bundleInfo();
  const mode = (process.env.TALLREC_LLAMA ?? "source").toLowerCase();
  const built = []; // { name, backendDir? }

  if (mode === "prebuilt") {
    const bins = prebuiltDir("@node-llama-cpp/linux-x64", "linux-x64");
    if (!bins) throw new Error("TALLREC_LLAMA=prebuilt needs @node-llama-cpp/linux-x64 (an optional dependency of node-llama-cpp): npm install --include=optional");
    const [inc, ggmlInc] = headersFor(info);
    built.push(cmakeJs("cpu-prebuilt", { TALLREC_PREBUILT_DIR: bins, TALLREC_PREBUILT_SUFFIX: "v0.4.0", LLAMA_INCLUDE: inc, GGML_INCLUDE: ggmlInc }, { backend: "cpu", backendDir: bins }));
  } else if (mode === "source") {
    const prefix = buildLlama(info, { cuda: false, archs: [] });
    built.push(cmakeJs("cpu", { TALLREC_LLAMA_PREFIX: prefix }, { backend: "cpu" }));
  } else {
    throw new Error(`TALLREC_LLAMA must be "source" or "prebuilt", not "${mode}"`);
  }

  // CUDA from source: asked for, or nvcc present and a GPU detected.
  const cudaWanted = (process.env.TALLREC_CUDA ?? "auto").toLowerCase();
  const nvcc = findNvcc();
  if (cudaWanted !== "0") {
    const archs = detectCudaArchs();
    if (cudaWanted === "1" || (nvcc && archs.length > 0)) {
      if (!nvcc) throw new Error("TALLREC_CUDA=1 but nvcc was not found (PATH or /usr/local/cuda/bin)");
      if (archs.length === 0) throw new Error("TALLREC_CUDA=1 but no GPU was detected: set TALLREC_CUDA_ARCHS (e.g. 90 for H100/H200)");
      const env = { ...process.env, PATH: `${dirname(nvcc)}:${process.env.PATH}`, CUDACXX: nvcc };
      const prefix = buildLlama(info, { cuda: true, archs, env });
      built.push(cmakeJs("cuda", { TALLREC_LLAMA_PREFIX: prefix, TALLREC_CUDA: "ON", CMAKE_CUDA_ARCHITECTURES: archs.join(";") }, { backend: "cuda" }, env));
    }
  }

  // CUDA from the prebuilt libraries: cheap to link, used when no source CUDA build exists.
  const cudaBins = prebuiltDir("@node-llama-cpp/linux-x64-cuda", "linux-x64-cuda");
  if (cudaWanted !== "0" && cudaBins && !built.some((b) => b.name === "cuda")) {
    const [inc, ggmlInc] = headersFor(info);
    try {
      built.push(cmakeJs("cuda-prebuilt", { TALLREC_PREBUILT_DIR: cudaBins, TALLREC_PREBUILT_SUFFIX: "cuda.v0.4.0", LLAMA_INCLUDE: inc, GGML_INCLUDE: ggmlInc }, { backend: "cuda", backendDir: cudaBins }));
    } catch (err) {
      log(`note: the prebuilt-CUDA variant was not built (${err.message}); CPU works as usual`);
    }
  }

  writeFileSync(join(root, "build", "variants.json"), JSON.stringify({ llamaCppCommit: info.commit, variants: built }, null, 2) + "\n");
  log(`done: ${built.map((b) => b.name).join(", ")}`);
}

try {
  main();
} catch (err) {
  log(`error: ${err.message}`);
  log("the native addon could not be built. TALLREC_LLAMA=prebuilt npm install links node-llama-cpp's prebuilt libraries instead.");
  process.exit(1);
}
