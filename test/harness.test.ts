/**
 * The standalone scorer harness (bench/gpu/, for the GPU benchmark) runs the same scorer code as
 * the addon: built here for the CPU, on a plan dumped by the engine's planner, it must reproduce
 * the engine's scores bit for bit.
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { afterAll, expect, it } from "vitest";

import { fixturesDir, repoRoot } from "./helpers/data.js";
import { testModels } from "./helpers/models.js";

const dir = mkdtempSync(join(tmpdir(), "tallrec-harness-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

it("reproduces engine.score bit for bit from a dumped plan", async () => {
  const m = await testModels();
  const node = (args: string[]) => execFileSync(process.execPath, args, { cwd: repoRoot, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
  const harness = node([join(repoRoot, "bench/gpu/build.mjs")])
    .trim()
    .split("\n")
    .pop()!;
  const plan = join(dir, "plan.bin");
  // TALLRec book rows from the committed sample (laid out like a data folder: tallrec/book/test.json)
  const dumped = JSON.parse(node([join(repoRoot, "bench/gpu/dump-plan.mjs"), "--model", m.tiny, "--lora", m.loraA, "--out", plan, "--prompts", "40", "--domain", "book", "--data", fixturesDir]).trim());
  expect(dumped.prompts).toBe(40);
  expect(dumped.decodedTokens).toBeLessThan(dumped.promptTokens); // the template prefix is shared
  const values = join(dir, "values.bin");
  const report = JSON.parse(execFileSync(harness, ["--model", m.tiny, "--lora", m.loraA, "--plan", plan, "--threads", process.env.TALLREC_THREADS ?? "1", "--reps", "1", "--out", values], { encoding: "utf8" }));
  expect(report.prompts).toBe(40);
  expect(report.decodedTokens).toBe(dumped.decodedTokens);
  const check = JSON.parse(node([join(repoRoot, "bench/gpu/check.mjs"), plan, values]).trim());
  expect(check).toEqual({ prompts: 40, maxRelativeDiff: 0 });
}, 600_000);
