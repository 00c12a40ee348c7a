import { fileURLToPath } from "node:url";
import { defineConfig } from "vitest/config";

export default defineConfig({
  root: fileURLToPath(new URL("..", import.meta.url)),
  test: {
    include: ["test/**/*.test.ts"],
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
