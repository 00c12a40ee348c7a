/**
 * The hostile-input fuzzer (bench/fuzz, `npm run fuzz`): its saved crashers (test/fixtures/fuzz,
 * recipes of format + operations) replay without a failure, and a short seeded run over every
 * format finds none. The fuzzer runs every mutant through the real entry points in child processes
 * with time and memory limits, so this test only reads its JSON summary.
 */
import { join } from "node:path";

import { describe, expect, it } from "vitest";

import { repoRoot } from "./helpers/data.js";
import { runNode } from "./helpers/hostile.js";

const fuzz = join(repoRoot, "bench", "fuzz", "fuzz.mjs");

interface Summary {
  mutants: number;
  failures: number;
  byFormat: Record<string, Record<string, number>>;
  failed: unknown[];
}

async function runFuzz(args: string[]): Promise<Summary> {
  const r = await runNode([fuzz, ...args, "--json", "--no-save"], { timeoutMs: 600_000 });
  expect(r.signal, r.stderr).toBeNull();
  return JSON.parse(r.stdout) as Summary;
}

describe("fuzzer", () => {
  it("replays every saved crasher without a crash, hang, memory blow-up or silent null", async () => {
    const s = await runFuzz(["--replay"]);
    expect(s.failed).toEqual([]);
    expect(s.mutants).toBeGreaterThan(0);
  });

  it("a short seeded run over every format finds no failure", async () => {
    const s = await runFuzz(["--cases", "36", "--seed", "20251", "--seconds", "300"]);
    expect(s.failed).toEqual([]);
    expect(s.mutants).toBe(36);
    expect(Object.keys(s.byFormat).length).toBeGreaterThanOrEqual(4);
  });
});
