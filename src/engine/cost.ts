/**
 * What a plan will cost to run, for choosing a KV layout per call (kvLayout "auto"): every decoded
 * token pays for the weights, and for attention over the KV cells its micro-batch attends.
 *
 *   cost = Σ tokens × (weights + attention × cells attended) + copies × copy
 *
 * in units of one token's weight work. Cells attended: in the unified layout, every cell in use
 * when the micro-batch runs (other prompts' cells are masked, not skipped), padded to 256 as
 * llama.cpp pads n_kv; in the streams layout, the cells of the token's own stream, padded to 256.
 * Attention per cell against weights: attentionPerCell (plan.ts); `attentionWeight` scales it for a
 * backend (attention runs below the matrix products' FLOP rate: it is memory-bound and, without
 * flash attention, writes out the KQ matrix). See BENCHMARKS.md, "KV layouts", for how the
 * constants were measured.
 */
import { attentionPerCell, STEP_CLEAR, STEP_COPY, STEP_DECODE, STEP_REMOVE_FROM, type ModelShape, type Plan } from "./plan.js";

export type KvLayout = "unified" | "streams";

export interface CostConstants {
  /** Attention FLOPs count this many times a matrix FLOP (measured per backend). */
  attentionWeight: number;
  /** One stream copy (and the graph reservation after it), in tokens' weight work. */
  copyTokens: number;
}

/**
 * CPU: measured on the 2-core AVX2 EPYC, bench model, 60 TALLRec prompts without sharing (unified
 * 2.90 prompts/s, streams 3.24; the plans' weight and attention terms then give an attention FLOP
 * 10.7x a matrix FLOP's time), which also predicts the shared case within 0.5% (unified 2.7%
 * faster predicted, 2.2% measured): BENCHMARKS.md, "KV layouts". Without flash attention the CPU
 * writes out the KQ matrix, builds the mask and runs softmax over every attended cell. CUDA: not
 * measured here (no GPU was lent); 4 is a guess that bench/gpu/run-gpu.sh's sweep of both layouts
 * is there to replace.
 */
export const COST_CONSTANTS: Record<"cpu" | "cuda", CostConstants> = {
  cpu: { attentionWeight: 10, copyTokens: 2 },
  cuda: { attentionWeight: 4, copyTokens: 1 },
};

const pad256 = (n: number) => Math.ceil(n / 256) * 256;

/**
 * The cost of running `plan` in `layout` (see above). `nUbatch` is the context's micro-batch;
 * `resident` the cells already in use when it starts (unified: all sequences; streams: stream 0).
 */
export function planCost(plan: Plan, layout: KvLayout, m: ModelShape, nUbatch: number, k: CostConstants, resident = 0): number {
  const perCell = attentionPerCell(m) * k.attentionWeight;
  // cells in use: unified, one count; streams, a count per sequence
  let used = layout === "unified" ? resident : 0;
  const stream = new Map<number, number>();
  if (layout === "streams" && resident > 0) stream.set(0, resident);
  // cells by position, to apply "remove from position p" (unified: one cell per token)
  const byPos: number[] = layout === "unified" ? new Array<number>(resident).fill(1) : [];
  let cost = 0;
  const { steps, seqIds, seqOffsets, pos } = plan;
  for (let s = 0; s < steps.length; s += 3) {
    const kind = steps[s];
    const a = steps[s + 1];
    const b = steps[s + 2];
    if (kind === STEP_CLEAR) {
      used = 0;
      byPos.length = 0;
      stream.clear();
    } else if (kind === STEP_REMOVE_FROM) {
      if (layout === "unified") {
        for (let p = a; p < byPos.length; p++) used -= byPos[p] ?? 0;
        if (byPos.length > a) byPos.length = a;
        used = Math.max(0, used);
      } else {
        for (const [seq, n] of stream) stream.set(seq, Math.min(n, a));
      }
    } else if (kind === STEP_COPY) {
      if (layout === "streams") stream.set(b, stream.get(a) ?? 0);
      cost += k.copyTokens;
    } else if (kind === STEP_DECODE) {
      if (layout === "unified") {
        for (let u = a; u < b; u += nUbatch) {
          const end = Math.min(b, u + nUbatch);
          for (let i = u; i < end; i++) byPos[pos[i]] = (byPos[pos[i]] ?? 0) + 1;
          used += end - u;
          cost += (end - u) * (1 + perCell * pad256(used));
        }
      } else {
        for (let i = a; i < b; i++) {
          const seq = seqIds[seqOffsets[i]];
          stream.set(seq, Math.max(stream.get(seq) ?? 0, pos[i] + 1));
        }
        for (let i = a; i < b; i++) cost += 1 + perCell * pad256(stream.get(seqIds[seqOffsets[i]]) ?? 0);
      }
    }
  }
  return cost;
}
