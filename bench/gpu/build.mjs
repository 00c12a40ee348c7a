#!/usr/bin/env node
// Builds the standalone scorer harness (bench/gpu/harness.cpp + native/src/scorer.cpp) against
// llama.cpp built from node-llama-cpp's bundled source: the CPU build npm install cached, or,
// with --cuda [--archs 90], a CUDA build (needs nvcc; sm_90 is the H100/H200). Prints the binary.
//   node bench/gpu/build.mjs [--cuda] [--archs 90]
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

import { buildLlama, bundleInfo, cacheRoot, findNvcc, run, jobs } from "../../native/llama.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const { values } = parseArgs({ options: { cuda: { type: "boolean", default: false }, archs: { type: "string", default: "90" } } });
const archs = values.archs.split(/[,;]/).filter(Boolean);
let env = process.env;
if (values.cuda) {
  const nvcc = findNvcc();
  if (!nvcc) throw new Error("--cuda needs nvcc (PATH or /usr/local/cuda/bin)");
  env = { ...process.env, PATH: `${dirname(nvcc)}:${process.env.PATH}`, CUDACXX: nvcc };
}
const prefix = buildLlama(bundleInfo(), { cuda: values.cuda, archs: values.cuda ? archs : [], env });
const build = join(cacheRoot, `harness-${values.cuda ? "cuda-" + archs.join("_") : "cpu"}`);
run(
  "cmake",
  ["-S", here, "-B", build, "-DCMAKE_BUILD_TYPE=Release", `-DCMAKE_PREFIX_PATH=${prefix}`, `-DTALLREC_CUDA=${values.cuda ? "ON" : "OFF"}`, ...(values.cuda ? [`-DCMAKE_CUDA_ARCHITECTURES=${archs.join(";")}`] : [])],
  { env },
);
run("cmake", ["--build", build, "-j", jobs], { env });
process.stdout.write(`${join(build, "tallrec-harness")}\n`);
