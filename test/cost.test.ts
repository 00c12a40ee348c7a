/**
 * The KV layout cost model (src/engine/cost.ts), on plans small enough to count by hand: weight
 * work per decoded token, attention per token over the cells its micro-batch attends (unified: all
 * cells in use, padded to 256; streams: its own stream's, padded to 256), and copies.
 */
import { describe, expect, it } from "vitest";

import { planCost, type CostConstants } from "../src/engine/cost.js";
import { planStreams } from "../src/engine/plan-streams.js";
import { attentionPerCell, planScoring, type ModelShape } from "../src/engine/plan.js";

const shape: ModelShape = { nEmbd: 1024, nLayer: 8, nHead: 16, nHeadKv: 4, nFf: 2816 };
const weightsOnly: CostConstants = { attentionWeight: 0, copyTokens: 0 };
const attention: CostConstants = { attentionWeight: 1, copyTokens: 0 };

/** n distinct prompts of `len` tokens after a common `header`-token prefix. */
function prompts(n: number, len: number, header: number): Int32Array[] {
  return Array.from({ length: n }, (_, i) => Int32Array.from([1, ...Array.from({ length: header - 1 }, () => 7), ...Array.from({ length: len - header }, (_, j) => 100 + i * 1000 + j)]));
}

describe("planCost", () => {
  it("counts a token's attention as 4·d + 8·heads FLOPs per cell against its weights' 2·(2d² + 2d·d_kv + 3d·d_ff)", () => {
    const d = 1024;
    expect(attentionPerCell(shape)).toBeCloseTo((4 * d + 8 * 16) / (2 * (2 * d * d + 2 * d * 256 + 3 * d * 2816)), 12);
  });

  it("without attention, costs the decoded tokens plus the copies", () => {
    const ps = prompts(10, 300, 40);
    const u = planScoring(ps, { nCtx: 4096, nBatch: 4096, nSeqMax: 64 }, { share: true });
    expect(planCost(u, "unified", shape, 512, weightsOnly)).toBe(u.stats.decodedTokens);
    const s = planStreams(ps, { streams: 4, streamCells: 512, nBatch: 4096 }, { share: true });
    expect(planCost(s, "streams", shape, 512, { attentionWeight: 0, copyTokens: 5 })).toBe(s.stats.decodedTokens + 3 * 5);
  });

  it("unified: every token of a micro-batch attends over every cell in use, padded to 256", () => {
    // two 300-token prompts, nothing shared, one round: micro-batches of 512 then 88 tokens
    const ps = prompts(2, 300, 1);
    const plan = planScoring(ps, { nCtx: 4096, nBatch: 4096, nSeqMax: 64 }, { share: false });
    const a = attentionPerCell(shape);
    const want = 600 + a * (512 * 512 + 88 * 768);
    expect(planCost(plan, "unified", shape, 512, attention)).toBeCloseTo(want, 6);
  });

  it("streams: each token attends over its own stream only", () => {
    const ps = prompts(2, 300, 1);
    const plan = planStreams(ps, { streams: 2, streamCells: 512, nBatch: 4096 }, { share: false });
    const a = attentionPerCell(shape);
    expect(planCost(plan, "streams", shape, 512, attention)).toBeCloseTo(600 + a * 600 * 512, 6);
  });

  it("streams are cheaper for many independent prompts in big rounds, unified when prompts share long prefixes the streams cannot", () => {
    const k: CostConstants = { attentionWeight: 10, copyTokens: 2 };
    // independent TALLRec-sized prompts, rounds as big as the context (a GPU's choice)
    const indep = prompts(64, 260, 60);
    const u = planScoring(indep, { nCtx: 4096, nBatch: 4096, nSeqMax: 64, roundCells: 4096 }, { share: true });
    const s = planStreams(indep, { streams: 8, streamCells: 512, nBatch: 4096 }, { share: true });
    expect(planCost(s, "streams", shape, 512, k)).toBeLessThan(planCost(u, "unified", shape, 512, k));
    // 8 users x 8 candidates: the trie decodes each user's 200-token history once; the streams only the common header
    const users = Array.from({ length: 8 }, (_, user) =>
      Array.from({ length: 8 }, (_, c) => Int32Array.from([1, ...Array.from({ length: 39 }, () => 7), ...Array.from({ length: 200 }, (_, j) => 50_000 + user * 300 + j), 9000 + c, 9100 + c])),
    ).flat();
    const uu = planScoring(users, { nCtx: 4096, nBatch: 4096, nSeqMax: 64 }, { share: true });
    const su = planStreams(users, { streams: 8, streamCells: 512, nBatch: 4096 }, { share: true });
    expect(uu.stats.decodedTokens).toBeLessThan(su.stats.decodedTokens / 4);
    expect(planCost(uu, "unified", shape, 512, k)).toBeLessThan(planCost(su, "streams", shape, 512, k));
  });
});
