/** The generated test models (created by the global setup; ensured again here, cheaply). */
import { ensureTestModels, type TestModelPaths } from "../../src/synth/index.js";
import { modelsDir } from "./data.js";

let paths: Promise<TestModelPaths> | undefined;

export function testModels(): Promise<TestModelPaths> {
  paths ??= ensureTestModels(modelsDir);
  return paths;
}

/** Relative difference used by the numeric tests: |a - b| / max(1, |b|). */
export function relDiff(a: number, b: number): number {
  return Math.abs(a - b) / Math.max(1, Math.abs(b));
}
