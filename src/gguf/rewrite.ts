/**
 * Copies a GGUF file with edits: metadata replaced, added or removed, tensors renamed, retyped or
 * given other bytes. For test fixtures and the fuzzer (mutants of the generated models); the
 * tensor data is copied one tensor at a time.
 */
import { openGgufSync, readTensorBytes } from "./reader.js";
import type { GgufMetadataEntry, GgufValue } from "./types.js";
import { writeGguf, type GgufTensorSpec } from "./writer.js";

/** What to change in a tensor. */
export interface TensorEdit {
  /** A new name. */
  name?: string;
  /** A new ggml type code (the bytes must have its size: give `data` when it differs). */
  type?: number;
  /** New dimensions (the bytes must fit them). */
  dims?: number[];
  /** New bytes, or a function of the old ones. */
  data?: Uint8Array | ((old: Uint8Array) => Uint8Array);
}

/** Edits of {@link rewriteGguf}. */
export interface GgufEdits {
  /** Metadata by key: a new value (replaced in place, or appended), or null to remove the key. */
  metadata?: Record<string, GgufValue | null>;
  /** Tensors by name: an edit, or null to drop the tensor. */
  tensors?: Record<string, TensorEdit | null>;
  /** Tensors to append. */
  extraTensors?: GgufTensorSpec[];
}

/** Writes `dst`: `src` with `edits` applied (atomically, like every GGUF written here). */
export async function rewriteGguf(src: string, dst: string, edits: GgufEdits): Promise<void> {
  const file = openGgufSync(src);
  const metaEdits = edits.metadata ?? {};
  const metadata: GgufMetadataEntry[] = [];
  for (const [key, value] of file.metadata) {
    if (key in metaEdits) {
      const v = metaEdits[key];
      if (v !== null) metadata.push({ key, ...v } as GgufMetadataEntry);
    } else metadata.push({ key, ...value } as GgufMetadataEntry);
  }
  for (const [key, v] of Object.entries(metaEdits)) if (v !== null && !file.metadata.has(key)) metadata.push({ key, ...v } as GgufMetadataEntry);
  const tensorEdits = edits.tensors ?? {};
  const tensors: GgufTensorSpec[] = [];
  for (const t of file.tensors) {
    const e = Object.hasOwn(tensorEdits, t.name) ? tensorEdits[t.name] : undefined;
    if (e === null) continue;
    tensors.push({
      name: e?.name ?? t.name,
      dims: e?.dims ?? t.dims,
      type: e?.type ?? t.type,
      raw: true,
      data: () => {
        const d = e?.data;
        if (d === undefined) return readTensorBytes(file, t.name);
        return typeof d === "function" ? d(readTensorBytes(file, t.name)) : d;
      },
    });
  }
  tensors.push(...(edits.extraTensors ?? []));
  await writeGguf(dst, { metadata, tensors });
}
