import { describe, expect, it } from "vitest";

import { planStreams, type StreamLimits } from "../src/engine/plan-streams.js";
import { planScoring, roundBudget, STEP_DECODE, type PlanLimits } from "../src/engine/plan.js";
import { KvSimulator } from "./helpers/kvsim.js";

/** Deterministic PRNG for generated prompt sets. */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Prompts shaped like TALLRec's: a shared header, per-user histories, per-candidate tails. */
function promptSet(seed: number, users: number, candidates: number, opts: { dupes?: boolean; prefixOfOther?: boolean } = {}): Int32Array[] {
  const r = rng(seed);
  const toks = (n: number) => Array.from({ length: n }, () => 3 + Math.floor(r() * 20));
  const header = [1, ...toks(5)];
  const out: Int32Array[] = [];
  for (let u = 0; u < users; u++) {
    const history = toks(1 + Math.floor(r() * 8));
    for (let c = 0; c < candidates; c++) out.push(Int32Array.from([...header, ...history, ...toks(1 + Math.floor(r() * 4))]));
    if (opts.prefixOfOther) out.push(Int32Array.from([...header, ...history]));
  }
  if (opts.dupes) out.push(out[0].slice(), out[out.length - 1].slice());
  // shuffle: the planner must not depend on input order
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(r() * (i + 1));
    [out[i], out[j]] = [out[j], out[i]];
  }
  return out;
}

function check(prompts: Int32Array[], limits: PlanLimits, share: boolean, sim = new KvSimulator(limits)) {
  const plan = planScoring(prompts, limits, { share, resident: sim.residentAll() });
  const contexts = sim.run(plan);
  prompts.forEach((p, i) => expect(contexts[plan.outputOf[i]], `prompt ${i}`).toBe(Array.from(p).join(",")));
  expect(Array.from(plan.residentAfter)).toEqual(sim.residentAll());
  return { plan, sim };
}

describe("planScoring", () => {
  const limits: PlanLimits = { nCtx: 64, nBatch: 16, nSeqMax: 4 };

  it("gives every prompt exactly its own context, with and without sharing, across seeds and limits", () => {
    for (let seed = 1; seed <= 30; seed++) {
      const prompts = promptSet(seed, 1 + (seed % 5), 1 + (seed % 7), { dupes: seed % 3 === 0, prefixOfOther: seed % 4 === 0 });
      for (const l of [
        limits,
        { nCtx: 32, nBatch: 7, nSeqMax: 2 },
        { nCtx: 256, nBatch: 256, nSeqMax: 16 },
        { nCtx: 24, nBatch: 24, nSeqMax: 1 },
        { nCtx: 64, nBatch: 64, nSeqMax: 8, roundCells: 12 },
        { nCtx: 64, nBatch: 9, nSeqMax: 8, roundCells: 1 },
      ]) {
        check(prompts, l, true);
        check(prompts, l, false);
      }
    }
  });

  it("decodes each shared token once: a user's history once for all its candidates", () => {
    const prompts = promptSet(7, 1, 40);
    const shared = check(prompts, { nCtx: 512, nBatch: 512, nSeqMax: 64 }, true).plan;
    const plain = check(prompts, { nCtx: 512, nBatch: 512, nSeqMax: 64 }, false).plan;
    const total = prompts.reduce((s, p) => s + p.length, 0);
    expect(plain.stats.decodedTokens).toBe(total);
    // the trie's size: distinct (prefix) token positions
    const distinct = new Set<string>();
    for (const p of prompts) for (let k = 1; k <= p.length; k++) distinct.add(Array.from(p.subarray(0, k)).join(","));
    expect(shared.stats.decodedTokens).toBe(distinct.size);
    expect(shared.stats.decodedTokens).toBeLessThan(total / 3);
  });

  it("pins a prefix whose subtree does not fit and scores its children over several rounds", () => {
    const prompts = promptSet(11, 1, 30);
    const { plan, sim } = check(prompts, { nCtx: 48, nBatch: 8, nSeqMax: 3 }, true);
    expect(plan.stats.rounds).toBeGreaterThanOrEqual(10);
    expect(sim.maxCells).toBeLessThanOrEqual(48);
  });

  it("reuses the resident prefix of the previous call and never a stale one", () => {
    const l: PlanLimits = { nCtx: 128, nBatch: 32, nSeqMax: 8 };
    const sim = new KvSimulator(l);
    const a = promptSet(21, 3, 4);
    const first = check(a, l, true, sim);
    expect(first.plan.stats.reusedTokens).toBe(0);
    // same header (same seed stream start), other users: the header is reused
    const b = promptSet(21, 3, 4).map((p) => Int32Array.from([...p.subarray(0, 6), 22, 21, ...p.subarray(6)]));
    const second = check(b, l, true, sim);
    expect(second.plan.stats.reusedTokens).toBeGreaterThanOrEqual(6);
    // different first token: nothing may be reused, everything still right
    const c = promptSet(22, 2, 3).map((p) => Int32Array.from([2, ...p]));
    const third = check(c, l, true, sim);
    expect(third.plan.stats.reusedTokens).toBe(0);
  });

  it("a prompt equal to the resident prefix still gets its logits", () => {
    const l: PlanLimits = { nCtx: 64, nBatch: 16, nSeqMax: 4 };
    const sim = new KvSimulator(l);
    const header = [1, 4, 5, 6, 7];
    check([Int32Array.from([...header, 8]), Int32Array.from([...header, 9])], l, true, sim);
    expect(sim.residentAll()).toEqual(header);
    const { plan } = check([Int32Array.from(header), Int32Array.from([...header, 10, 11])], l, true, sim);
    expect(plan.stats.reusedTokens).toBe(header.length - 1);
  });

  it("a prompt that is a prefix of another, and duplicates, share one output where identical", () => {
    const p = Int32Array.from([1, 5, 6, 7]);
    const q = Int32Array.from([1, 5, 6, 7, 8, 9]);
    const { plan } = check([q, p, p.slice(), q.slice()], limits, true);
    expect(plan.nOutputs).toBe(2);
    expect(plan.outputOf[1]).toBe(plan.outputOf[2]);
    expect(plan.outputOf[0]).toBe(plan.outputOf[3]);
  });

  it("keeps rounds within roundCells (beyond a pinned prefix) and sizes them from the model", () => {
    const prompts = promptSet(5, 4, 6);
    const l: PlanLimits = { nCtx: 256, nBatch: 256, nSeqMax: 64, roundCells: 20 };
    const { plan, sim: s20 } = check(prompts, l, false);
    expect(s20.maxCells).toBeLessThanOrEqual(20);
    expect(plan.stats.rounds).toBeGreaterThan(check(prompts, { ...l, roundCells: 256 }, false).plan.stats.rounds);
    // prompts longer than a round are decoded alone, and without sharing nothing is reused
    const total = prompts.reduce((s, p) => s + p.length, 0);
    const sim = new KvSimulator(l);
    check(prompts, l, true, sim); // leaves a resident prefix behind
    const alone = check(prompts, { ...l, roundCells: 8 }, false, sim).plan;
    expect(alone.stats.decodedTokens).toBe(total);
    expect(alone.stats.reusedTokens).toBe(0);
    // the floor for small models, more cells for wider ones, never more than the context
    expect(roundBudget({ nEmbd: 64, nLayer: 2, nHead: 4, nHeadKv: 2, nFf: 172 }, 4096)).toBe(512);
    expect(roundBudget({ nEmbd: 1024, nLayer: 8, nHead: 16, nHeadKv: 4, nFf: 2816 }, 4096)).toBe(512);
    const llama7b = roundBudget({ nEmbd: 4096, nLayer: 32, nHead: 32, nHeadKv: 32, nFf: 11008 }, 4096);
    expect(llama7b).toBe(2560);
    expect(roundBudget({ nEmbd: 4096, nLayer: 32, nHead: 32, nHeadKv: 32, nFf: 11008 }, 1024)).toBe(1024);
  });

  it("rejects prompts the context cannot hold", () => {
    expect(() => planScoring([new Int32Array(65)], limits)).toThrow(/65 tokens/);
    expect(() => planScoring([new Int32Array(0)], limits)).toThrow(/0 tokens/);
  });
});

describe("planStreams (the streams KV layout)", () => {
  function checkStreams(
    prompts: Int32Array[],
    limits: StreamLimits,
    share: boolean,
    sim = new KvSimulator({ nCtx: limits.streams * limits.streamCells, nBatch: limits.nBatch, nSeqMax: limits.streams }, limits.streamCells),
  ) {
    const plan = planStreams(prompts, limits, { share, resident: sim.residentStream0() });
    const contexts = sim.run(plan);
    prompts.forEach((p, i) => expect(contexts[plan.outputOf[i]], `prompt ${i}`).toBe(Array.from(p).join(",")));
    expect(Array.from(plan.residentAfter)).toEqual(sim.residentStream0());
    return { plan, sim };
  }
  /** Tokens per sequence in each decode step. */
  function perSeqCounts(plan: ReturnType<typeof planStreams>): Array<Map<number, number>> {
    const out: Array<Map<number, number>> = [];
    for (let s = 0; s < plan.steps.length; s += 3) {
      if (plan.steps[s] !== STEP_DECODE) continue;
      const m = new Map<number, number>();
      for (let i = plan.steps[s + 1]; i < plan.steps[s + 2]; i++) m.set(plan.seqIds[plan.seqOffsets[i]], (m.get(plan.seqIds[plan.seqOffsets[i]]) ?? 0) + 1);
      out.push(m);
    }
    return out;
  }

  it("gives every prompt exactly its own context in its own stream, with and without sharing, across seeds and limits", () => {
    for (let seed = 1; seed <= 30; seed++) {
      const prompts = promptSet(seed, 1 + (seed % 5), 1 + (seed % 7), { dupes: seed % 3 === 0, prefixOfOther: seed % 4 === 0 });
      for (const l of [
        { streams: 4, streamCells: 32, nBatch: 64 },
        { streams: 1, streamCells: 24, nBatch: 8 },
        { streams: 8, streamCells: 40, nBatch: 7 },
        { streams: 3, streamCells: 24, nBatch: 100 },
      ]) {
        checkStreams(prompts, l, true);
        checkStreams(prompts, l, false);
      }
    }
  });

  it("decodes the prompts' common prefix once and copies it to the other streams (ranking's shape)", () => {
    const prompts = promptSet(7, 1, 40);
    const { plan, sim } = checkStreams(prompts, { streams: 8, streamCells: 64, nBatch: 512 }, true);
    let h = 0;
    while (prompts.every((p) => p[h] === prompts[0][h]) && h < Math.min(...prompts.map((p) => p.length)) - 1) h++;
    expect(plan.residentAfter.length).toBe(h);
    expect(sim.copies).toBe(7);
    // each suffix padded to its round's longest: header once + suffixes
    const suffixes = prompts.map((p) => p.length - h);
    expect(plan.stats.decodedTokens).toBeGreaterThanOrEqual(h + suffixes.reduce((s, n) => s + n, 0));
    expect(plan.stats.decodedTokens).toBeLessThanOrEqual(h + 40 * Math.max(...suffixes));
    const plain = checkStreams(prompts, { streams: 8, streamCells: 64, nBatch: 512 }, false).plan;
    // without sharing: every token, plus each round's padding (rounds of 8, longest first)
    const lengths = prompts.map((p) => p.length).sort((x, y) => y - x);
    let padding = 0;
    for (let i = 0; i < lengths.length; i += 8) for (const n of lengths.slice(i, i + 8)) padding += lengths[i] - n;
    expect(plain.stats.decodedTokens).toBe(prompts.reduce((s, p) => s + p.length, 0) + padding);
  });

  it("keeps micro-batches full: every sequence of a decode gets the same number of tokens (longest first, padded after the scored token)", () => {
    const r = rng(5);
    const prompts = Array.from({ length: 37 }, () => Int32Array.from([1, 9, 9, 9, ...Array.from({ length: 3 + Math.floor(r() * 20) }, () => 3 + Math.floor(r() * 20))]));
    for (const share of [true, false]) {
      const { plan } = checkStreams(prompts, { streams: 8, streamCells: 64, nBatch: 512 }, share);
      for (const m of perSeqCounts(plan)) if (m.size > 1) expect(new Set(m.values()).size, JSON.stringify([...m])).toBe(1);
    }
  });

  it("reuses the header a previous call left in stream 0, and drops what no longer matches", () => {
    const prompts = promptSet(3, 1, 10);
    const limits = { streams: 4, streamCells: 48, nBatch: 256 };
    const first = checkStreams(prompts, limits, true);
    const h = first.plan.residentAfter.length;
    expect(h).toBeGreaterThan(0);
    const again = checkStreams(prompts, limits, true, first.sim);
    expect(again.plan.stats.reusedTokens).toBe(h);
    expect(again.plan.stats.decodedTokens).toBe(first.plan.stats.decodedTokens - h);
    const other = promptSet(4, 1, 5); // another header after the BOS
    const third = checkStreams(other, limits, true, again.sim);
    expect(third.plan.stats.reusedTokens).toBeLessThan(h);
  });

  it("rejects a prompt longer than a stream", () => {
    expect(() => planStreams([new Int32Array(33).fill(5)], { streams: 2, streamCells: 32, nBatch: 64 })).toThrow(/33 tokens; a stream holds 1..32/);
  });
});
