/**
 * Checks of GGUF files before llama.cpp sees them: llama.cpp reports many problems only as a
 * generic load failure or, for some malformed input, aborts the process (see gguf/checks.ts for
 * the assert sites), so the model and each adapter are first read with tallrec's own GGUF reader,
 * and every problem is named precisely.
 */
import { checkLlamaModel, checkLoraAdapter, q } from "../gguf/checks.js";
import { printable } from "../printable.js";
import { GgufError, getMetadataString, openGgufSync, readTensorF32, type GgufFile } from "../gguf/index.js";

export { checkLoraScale, MAX_LORA_SCALE, MAX_LORA_WEIGHT } from "../gguf/checks.js";

export interface ModelSummary {
  path: string;
  architecture: string;
  file: GgufFile;
}

/**
 * Opens a model GGUF and checks that it is a LLaMA model (not an adapter) that llama.cpp can load
 * and run: metadata types and ranges, the vocabulary, and every tensor's type for its role.
 */
export function checkModelFile(path: string): ModelSummary {
  const file = openGgufSync(path);
  const type = getMetadataString(file, "general.type", "model");
  if (type === "adapter") throw new GgufError(path, "this is a LoRA adapter, not a model (pass it as an adapter)");
  const architecture = getMetadataString(file, "general.architecture", "");
  if (!architecture) throw new GgufError(path, "missing general.architecture: not a llama.cpp model file");
  if (file.tensors.length === 0) throw new GgufError(path, "the file has no tensors (a vocabulary-only GGUF cannot score)");
  checkLlamaModel(file);
  return { path, architecture, file };
}

export interface AdapterSummary {
  path: string;
  architecture: string;
  alpha: number | undefined;
  rank: number;
  /** Base tensors the adapter modifies, e.g. "blk.0.attn_q.weight". */
  targets: string[];
}

/**
 * Checks an adapter on its own (no model): metadata types, tensor names and types, alpha, and
 * (unless `weights` is false) that every weight is finite and of sane size. Returns the open file.
 */
export function checkAdapterContent(path: string, options: { weights?: boolean } = {}): { file: GgufFile; alpha: number | undefined; rank: number } {
  const file = openGgufSync(path);
  const type = getMetadataString(file, "general.type", "");
  if (type !== "adapter") throw new GgufError(path, `not a LoRA adapter (general.type is ${JSON.stringify(type || "missing")})`);
  const content = checkLoraAdapter(file, options.weights === false ? undefined : (name) => readTensorF32(file, name));
  return { file, alpha: content.alpha, rank: content.maxRank };
}

/**
 * Opens a LoRA adapter GGUF and checks it on its own (see {@link checkAdapterContent}) and against
 * the model: architecture, and for every lora_a/lora_b pair the base tensor's presence and all
 * three shapes.
 */
export function checkAdapterFile(path: string, model: ModelSummary): AdapterSummary {
  const { file, alpha } = checkAdapterContent(path, { weights: false });
  const architecture = getMetadataString(file, "general.architecture", "");
  if (architecture !== model.architecture) {
    throw new GgufError(path, `adapter architecture ${q(architecture)} does not match the model's ${JSON.stringify(model.architecture)} (${model.path})`);
  }

  const targets: string[] = [];
  let rank = 0;
  for (const a of file.tensors) {
    if (!a.name.endsWith(".lora_a")) continue;
    const baseName = a.name.slice(0, -".lora_a".length);
    const b = file.tensorsByName.get(`${baseName}.lora_b`);
    if (!b) throw new GgufError(path, `tensor ${printable(a.name)} has no matching ${printable(baseName)}.lora_b`);
    const base = model.file.tensorsByName.get(baseName);
    if (!base) throw new GgufError(path, `targets ${printable(baseName)}, which the model ${model.path} does not have`);
    const [nIn, nOut] = base.dims;
    const shape = (d: number[]) => `[${d.join(", ")}]`;
    if (a.dims.length !== 2 || b.dims.length !== 2 || a.dims[0] !== nIn || b.dims[1] !== nOut || a.dims[1] !== b.dims[0]) {
      throw new GgufError(path, `shape mismatch for ${printable(baseName)}: base ${shape(base.dims)}, lora_a ${shape(a.dims)} (expected [${nIn}, r]), lora_b ${shape(b.dims)} (expected [r, ${nOut}])`);
    }
    rank = Math.max(rank, a.dims[1]);
    targets.push(baseName);
  }
  for (const b of file.tensors) {
    if (b.name.endsWith(".lora_b") && !file.tensorsByName.has(`${b.name.slice(0, -".lora_b".length)}.lora_a`)) {
      throw new GgufError(path, `tensor ${printable(b.name)} has no matching .lora_a`);
    }
  }
  if (targets.length === 0) throw new GgufError(path, "the adapter has no LoRA tensors");
  // the weights last: the shape checks are cheap and say more about a wrong file
  checkLoraAdapter(file, (name) => readTensorF32(file, name));
  return { path, architecture, alpha, rank, targets };
}
