#!/usr/bin/env node
// Copies the npm packages the device run needs, and nothing else, into STAGE/node_modules:
//   the addon build (cmake-js, node-addon-api, node-api-headers: native/build.mjs), the CLI's
//   imports (commander, fastify, @fastify/swagger, prom-client), the LLaMA vocabulary of the
//   synthetic models (llama-tokenizer-js), each with its dependencies, and of node-llama-cpp
//   only its package.json and the header of its llama.cpp source bundle (the commit, which
//   native/llama.mjs reads with `git bundle list-heads`). The source itself travels as a separate
//   tarball extracted from that bundle (prepare.sh), not the 35 MB bundle, and none of
//   node-llama-cpp's prebuilt libraries (the CUDA one alone is 159 MB, 128 MB compressed: over
//   the device's 64 MiB carry limit).
//   node bench/gpu/pack-modules.mjs STAGE
import { cpSync, existsSync, mkdirSync, openSync, readFileSync, readSync, writeFileSync } from "node:fs";
import { dirname, join, relative } from "node:path";

import { root } from "./common.mjs";

const stage = process.argv[2];
if (!stage) throw new Error("usage: pack-modules.mjs STAGE");
const ROOTS = ["cmake-js", "node-addon-api", "commander", "fastify", "@fastify/swagger", "prom-client", "llama-tokenizer-js"];
const SKIP = /(^|\/)(\.github|docs?|examples?|tests?|__tests__|benchmarks?|coverage|\.nyc_output)$|\.(md|markdown|map|ts\.map)$|(^|\/)(CHANGELOG|HISTORY)(\.\w+)?$/i;

/** A package's folder as Node resolves it from `from` (walking up node_modules folders). */
function find(name, from) {
  for (let dir = from; ; dir = dirname(dir)) {
    const p = join(dir, "node_modules", name);
    if (existsSync(join(p, "package.json"))) return p;
    if (dir === root || dir === dirname(dir)) return null;
  }
}

const seen = new Set();
const queue = ROOTS.map((n) => [n, root]);
while (queue.length) {
  const [name, from] = queue.shift();
  const dir = find(name, from);
  if (!dir) throw new Error(`${name} (needed from ${relative(root, from) || "."}) is not installed: run npm install`);
  if (seen.has(dir)) continue;
  seen.add(dir);
  const pkg = JSON.parse(readFileSync(join(dir, "package.json"), "utf8"));
  for (const dep of Object.keys(pkg.dependencies ?? {})) queue.push([dep, dir]);
}
for (const dir of seen) {
  const dest = join(stage, relative(root, dir));
  cpSync(dir, dest, { recursive: true, filter: (src) => src === dir || (!relative(dir, src).split("/").includes("node_modules") && !SKIP.test(relative(dir, src))) });
}
// node-llama-cpp: package.json and the bundle's header (its first lines, up to the empty line)
const nlc = find("node-llama-cpp", root);
const out = join(stage, "node_modules", "node-llama-cpp");
mkdirSync(join(out, "llama"), { recursive: true });
cpSync(join(nlc, "package.json"), join(out, "package.json"));
const fd = openSync(join(nlc, "llama", "gitRelease.bundle"), "r");
const head = Buffer.alloc(4096);
readSync(fd, head, 0, head.length, 0);
const end = head.indexOf("\n\n");
if (!head.subarray(0, 16).toString().startsWith("# v2 git bundle") || end < 0) throw new Error("unexpected gitRelease.bundle header");
writeFileSync(join(out, "llama", "gitRelease.bundle"), head.subarray(0, end + 2));
writeFileSync(
  join(out, "TALLREC-GPU-CHECK.txt"),
  "Stub written by bench/gpu/pack-modules.mjs for the device run: package.json and the header of llama/gitRelease.bundle\n(its commit) only. The llama.cpp source extracted from the full bundle travels as bench/.cache/gpu-carry/llama-src-*.tar.xz.\n",
);
console.log(JSON.stringify({ packages: seen.size + 1 }));
