/**
 * Backend choice and llama.cpp's log: "auto" is CUDA when usable, otherwise the CPU with the reason
 * given; "cuda" is CUDA or a load error naming the reason; llama.cpp is quiet unless asked to speak.
 */
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";

import { expect, it } from "vitest";

import { Engine } from "../src/engine/engine.js";
import { loadBinding } from "../src/engine/native.js";
import { repoRoot } from "./helpers/data.js";
import { testModels } from "./helpers/models.js";

const gpuPresent = existsSync("/dev/nvidia0") && loadBinding("auto").backend === "cuda";

it('gpu "cuda" uses CUDA when a GPU is usable and otherwise fails at load, saying why', async () => {
  const m = await testModels();
  if (gpuPresent) {
    const engine = await Engine.load({ model: m.tiny, gpu: "cuda" });
    try {
      expect(engine.info.backend).toBe("cuda");
      expect(engine.info.fallbackReason).toBeUndefined();
      const [r] = await engine.score([{ instruction: "Q", input: "A" }]);
      expect(r.error).toBeUndefined();
    } finally {
      await engine.close();
    }
  } else {
    // the reason names what is missing: no CUDA variant built, no driver, or no device found
    await expect(Engine.load({ model: m.tiny, gpu: "cuda" })).rejects.toThrow(
      /^gpu "cuda" was asked for, but CUDA is not usable here: .*(no CUDA variant of the addon was built|no NVIDIA driver found|found no CUDA device|cuda)/,
    );
  }
});

it('gpu "auto" uses CUDA when a GPU is usable, else the CPU with info.fallbackReason saying why', async () => {
  const m = await testModels();
  const engine = await Engine.load({ model: m.tiny, gpu: "auto" });
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
    }
  } finally {
    await engine.close();
  }
  const cpu = await Engine.load({ model: m.tiny, gpu: "cpu" });
  expect(cpu.info.backend).toBe("cpu");
  expect(cpu.info.fallbackReason).toBeUndefined();
  await cpu.close();
});

it.skipIf(gpuPresent)("the CLI's --gpu cuda exits 1 with the reason when CUDA is not usable; --gpu auto runs on the CPU", async () => {
  const m = await testModels();
  const cli = join(repoRoot, "dist", "cli", "main.js");
  const args = ["score", "-m", m.tiny, "--liked", "Heat (1995)", "--target", "Casino (1995)", "--json"];
  const cuda = spawnSync(process.execPath, [cli, "--gpu", "cuda", ...args], { encoding: "utf8" });
  expect(cuda.status, cuda.stderr).toBe(1);
  expect(cuda.stdout).toBe("");
  expect(cuda.stderr).toMatch(/^tallrec: gpu "cuda" was asked for, but CUDA is not usable here: .+/);
  const auto = spawnSync(process.execPath, [cli, "--gpu", "auto", ...args], { encoding: "utf8" });
  expect(auto.status, auto.stderr).toBe(0);
  expect(JSON.parse(auto.stdout)).toMatchObject({ pYes: expect.any(Number) });
});

it("llama.cpp is silent by default and speaks through the verbose callback", async () => {
  const m = await testModels();
  const script = `
    import { Engine } from ${JSON.stringify(join(repoRoot, "dist", "engine", "engine.js"))};
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
