/**
 * vitest globalSetup: generates the synthetic test models in `models/` (once;
 * up-to-date files are kept, see ensureTestModels), and says once per run which
 * real-data tests are skipped and why (see test/helpers/data.ts).
 */
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { ensureTestModels } from "../../src/synth/index.js";
import { missingRealData } from "../helpers/data.js";

export default async function setup(): Promise<void> {
  const root = fileURLToPath(new URL("../..", import.meta.url));
  const missing = missingRealData();
  if (missing) console.warn(`\n[tallrec tests] ${missing}\n`);
  await ensureTestModels(join(root, "models"));
}
