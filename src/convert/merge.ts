/**
 * `merge`: bakes LoRA adapters into a base model's weights, `W' = W + Σ s·B·A` with llama.cpp's
 * scale `s = user_scale · alpha / r` (`s = user_scale` when the adapter has no alpha), so that
 * the merged model scores as the base model with the adapters applied, at no extra cost.
 *
 * Adapted weights are read in float64, updated, and written in their original type: F32, F16 and
 * BF16 directly (rounded to nearest even), Q8_0 by dequantizing, merging and requantizing with
 * ggml's reference Q8_0 rounding. Other quantized types are refused with a message saying how to
 * get there (merge into the F16 model, then quantize). Every other tensor and all metadata are
 * copied unchanged.
 */
import { basename } from "node:path";

import { openGgufSync, readTensorBytes, readTensorF64, type GgufFile, type GgufTensorInfo } from "../gguf/reader.js";
import { GgmlType, GgufError, type GgufMetadataEntry } from "../gguf/types.js";
import { gv, kv, writeGguf, type GgufTensorSpec, type GgufWritableType } from "../gguf/writer.js";
import { checkAdapterFile, checkModelFile } from "../engine/validate.js";
import { ConvertError } from "./errors.js";

/** An adapter to merge, with its user scale (default 1). */
export interface MergeAdapter {
  path: string;
  scale?: number;
}

/**
 * Type of the merged (changed) tensors: "keep" (default) their base type; "f32" exact (an F16
 * base merged in F32 scores like the F16 base with the adapter, up to float32 rounding, at twice
 * the size of those tensors); "f16". Tensors no adapter touches always keep their type.
 */
export type MergeOutType = "keep" | "f32" | "f16";

/** Options of {@link mergeLora}. */
export interface MergeOptions {
  outtype?: MergeOutType;
  log?: (message: string) => void;
}

/** What {@link mergeLora} wrote. */
export interface MergeResult {
  path: string;
  /** Base tensors that were changed. */
  merged: string[];
  /** Types of the changed tensors, by type name (e.g. { F16: 14 }). */
  types: Record<string, number>;
}

/** Metadata key listing the adapters merged into a model, "file:scale,file:scale". */
export const MERGED_KEY = "tallrec.merged_adapters";

const MERGEABLE = new Set<number>([GgmlType.F32, GgmlType.F16, GgmlType.BF16, GgmlType.Q8_0]);

interface Update {
  adapter: GgufFile;
  a: GgufTensorInfo;
  b: GgufTensorInfo;
  s: number;
}

function wrap<T>(fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    if (e instanceof GgufError) throw new ConvertError(e.path, e.message.replace(`${e.path}: `, ""), "invalid_file", { cause: e });
    throw e;
  }
}

/**
 * Merges LoRA adapters into a base GGUF model and writes the result to `out` (atomically).
 *
 * @throws {ConvertError} when an adapter does not fit the model (architecture, names, shapes),
 *   adapts a tensor whose type cannot be merged (K-quants and other block types: merge into the
 *   F16 model and quantize afterwards), or a scale is not finite.
 */
export async function mergeLora(base: string, adapters: readonly MergeAdapter[], out: string, opts: MergeOptions = {}): Promise<MergeResult> {
  const log = opts.log ?? (() => {});
  if (adapters.length === 0) throw new ConvertError(base, "nothing to merge: no adapters given");
  const outtype = opts.outtype ?? "keep";
  if (!["keep", "f32", "f16"].includes(outtype)) throw new ConvertError(out, `unknown outtype ${JSON.stringify(outtype)} (keep, f32 or f16)`);
  const model = wrap(() => checkModelFile(base));
  const updates = new Map<string, Update[]>();
  for (const ad of adapters) {
    const scale = ad.scale ?? 1;
    if (!Number.isFinite(scale)) throw new ConvertError(ad.path, `scale ${scale} is not a finite number`);
    const summary = wrap(() => checkAdapterFile(ad.path, model));
    const adapterFile = wrap(() => openGgufSync(ad.path));
    const alpha = summary.alpha;
    for (const target of summary.targets) {
      const info = model.file.tensorsByName.get(target)!;
      if (target === "token_embd.weight") throw new ConvertError(ad.path, "adapters on token_embd cannot be merged by tallrec");
      if (!MERGEABLE.has(info.type)) {
        throw new ConvertError(
          base,
          `${target} is ${info.typeName}: tallrec merges into F32, F16, BF16 and Q8_0 weights only. Merge into the F16 model, then quantize the result (tallrec quantize merged-f16.gguf merged.gguf <TYPE>)`,
        );
      }
      const a = adapterFile.tensorsByName.get(`${target}.lora_a`)!;
      const b = adapterFile.tensorsByName.get(`${target}.lora_b`)!;
      const r = b.dims[0];
      const s = alpha ? (scale * alpha) / r : scale;
      let list = updates.get(target);
      if (!list) updates.set(target, (list = []));
      list.push({ adapter: adapterFile, a, b, s });
    }
  }
  const types: Record<string, number> = {};
  const tensors: GgufTensorSpec[] = model.file.tensors.map((t) => {
    const ups = updates.get(t.name);
    if (!ups) return { name: t.name, dims: t.dims, type: t.type, raw: true, data: () => readTensorBytes(model.file, t.name) };
    const type = (outtype === "f32" ? GgmlType.F32 : outtype === "f16" ? GgmlType.F16 : t.type) as GgufWritableType;
    const typeName = outtype === "keep" ? t.typeName : outtype.toUpperCase();
    types[typeName] = (types[typeName] ?? 0) + 1;
    return {
      name: t.name,
      dims: t.dims,
      type,
      data: () => {
        const [nIn, nOut] = t.dims;
        const w = readTensorF64(model.file, t.name);
        for (const u of ups) {
          const a = readTensorF64(u.adapter, u.a.name); // ggml [nIn, r]: A[k][i] at i + nIn·k
          const b = readTensorF64(u.adapter, u.b.name); // ggml [r, nOut]: B[o][k] at k + r·o
          const r = u.b.dims[0];
          for (let o = 0; o < nOut; o++) {
            const row = o * nIn;
            for (let k = 0; k < r; k++) {
              const c = u.s * b[k + r * o];
              if (c === 0) continue;
              const ak = k * nIn;
              for (let i = 0; i < nIn; i++) w[row + i] += c * a[ak + i];
            }
          }
        }
        return Float32Array.from(w);
      },
    };
  });
  // a record of what was merged, appended to any earlier merges of the base
  const earlier = model.file.metadata.get(MERGED_KEY);
  const names = [...(earlier && typeof earlier.value === "string" ? [earlier.value] : []), ...adapters.map((a) => `${basename(a.path)}:${a.scale ?? 1}`)].join(",");
  const metadata: GgufMetadataEntry[] = [...model.file.metadata].filter(([k]) => k !== MERGED_KEY).map(([key, v]) => ({ key, ...v }) as GgufMetadataEntry);
  metadata.push(kv(MERGED_KEY, gv.str(names)));
  log(
    `merging ${adapters.length} adapter(s) into ${updates.size} tensors (${Object.entries(types)
      .map(([k, v]) => `${v} ${k}`)
      .join(", ")})`,
  );
  await writeGguf(out, { metadata, tensors });
  return { path: out, merged: [...updates.keys()], types };
}
