/**
 * A model of llama.cpp's unified KV cache, enough to check a scoring plan without running a model:
 * it applies plan steps the way native/src/context.cpp passes them to llama.cpp, enforces the
 * batch rules llama.cpp enforces (llama-batch.cpp: consecutive positions per sequence, coupled
 * sequences in step, sequence ids in range), masks attention the way llama-kv-cache.cpp does
 * (a token sees the cells of its first sequence id at positions <= its own), and records for
 * every cell the exact token sequence its key/value were computed from.
 *
 * With `streamCells`, it models the streams layout (kv_unified = false, llama-kv-cache.cpp): each
 * sequence has its own stream of `streamCells` cells, a token carries exactly one sequence id, and
 * a copy replaces the destination stream with the source stream's cells.
 */
import { STEP_CLEAR, STEP_COPY, STEP_DECODE, STEP_REMOVE_FROM, type Plan, type PlanLimits } from "../../src/engine/plan.js";

interface Cell {
  token: number;
  pos: number;
  seqs: Set<number>;
  /** The tokens at positions 0..pos this cell's K/V were computed from. */
  context: string;
}

export class KvSimulator {
  cells: Cell[] = [];
  maxCells = 0;

  constructor(
    readonly limits: PlanLimits,
    readonly streamCells?: number,
  ) {}

  /** Streams layout: the tokens of stream 0 at positions 0..n-1 (what a streams plan may reuse). */
  residentStream0(): number[] {
    const cells = this.cells.filter((c) => c.seqs.has(0)).sort((a, b) => a.pos - b.pos);
    cells.forEach((c, i) => {
      if (c.pos !== i) throw new Error("stream 0 does not hold positions 0..n-1");
    });
    return cells.map((c) => c.token);
  }

  /** Copies served by the last run (streams layout). */
  copies = 0;

  private seqRange(s: number): [number, number] {
    let lo = Infinity;
    let hi = -Infinity;
    for (const c of this.cells) {
      if (c.seqs.has(s)) {
        lo = Math.min(lo, c.pos);
        hi = Math.max(hi, c.pos);
      }
    }
    return lo === Infinity ? [-1, -1] : [lo, hi];
  }

  /** Tokens currently resident in every sequence, by position (what a plan may reuse). */
  residentAll(): number[] {
    const out: number[] = [];
    const all = this.cells.filter((c) => c.seqs.size === this.limits.nSeqMax).sort((a, b) => a.pos - b.pos);
    all.forEach((c, i) => {
      if (c.pos !== i) throw new Error("resident cells are not positions 0..n-1");
      out.push(c.token);
    });
    return out;
  }

  /** Runs a plan; returns, for each output slot, the full token context its logits were computed from. */
  run(plan: Plan): string[] {
    const outputs: string[] = new Array(plan.nOutputs).fill("");
    for (let s = 0; s < plan.steps.length; s += 3) {
      const kind = plan.steps[s];
      const a = plan.steps[s + 1];
      const b = plan.steps[s + 2];
      if (kind === STEP_CLEAR) {
        this.cells = [];
      } else if (kind === STEP_REMOVE_FROM) {
        this.cells = this.cells.filter((c) => c.pos < a);
      } else if (kind === STEP_COPY) {
        if (a < 0 || b < 0 || a >= this.limits.nSeqMax || b >= this.limits.nSeqMax || a === b) throw new Error(`copy ${a} -> ${b}: bad sequence ids`);
        if (this.streamCells !== undefined) {
          this.cells = this.cells.filter((c) => !c.seqs.has(b));
          for (const c of this.cells.filter((x) => x.seqs.has(a))) this.cells.push({ ...c, seqs: new Set([b]) });
          this.copies++;
        } else {
          for (const c of this.cells) if (c.seqs.has(a)) c.seqs.add(b);
        }
      } else if (kind === STEP_DECODE) {
        this.decode(plan, a, b, outputs);
      } else {
        throw new Error(`unknown step ${kind}`);
      }
    }
    return outputs;
  }

  private decode(plan: Plan, a: number, b: number, outputs: string[]): void {
    if (b - a > this.limits.nBatch) throw new Error(`decode of ${b - a} tokens exceeds nBatch ${this.limits.nBatch}`);
    const seqsOf = (i: number) => Array.from(plan.seqIds.subarray(plan.seqOffsets[i], plan.seqOffsets[i + 1]));
    // llama-batch.cpp checks, against the memory before the batch
    const firstPos = new Map<number, number>();
    const lastPos = new Map<number, number>();
    for (let i = a; i < b; i++) {
      const seqs = seqsOf(i);
      if (seqs.length === 0) throw new Error(`token ${i} has no sequence`);
      if (this.streamCells !== undefined && seqs.length > 1) throw new Error(`token ${i} carries ${seqs.length} sequences: one stream per token in the streams layout`);
      for (const s of seqs) {
        if (s < 0 || s >= this.limits.nSeqMax) throw new Error(`sequence id ${s} out of range`);
        if (!firstPos.has(s)) firstPos.set(s, plan.pos[i]);
        const prev = lastPos.get(s);
        if (prev !== undefined && plan.pos[i] !== prev + 1) throw new Error(`sequence ${s}: positions not consecutive in the batch (${prev} -> ${plan.pos[i]})`);
        lastPos.set(s, plan.pos[i]);
      }
      for (const s of seqs.slice(1)) {
        const r0 = this.seqRange(seqs[0]);
        const r1 = this.seqRange(s);
        if (r0[0] !== r1[0] || r0[1] !== r1[1]) throw new Error(`sequence ${s} is coupled to ${seqs[0]} in the batch but they have diverged in memory`);
      }
    }
    for (const [s, p] of firstPos) {
      const [, hi] = this.seqRange(s);
      if (hi >= 0 && p !== hi + 1) throw new Error(`sequence ${s}: batch starts at position ${p} but memory ends at ${hi}`);
    }
    // place the tokens, then compute each one's context as llama.cpp's mask allows (cells of the
    // batch are visible to later tokens of the batch: causal within the ubatch)
    for (let i = a; i < b; i++) {
      const seqs = seqsOf(i);
      const s0 = seqs[0];
      const visible = this.cells.filter((c) => c.seqs.has(s0) && c.pos < plan.pos[i]).sort((x, y) => x.pos - y.pos);
      visible.forEach((c, k) => {
        if (c.pos !== k) throw new Error(`token ${i} (pos ${plan.pos[i]}) sees positions ${visible.map((v) => v.pos).join(",")}: not exactly 0..${plan.pos[i] - 1}`);
      });
      if (this.cells.some((c) => c.seqs.has(s0) && c.pos === plan.pos[i])) throw new Error(`token ${i}: sequence ${s0} already has a cell at position ${plan.pos[i]}`);
      // every visible cell must itself have been computed from the same prefix
      const prefix = visible.map((c) => c.token);
      visible.forEach((c, k) => {
        if (c.context !== prefix.slice(0, k + 1).join(",")) throw new Error(`token ${i} attends to a cell computed from another prefix`);
      });
      const context = [...prefix, plan.tokens[i]].join(",");
      this.cells.push({ token: plan.tokens[i], pos: plan.pos[i], seqs: new Set(seqs), context });
      if (plan.out[i] >= 0) outputs[plan.out[i]] = context;
    }
    this.maxCells = Math.max(this.maxCells, this.cells.length);
    if (this.cells.length > this.limits.nCtx) throw new Error(`${this.cells.length} cells in use, more than nCtx ${this.limits.nCtx}`);
    if (this.streamCells !== undefined) {
      const perSeq = new Map<number, number>();
      for (const c of this.cells) for (const s of c.seqs) perSeq.set(s, (perSeq.get(s) ?? 0) + 1);
      for (const [s, n] of perSeq) if (n > this.streamCells) throw new Error(`stream ${s} holds ${n} cells, more than ${this.streamCells}`);
    }
  }
}
