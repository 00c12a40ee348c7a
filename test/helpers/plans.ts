/** Hand-made scoring plans for driving the native context directly (native-errors, error-codes). */
import type { NativeRunPlan } from "../../src/engine/native.js";

/** A scoring plan of `len` tokens (one sequence, positions 0..len-1): CLEAR, then `steps`. */
export function onePromptPlan(len: number, steps: number[]): NativeRunPlan {
  return {
    adapters: [],
    scales: new Float32Array(0),
    tokens: Int32Array.from({ length: len }, (_, i) => 10 + (i % 50)),
    pos: Int32Array.from({ length: len }, (_, i) => i),
    out: Int32Array.from({ length: len }, (_, i) => (i === len - 1 ? 0 : -1)),
    seqOffsets: Int32Array.from({ length: len + 1 }, (_, i) => i),
    seqIds: new Int32Array(len),
    steps: Int32Array.from([2, 0, 0, ...steps]),
    nOutputs: 1,
    targets: Int32Array.of(1, 2),
    lse: false,
  };
}
