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

import { execFileSync, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, rmSync, writeFileSync, renameSync } from "node:fs";
import { createRequire } from "node:module";
import { cpus } from "node:os";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, "..");
const require = createRequire(import.meta.url);
const cacheRoot = join(here, ".cache");
const jobs = String(Number(process.env.TALLREC_JOBS) || cpus().length || 2);

function log(msg) {
  process.stderr.write(`[tallrec build] ${msg}\n`);
}

function run(cmd, args, opts = {}) {
  // stdout of the build tools goes to stderr: npm shows it, and nothing pollutes a caller's stdout
  const r = spawnSync(cmd, args, { stdio: ["ignore", 2, 2], ...opts });
  if (r.error) throw new Error(`${cmd}: ${r.error.message}`);
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(" ")} exited with ${r.status}`);
}

function which(cmd) {
  const r = spawnSync("sh", ["-c", `command -v ${cmd}`], { encoding: "utf8" });
  return r.status === 0 ? r.stdout.trim() : null;
}

/** A package's folder, found the way Node finds it (without relying on its "exports"). */
function packageDir(name) {
  for (const base of require.resolve.paths(name) ?? []) {
    const dir = join(base, name);
    if (existsSync(join(dir, "package.json"))) return dir;
  }
  return null;
}

function bundleInfo() {
  const dir = packageDir("node-llama-cpp");
  if (!dir) throw new Error("node-llama-cpp is not installed: run npm install");
  const bundle = join(dir, "llama", "gitRelease.bundle");
  if (!existsSync(bundle)) throw new Error(`llama.cpp source bundle missing: ${bundle}`);
  const heads = execFileSync("git", ["bundle", "list-heads", bundle], { encoding: "utf8" });
  const commit = heads.trim().split(/\s+/)[0];
  return { bundle, commit };
}

/** Extract llama.cpp's source from the bundle into dir (once per commit). */
function extractSource({ bundle, commit }) {
  const dir = join(cacheRoot, `src-${commit.slice(0, 12)}`);
  if (existsSync(join(dir, ".tallrec-ok"))) return dir;
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(cacheRoot, { recursive: true });
  log(`extracting llama.cpp ${commit.slice(0, 12)} from ${relative(root, bundle)}`);
  const tmp = `${dir}.tmp`;
  rmSync(tmp, { recursive: true, force: true });
  run("git", ["-c", "advice.detachedHead=false", "clone", "--quiet", bundle, tmp]);
  writeFileSync(join(tmp, ".tallrec-ok"), commit);
  renameSync(tmp, dir);
  return dir;
}

function detectCudaArchs() {
  if (process.env.TALLREC_CUDA_ARCHS) return process.env.TALLREC_CUDA_ARCHS.split(/[;,\s]+/).filter(Boolean);
  const smi = which("nvidia-smi");
  if (!smi) return [];
  const r = spawnSync(smi, ["--query-gpu=compute_cap", "--format=csv,noheader"], { encoding: "utf8" });
  if (r.status !== 0) return [];
  return [...new Set(r.stdout.split("\n").map((s) => s.trim().replace(".", "")).filter((s) => /^\d+$/.test(s)))];
}

function findNvcc() {
  return which("nvcc") ?? (existsSync("/usr/local/cuda/bin/nvcc") ? "/usr/local/cuda/bin/nvcc" : null);
}

/** Configure, build and install llama.cpp (static) into a cached prefix. */
function buildLlama(info, { cuda, archs, env = process.env }) {
  const options = {
    CMAKE_BUILD_TYPE: "Release",
    BUILD_SHARED_LIBS: "OFF",
    CMAKE_POSITION_INDEPENDENT_CODE: "ON",
    GGML_NATIVE: "ON",
    GGML_BACKEND_DL: "OFF",
    GGML_CCACHE: "OFF",
    GGML_OPENMP: "OFF",
    LLAMA_BUILD_COMMON: "OFF",
    LLAMA_BUILD_TESTS: "OFF",
    LLAMA_BUILD_TOOLS: "OFF",
    LLAMA_BUILD_EXAMPLES: "OFF",
    LLAMA_BUILD_SERVER: "OFF",
    LLAMA_BUILD_APP: "OFF",
    LLAMA_OPENSSL: "OFF",
    LLAMA_ALL_WARNINGS: "OFF",
    ...(cuda ? { GGML_CUDA: "ON", CMAKE_CUDA_ARCHITECTURES: archs.join(";") } : {}),
  };
  const key = createHash("sha256").update(info.commit).update(JSON.stringify(options)).digest("hex").slice(0, 12);
  const prefix = join(cacheRoot, `llama-${cuda ? "cuda" : "cpu"}-${key}`);
  const stamp = join(prefix, ".tallrec-stamp");
  if (existsSync(stamp)) {
    log(`llama.cpp (${cuda ? "CUDA " + archs.join(",") : "CPU"}) is cached in ${relative(root, prefix)}`);
    return prefix;
  }
  const src = extractSource(info);
  const build = `${prefix}.build`;
  log(`building llama.cpp from source (${cuda ? "CUDA " + archs.join(",") : "CPU, native flags"}, ${jobs} jobs); this takes a few minutes once`);
  const t0 = Date.now();
  run("cmake", ["-S", src, "-B", build, "-G", "Unix Makefiles", ...Object.entries(options).map(([k, v]) => `-D${k}=${v}`), `-DCMAKE_INSTALL_PREFIX=${prefix}`], { env });
  run("cmake", ["--build", build, "--config", "Release", "-j", jobs], { env });
  run("cmake", ["--install", build, "--config", "Release"], { env });
  writeFileSync(stamp, JSON.stringify({ commit: info.commit, options, seconds: (Date.now() - t0) / 1000 }, null, 2));
  rmSync(build, { recursive: true, force: true });
  log(`llama.cpp built in ${((Date.now() - t0) / 1000).toFixed(0)} s`);
  return prefix;
}

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

function cmakeJs(variant, defs, env = process.env) {
  const out = join(root, "build", variant);
  const cli = join(packageDir("cmake-js"), "bin", "cmake-js");
  const args = [cli, "compile", "--directory", here, "--out", out, "--config", "Release", "--parallel", jobs];
  for (const [k, v] of Object.entries(defs)) args.push(`--CD${k}=${v}`);
  log(`compiling addon variant "${variant}"`);
  run(process.execPath, args, { cwd: root, env });
  const built = join(out, "Release", "tallrec.node");
  if (!existsSync(built)) throw new Error(`addon variant ${variant} did not produce ${built}`);
  return built;
}

function main() {
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
    cmakeJs("cpu-prebuilt", { TALLREC_PREBUILT_DIR: bins, TALLREC_PREBUILT_SUFFIX: "v0.4.0", LLAMA_INCLUDE: inc, GGML_INCLUDE: ggmlInc });
    built.push({ name: "cpu-prebuilt", backend: "cpu", backendDir: bins });
  } else if (mode === "source") {
    const prefix = buildLlama(info, { cuda: false, archs: [] });
    cmakeJs("cpu", { TALLREC_LLAMA_PREFIX: prefix });
    built.push({ name: "cpu", backend: "cpu" });
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
      cmakeJs("cuda", { TALLREC_LLAMA_PREFIX: prefix, TALLREC_CUDA: "ON", CMAKE_CUDA_ARCHITECTURES: archs.join(";") }, env);
      built.push({ name: "cuda", backend: "cuda" });
    }
  }

  // CUDA from the prebuilt libraries: cheap to link, used when no source CUDA build exists.
  const cudaBins = prebuiltDir("@node-llama-cpp/linux-x64-cuda", "linux-x64-cuda");
  if (cudaWanted !== "0" && cudaBins && !built.some((b) => b.name === "cuda")) {
    const [inc, ggmlInc] = headersFor(info);
    try {
      cmakeJs("cuda-prebuilt", { TALLREC_PREBUILT_DIR: cudaBins, TALLREC_PREBUILT_SUFFIX: "cuda.v0.4.0", LLAMA_INCLUDE: inc, GGML_INCLUDE: ggmlInc });
      built.push({ name: "cuda-prebuilt", backend: "cuda", backendDir: cudaBins });
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
