// Shared by native/build.mjs (the addon) and bench/setup.mjs (llama.cpp's own tools for the
// benchmarks): where llama.cpp's source comes from, and how it is built and cached.
import { execFileSync, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, rmSync, writeFileSync, renameSync } from "node:fs";
import { createRequire } from "node:module";
import { cpus } from "node:os";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";

export const here = dirname(fileURLToPath(import.meta.url));
export const root = resolve(here, "..");
const require = createRequire(import.meta.url);
export const cacheRoot = join(here, ".cache");
export const jobs = String(Number(process.env.TALLREC_JOBS) || cpus().length || 2);

export function log(msg) {
  process.stderr.write(`[tallrec build] ${msg}\n`);
}

export function run(cmd, args, opts = {}) {
  // stdout of the build tools goes to stderr: npm shows it, and nothing pollutes a caller's stdout
  const r = spawnSync(cmd, args, { stdio: ["ignore", 2, 2], ...opts });
  if (r.error) throw new Error(`${cmd}: ${r.error.message}`);
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(" ")} exited with ${r.status}`);
}

export function which(cmd) {
  const r = spawnSync("sh", ["-c", `command -v ${cmd}`], { encoding: "utf8" });
  return r.status === 0 ? r.stdout.trim() : null;
}

/** A package's folder, found the way Node finds it (without relying on its "exports"). */
export function packageDir(name) {
  for (const base of require.resolve.paths(name) ?? []) {
    const dir = join(base, name);
    if (existsSync(join(dir, "package.json"))) return dir;
  }
  return null;
}

export function bundleInfo() {
  const dir = packageDir("node-llama-cpp");
  if (!dir) throw new Error("node-llama-cpp is not installed: run npm install");
  const bundle = join(dir, "llama", "gitRelease.bundle");
  if (!existsSync(bundle)) throw new Error(`llama.cpp source bundle missing: ${bundle}`);
  const heads = execFileSync("git", ["bundle", "list-heads", bundle], { encoding: "utf8" });
  const commit = heads.trim().split(/\s+/)[0];
  return { bundle, commit };
}

/** Extract llama.cpp's source from the bundle into dir (once per commit). */
export function extractSource({ bundle, commit }) {
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

export function detectCudaArchs() {
  if (process.env.TALLREC_CUDA_ARCHS) return process.env.TALLREC_CUDA_ARCHS.split(/[;,\s]+/).filter(Boolean);
  const smi = which("nvidia-smi");
  if (!smi) return [];
  const r = spawnSync(smi, ["--query-gpu=compute_cap", "--format=csv,noheader"], { encoding: "utf8" });
  if (r.status !== 0) return [];
  return [...new Set(r.stdout.split("\n").map((s) => s.trim().replace(".", "")).filter((s) => /^\d+$/.test(s)))];
}

export function findNvcc() {
  return which("nvcc") ?? (existsSync("/usr/local/cuda/bin/nvcc") ? "/usr/local/cuda/bin/nvcc" : null);
}

/**
 * x86-64 instruction-set levels a CPU build can target besides "native" (-march=native).
 * "avx2": AVX2 + FMA + F16C (+ SSE4.2, BMI2), no AVX-512, the level of most x86-64 CPUs from
 * 2013-2020 (Haswell, Zen 1-3). `npm run test:isa` builds it next to the native build so that an
 * AVX-512 machine also checks the kernels an AVX2-only machine runs (different vector widths,
 * different reduction orders).
 */
export const ISA_LEVELS = {
  native: { GGML_NATIVE: "ON" },
  avx2: {
    GGML_NATIVE: "OFF",
    GGML_SSE42: "ON",
    GGML_AVX: "ON",
    GGML_AVX2: "ON",
    GGML_BMI2: "ON",
    GGML_FMA: "ON",
    GGML_F16C: "ON",
    GGML_AVX_VNNI: "OFF",
    GGML_AVX512: "OFF",
    GGML_AVX512_VBMI: "OFF",
    GGML_AVX512_VNNI: "OFF",
    GGML_AVX512_BF16: "OFF",
    GGML_AMX_TILE: "OFF",
    GGML_AMX_INT8: "OFF",
    GGML_AMX_BF16: "OFF",
  },
};

/** The CMake options every tallrec build of llama.cpp uses (the addon's and the benchmarks'). */
export function llamaOptions({ cuda = false, archs = [], isa = "native" } = {}) {
  const isaOptions = ISA_LEVELS[isa];
  if (!isaOptions) throw new Error(`unknown ISA level "${isa}" (one of ${Object.keys(ISA_LEVELS).join(", ")})`);
  return {
    CMAKE_BUILD_TYPE: "Release",
    BUILD_SHARED_LIBS: "OFF",
    CMAKE_POSITION_INDEPENDENT_CODE: "ON",
    ...isaOptions,
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
}

function cacheKey(info, options) {
  return createHash("sha256").update(info.commit).update(JSON.stringify(options)).digest("hex").slice(0, 12);
}

function configure(src, build, options, extra, env) {
  run("cmake", ["-S", src, "-B", build, "-G", "Unix Makefiles", ...Object.entries({ ...options, ...extra }).map(([k, v]) => `-D${k}=${v}`)], { env });
}

/** Configure, build and install llama.cpp (static libraries) into a cached prefix. */
export function buildLlama(info, { cuda = false, archs = [], isa = "native", env = process.env } = {}) {
  const options = llamaOptions({ cuda, archs, isa });
  const key = cacheKey(info, options);
  const prefix = join(cacheRoot, `llama-${cuda ? "cuda" : "cpu"}${isa === "native" ? "" : `-${isa}`}-${key}`);
  const stamp = join(prefix, ".tallrec-stamp");
  if (existsSync(stamp)) {
    log(`llama.cpp (${cuda ? "CUDA " + archs.join(",") : "CPU"}) is cached in ${relative(root, prefix)}`);
    return prefix;
  }
  const src = extractSource(info);
  const build = `${prefix}.build`;
  log(`building llama.cpp from source (${cuda ? "CUDA " + archs.join(",") : isa === "native" ? "CPU, native flags" : `CPU, ${isa}`}, ${jobs} jobs); this takes a few minutes once`);
  const t0 = Date.now();
  configure(src, build, options, { CMAKE_INSTALL_PREFIX: prefix }, env);
  run("cmake", ["--build", build, "--config", "Release", "-j", jobs], { env });
  run("cmake", ["--install", build, "--config", "Release"], { env });
  writeFileSync(stamp, JSON.stringify({ commit: info.commit, options, seconds: (Date.now() - t0) / 1000 }, null, 2));
  rmSync(build, { recursive: true, force: true });
  log(`llama.cpp built in ${((Date.now() - t0) / 1000).toFixed(0)} s`);
  return prefix;
}


/**
 * Builds llama.cpp's own llama-bench and llama-server from the same source with the same options
 * as the addon (for the benchmarks only; never part of npm install). Returns the bin folder.
 */
export function buildLlamaTools(info, { targets = ["llama-bench", "llama-server"], env = process.env } = {}) {
  const options = {
    ...llamaOptions(),
    LLAMA_BUILD_COMMON: "ON",
    LLAMA_BUILD_TOOLS: "ON",
    LLAMA_BUILD_SERVER: "ON",
    LLAMA_USE_PREBUILT_UI: "OFF",
  };
  const build = join(cacheRoot, `tools-${cacheKey(info, options)}`);
  const bin = join(build, "bin");
  const stamp = join(build, ".tallrec-stamp");
  if (existsSync(stamp) && targets.every((t) => existsSync(join(bin, t)))) return bin;
  const src = extractSource(info);
  log(`building ${targets.join(", ")} from llama.cpp's source (${jobs} jobs); a few minutes once`);
  const t0 = Date.now();
  configure(src, build, options, {}, env);
  run("cmake", ["--build", build, "--config", "Release", "-j", jobs, "--target", ...targets], { env });
  writeFileSync(stamp, JSON.stringify({ commit: info.commit, options, seconds: (Date.now() - t0) / 1000 }, null, 2));
  return bin;
}
