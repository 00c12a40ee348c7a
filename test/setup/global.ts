/**
 * vitest globalSetup: generates the synthetic test models in `models/` (once;
 * up-to-date files are kept, see ensureTestModels).
 */
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { ensureTestModels } from "../../src/synth/index.js";

export default async function setup(): Promise<void> {
  const root = fileURLToPath(new URL("../..", import.meta.url));
  await ensureTestModels(join(root, "models"));
}
