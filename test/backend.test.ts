/**
 * Backend choice and llama.cpp's log: CUDA when asked for and usable, otherwise the CPU with the
 * reason given (never a crash); llama.cpp is quiet unless asked to speak.
 */
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";

import { expect, it } from "vitest";

import { Engine } from "../src/engine.js";
import { loadBinding } from "../src/native.js";
import { repoRoot } from "./helpers/data.js";
import { testModels } from "./helpers/models.js";

const gpuPresent = existsSync("/dev/nvidia0") && loadBinding("auto").backend === "cuda";

it('gpu "cuda" and "auto" use CUDA when a GPU is usable, else fall back to the CPU saying why', async () => {
  const m = await testModels();
  const warnings: string[] = [];
  const engine = await Engine.load({ model: m.tiny, gpu: "cuda", verbose: (level, msg) => level === "warn" && warnings.push(msg) });
  try {
    const info = engine.info;
    const [r] = await engine.score([{ instruction: "Q", input: "A" }]);
    expect(r.error).toBeUndefined();
    if (gpuPresent) {
      expect(info.backend).toBe("cuda");
      expect(info.fallbackReason).toBeUndefined();
    } else {
      expect(info.backend).toBe("cpu");
      expect(info.fallbackReason).toMatch(/^using the CPU: .+/);
      expect(warnings.some((w) => /CUDA was asked for but is not available/.test(w))).toBe(true);
    }
  } finally {
    await engine.close();
  }
  const cpu = await Engine.load({ model: m.tiny, gpu: "cpu" });
  expect(cpu.info.backend).toBe("cpu");
  expect(cpu.info.fallbackReason).toBeUndefined();
  await cpu.close();
});

it("llama.cpp is silent by default and speaks through the verbose callback", async () => {
  const m = await testModels();
  const script = `
    import { Engine } from ${JSON.stringify(join(repoRoot, "dist", "engine.js"))};
    const e = await Engine.load({ model: ${JSON.stringify(m.tiny)}, gpu: "cpu" });
    await e.score([{ instruction: "Q", input: "A" }]);
    await e.close();
    process.stdout.write("ok");`;
  const quiet = spawnSync(process.execPath, ["--input-type=module", "-e", script], { encoding: "utf8" });
  expect(quiet.status, quiet.stderr).toBe(0);
  expect(quiet.stdout).toBe("ok");
  expect(quiet.stderr).toBe("");
  const lines: string[] = [];
  const engine = await Engine.load({ model: m.tiny, gpu: "cpu", verbose: (_level, msg) => lines.push(msg) });
  await engine.close();
  // llama.cpp's own model-loading report arrives through the callback
  await new Promise((r) => setTimeout(r, 50));
  expect(lines.some((l) => /llama_model_load|print_info|load_tensors/.test(l))).toBe(true);
});
