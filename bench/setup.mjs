#!/usr/bin/env node
// Builds llama.cpp's llama-bench and llama-server from the same bundled source and with the same
// options as tallrec's addon, into native/.cache (git-ignored), for the benchmarks. Prints the bin
// folder. Not part of npm install.
import { buildLlamaTools, bundleInfo } from "../native/llama.mjs";

const bin = buildLlamaTools(bundleInfo());
process.stdout.write(`${bin}\n`);
