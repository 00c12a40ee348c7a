/**
 * Finding and opening the weight files of a Hugging Face checkpoint directory: safetensors or
 * PyTorch `.bin`, single-file or sharded (with a `*.index.json` weight map).
 */
import { existsSync, statSync } from "node:fs";
import { join } from "node:path";

import { ConvertError } from "./errors.js";
import { readJsonFile } from "./fileio.js";
import { openSafetensors } from "./safetensors.js";
import type { SourceTensor } from "./tensor.js";
import { openTorchCheckpoint } from "./torch.js";

/** Opens one weight file by its extension (`.safetensors`, else a PyTorch zip checkpoint). */
export function openWeightFile(path: string): SourceTensor[] {
  return path.endsWith(".safetensors") ? openSafetensors(path).tensors : openTorchCheckpoint(path).tensors;
}

/** The tensors of several files, by name; a name in two files is an error. */
function collect(files: string[]): Map<string, SourceTensor> {
  const out = new Map<string, SourceTensor>();
  for (const f of files) {
    for (const t of openWeightFile(f)) {
      const prev = out.get(t.name);
      if (prev) throw new ConvertError(f, `tensor ${t.name} is also in ${prev.file}`);
      out.set(t.name, t);
    }
  }
  return out;
}

/** The weights of a checkpoint: tensors by name, and the files they came from. */
export interface CheckpointWeights {
  files: string[];
  tensors: Map<string, SourceTensor>;
}

function fromIndex(dir: string, indexName: string): CheckpointWeights {
  const indexPath = join(dir, indexName);
  const index = readJsonFile(indexPath) as { weight_map?: Record<string, string> };
  const map = index.weight_map;
  if (!map || typeof map !== "object") throw new ConvertError(indexPath, "no weight_map");
  const shards = [...new Set(Object.values(map))];
  for (const s of shards) {
    if (typeof s !== "string" || s.includes("/") || s.includes("\\")) throw new ConvertError(indexPath, `bad shard name ${JSON.stringify(s)}`);
    if (!existsSync(join(dir, s))) throw new ConvertError(indexPath, `shard ${s} is missing`);
  }
  const files = shards.map((s) => join(dir, s));
  const tensors = collect(files);
  for (const [name, shard] of Object.entries(map)) {
    const t = tensors.get(name);
    if (!t) throw new ConvertError(indexPath, `weight_map lists ${name} in ${shard}, but no shard has it`);
    if (t.file !== join(dir, shard)) throw new ConvertError(indexPath, `weight_map puts ${name} in ${shard}, but it is in ${t.file}`);
  }
  return { files, tensors };
}

/**
 * Opens the model weights of a Hugging Face checkpoint directory, preferring safetensors:
 * `model.safetensors.index.json` (sharded), `model.safetensors`, `pytorch_model.bin.index.json`,
 * `pytorch_model.bin`.
 *
 * @throws {ConvertError} when none is present or a file is invalid.
 */
export function openModelWeights(dir: string): CheckpointWeights {
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new ConvertError(dir, "not a directory");
  for (const index of ["model.safetensors.index.json", "pytorch_model.bin.index.json"]) {
    if (existsSync(join(dir, index)) && (index.startsWith("model") || !existsSync(join(dir, "model.safetensors")))) return fromIndex(dir, index);
  }
  for (const single of ["model.safetensors", "pytorch_model.bin"]) {
    const p = join(dir, single);
    if (existsSync(p)) return { files: [p], tensors: collect([p]) };
  }
  throw new ConvertError(dir, "no weights: expected model.safetensors, pytorch_model.bin or a sharded *.index.json");
}
