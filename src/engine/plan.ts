/**
 * Turns a list of tokenized prompts into a plan for the native scorer (native/src/context.cpp):
 * which tokens to decode in which llama_decode call, at which positions, in which KV sequences,
 * and where to read logits.
 *
 * With prefix sharing on, prompts go into a radix tree of token sequences. Every token is decoded
 * once and is tagged with the set of KV sequences of all prompts below it, so llama.cpp's unified
 * KV cache lets each prompt attend to its shared prefix without copying anything. Prompts are
 * packed into "rounds" that fit the context (cells) and the sequence limit; a subtree too big for
 * one round has its root "pinned": decoded once, tagged with every sequence id, and kept while
 * its children are scored in as many rounds as needed. The pinned chain left at the end of a call
 * (the common prefix: TALLRec's template header, and the last user's history) stays in the KV
 * memory and is reused by the next call when its tokens and adapter set match.
 *
 * With sharing off, prompts are packed into rounds as independent sequences (plain batching).
 */
import type { PlannedTokens } from "./native.js";

/** Step kinds, as native/src/context.cpp reads them (triples: kind, a, b). */
export const STEP_DECODE = 0;
export const STEP_REMOVE_FROM = 1;
export const STEP_CLEAR = 2;
/** Copies sequence a's KV into sequence b (the "streams" layout: b's whole stream; see plan-streams.ts). */
export const STEP_COPY = 3;

export interface PlanLimits {
  /** KV cells of the context (n_ctx): no prompt may be longer. */
  nCtx: number;
  /**
   * Most KV cells a round should span, pinned prefix included (default nCtx). Every token of a
   * llama_decode call attends over all cells in use (masked per sequence), so on small models
   * smaller rounds are faster; see roundBudget().
   */
  roundCells?: number;
  /** Most tokens in one llama_decode call (n_batch). */
  nBatch: number;
  /** Most sequences in flight (n_seq_max). */
  nSeqMax: number;
}

export interface PlanOptions {
  /** Share common prefixes (default true). */
  share?: boolean;
  /** Tokens resident in the KV memory from the previous call (positions 0..n-1, all sequences). */
  resident?: ArrayLike<number>;
}

/** The part of a plan the native context runs (`context.run`, native/src/scorer.cpp). */
export function plannedTokens(p: PlannedTokens): PlannedTokens {
  const { tokens, pos, out, seqOffsets, seqIds, steps, nOutputs } = p;
  return { tokens, pos, out, seqOffsets, seqIds, steps, nOutputs };
}

export interface Plan extends PlannedTokens {
  /** Output slot of each prompt (identical prompts share one). */
  outputOf: Int32Array;
  /** What stays resident after the plan ran (to pass as `resident` next time). */
  residentAfter: Int32Array;
  stats: {
    /** Sum of prompt lengths. */
    promptTokens: number;
    /** Tokens the plan decodes. */
    decodedTokens: number;
    /** Tokens reused from the previous call's resident prefix. */
    reusedTokens: number;
    decodeCalls: number;
    rounds: number;
    /** Tokens decoded only to keep micro-batches full (the streams layout pads after a prompt's scored token); counted in decodedTokens. */
    paddingTokens?: number;
  };
}

interface Node {
  start: number; // position of edge[0]
  edge: Int32Array;
  children: Node[];
  childIndex: Map<number, Node> | null;
  slot: number; // output slot when a prompt ends here, else -1
  size: number; // tokens in this subtree, this edge included
  leaves: number; // sequences this subtree needs in one round
}

function newNode(start: number, edge: Int32Array): Node {
  return { start, edge, children: [], childIndex: null, slot: -1, size: 0, leaves: 0 };
}

/** A growable Int32Array. */
export class IntList {
  data = new Int32Array(1024);
  length = 0;
  push(v: number): void {
    if (this.length === this.data.length) {
      const next = new Int32Array(this.data.length * 2);
      next.set(this.data);
      this.data = next;
    }
    this.data[this.length++] = v;
  }
  toArray(): Int32Array {
    return this.data.slice(0, this.length);
  }
}

function buildTree(prompts: readonly Int32Array[], share: boolean, outputOf: Int32Array): { root: Node; nOutputs: number } {
  const root = newNode(0, new Int32Array(0));
  let nOutputs = 0;
  if (!share) {
    prompts.forEach((p, i) => {
      const n = newNode(0, p);
      n.slot = outputOf[i] = nOutputs++;
      root.children.push(n);
    });
    return { root, nOutputs };
  }
  for (let pi = 0; pi < prompts.length; pi++) {
    const p = prompts[pi];
    let node = root;
    let i = 0;
    for (;;) {
      if (i === p.length) break;
      node.childIndex ??= new Map();
      const child = node.childIndex.get(p[i]);
      if (!child) {
        const leaf = newNode(i, p.subarray(i));
        node.childIndex.set(p[i], leaf);
        node.children.push(leaf);
        node = leaf;
        break;
      }
      const e = child.edge;
      let k = 1;
      while (k < e.length && i + k < p.length && e[k] === p[i + k]) k++;
      if (k < e.length) {
        // split child at k: node -> mid (edge[0..k)) -> child (edge[k..))
        const mid = newNode(child.start, e.subarray(0, k));
        child.edge = e.subarray(k);
        child.start += k;
        mid.childIndex = new Map([[child.edge[0], child]]);
        mid.children.push(child);
        node.childIndex.set(p[i], mid);
        node.children[node.children.indexOf(child)] = mid;
        node = mid;
      } else {
        node = child;
      }
      i += k;
    }
    if (node.slot < 0) node.slot = nOutputs++;
    outputOf[pi] = node.slot;
  }
  return { root, nOutputs };
}

/** Fills size and leaves bottom-up (iteratively: trees can be deep). */
function measure(root: Node): void {
  const order: Node[] = [];
  const stack = [root];
  while (stack.length) {
    const n = stack.pop()!;
    order.push(n);
    for (const c of n.children) stack.push(c);
  }
  for (let i = order.length - 1; i >= 0; i--) {
    const n = order[i];
    let size = n.edge.length;
    let leaves = 0;
    for (const c of n.children) {
      size += c.size;
      leaves += c.leaves;
    }
    n.size = size;
    n.leaves = n.children.length === 0 ? 1 : leaves;
  }
}

class PlanBuilder {
  readonly tokens = new IntList();
  readonly pos = new IntList();
  readonly out = new IntList();
  readonly seqOffsets = new IntList();
  readonly seqIds = new IntList();
  readonly steps: number[] = [];
  pinned: number[];
  flushedTo = 0;
  decodeCalls = 0;
  rounds = 0;
  reused = 0;

  round: Node[] = [];
  readonly budget: number;
  roundBase = 0;
  roundTokens = 0;
  roundLeaves = 0;

  constructor(
    readonly limits: PlanLimits,
    resident: ArrayLike<number>,
    /** Reuse resident tokens (prefix sharing); off, every prompt is decoded in full. */
    readonly reuse: boolean,
  ) {
    this.pinned = Array.from(resident);
    this.budget = Math.min(limits.nCtx, limits.roundCells ?? limits.nCtx);
    this.seqOffsets.push(0);
    if (this.pinned.length === 0) this.steps.push(STEP_CLEAR, 0, 0);
  }

  private emitToken(token: number, pos: number, slot: number, seqLo: number, seqHi: number): void {
    this.tokens.push(token);
    this.pos.push(pos);
    this.out.push(slot);
    for (let s = seqLo; s < seqHi; s++) this.seqIds.push(s);
    this.seqOffsets.push(this.seqIds.length);
  }

  /** Turns the tokens emitted since the last flush into decode steps of at most nBatch tokens. */
  private flushTokens(): void {
    const end = this.tokens.length;
    for (let a = this.flushedTo; a < end; a += this.limits.nBatch) {
      this.steps.push(STEP_DECODE, a, Math.min(end, a + this.limits.nBatch));
      this.decodeCalls++;
    }
    this.flushedTo = end;
  }

  /** Drops resident tokens at positions >= p (after decoding what is pending). */
  private truncate(p: number): void {
    if (this.pinned.length > p) {
      this.flushTokens();
      this.steps.push(STEP_REMOVE_FROM, p, 0);
      this.pinned.length = p;
    }
  }

  /**
   * Decodes node's edge into every sequence and keeps it resident (reusing what already is, when
   * sharing). Its tokens go into the same llama_decode call as the round that follows.
   */
  pin(node: Node): void {
    this.flushRound();
    const e = node.edge;
    let m = 0;
    if (this.reuse) while (m < e.length && node.start + m < this.pinned.length && this.pinned[node.start + m] === e[m]) m++;
    // a prompt ending here needs its last token decoded now, for its logits
    if (node.slot >= 0 && m === e.length) m = e.length - 1;
    this.truncate(node.start + m);
    this.reused += m;
    for (let j = m; j < e.length; j++) {
      this.emitToken(e[j], node.start + j, j === e.length - 1 ? node.slot : -1, 0, this.limits.nSeqMax);
      this.pinned.push(e[j]);
    }
  }

  /** Adds a whole subtree (hanging right below the pinned chain) to the current round. */
  add(node: Node): void {
    const room = this.budget - node.start;
    if (this.round.length > 0 && (this.roundTokens + node.size > room || this.roundLeaves + node.leaves > this.limits.nSeqMax)) {
      this.flushRound();
    }
    if (this.round.length === 0) {
      this.truncate(node.start);
      this.roundBase = node.start;
    }
    this.round.push(node);
    this.roundTokens += node.size;
    this.roundLeaves += node.leaves;
  }

  /** Decodes whatever is still pending (pinned tokens not followed by a round). */
  finish(): void {
    this.flushTokens();
  }

  /** Emits the current round: each subtree depth-first, sequences numbered by leaf. */
  flushRound(): void {
    if (this.round.length === 0) return;
    let nextSeq = 0;
    const emit = (root: Node): void => {
      // iterative DFS; each node's sequences are the contiguous range of its leaves' ids
      const stack: Node[] = [root];
      while (stack.length) {
        const n = stack.pop()!;
        const lo = nextSeq;
        const hi = lo + n.leaves;
        const e = n.edge;
        for (let j = 0; j < e.length; j++) this.emitToken(e[j], n.start + j, j === e.length - 1 ? n.slot : -1, lo, hi);
        if (n.children.length === 0) nextSeq = hi;
        for (let c = n.children.length - 1; c >= 0; c--) stack.push(n.children[c]);
      }
    };
    for (const n of this.round) emit(n);
    this.flushTokens();
    this.steps.push(STEP_REMOVE_FROM, this.roundBase, 0);
    this.rounds++;
    this.round = [];
    this.roundTokens = 0;
    this.roundLeaves = 0;
  }
}

/**
 * Plans the scoring of `prompts` (token arrays, BOS included, each 1..nCtx tokens long).
 */
export function planScoring(prompts: readonly Int32Array[], limits: PlanLimits, options: PlanOptions = {}): Plan {
  const share = options.share ?? true;
  for (let i = 0; i < prompts.length; i++) {
    const n = prompts[i].length;
    if (n < 1 || n > limits.nCtx) throw new RangeError(`prompt ${i} has ${n} tokens; plans need 1..${limits.nCtx}`);
  }
  if (limits.nSeqMax < 1 || limits.nBatch < 1) throw new RangeError("nSeqMax and nBatch must be positive");
  const outputOf = new Int32Array(prompts.length);
  const { root, nOutputs } = buildTree(prompts, share, outputOf);
  measure(root);

  const b = new PlanBuilder(limits, share ? (options.resident ?? []) : [], share);
  const fits = (n: Node) => n.size <= b.budget - n.start && n.leaves <= limits.nSeqMax;

  // Depth-first over the tree with an explicit stack: ["visit", node, spine] or ["done", node].
  type Frame = { node: Node; spine: boolean; next: number };
  const stack: Frame[] = [{ node: root, spine: true, next: 0 }];
  while (stack.length) {
    const f = stack[stack.length - 1];
    if (f.next >= f.node.children.length) {
      // all children handled: their last round hangs below this node
      b.flushRound();
      stack.pop();
      continue;
    }
    const child = f.node.children[f.next++];
    // The spine (the prefix common to every prompt) is always pinned, so it is cached across calls.
    const onSpine = share && f.spine && f.node.children.length === 1 && f.node.slot < 0 && child.children.length > 0;
    if (!onSpine && fits(child)) {
      b.add(child);
    } else {
      b.pin(child);
      stack.push({ node: child, spine: onSpine, next: 0 });
    }
  }
  b.flushRound();
  b.finish();

  let promptTokens = 0;
  for (const p of prompts) promptTokens += p.length;
  return {
    tokens: b.tokens.toArray(),
    pos: b.pos.toArray(),
    out: b.out.toArray(),
    seqOffsets: b.seqOffsets.toArray(),
    seqIds: b.seqIds.toArray(),
    steps: Int32Array.from(b.steps),
    nOutputs,
    outputOf,
    residentAfter: Int32Array.from(b.pinned),
    stats: {
      promptTokens,
      decodedTokens: b.tokens.length,
      reusedTokens: b.reused,
      decodeCalls: b.decodeCalls,
      rounds: b.rounds,
    },
  };
}

/** Model shape for the round-size cost model. */
export interface ModelShape {
  nEmbd: number;
  nLayer: number;
  nHead: number;
  nHeadKv: number;
  nFf: number;
}

/**
 * How many KV cells a round should span for a model. In a unified KV cache every token of a
 * decode call attends over every cell in use (other sequences are masked, not skipped: about
 * 4·n_embd FLOPs per cell per layer, plus building the mask, on one thread), while larger rounds
 * feed the matrix products more tokens at once. Rounds are sized so that attention over other
 * prompts' cells stays near a twentieth of a token's matrix work
 * (2·(2·n_embd² + 2·n_embd·n_embd_kv + 3·n_embd·n_ff) per layer), in multiples of 256 cells
 * (llama.cpp pads the attended span to 256), at least 512. Measured on 2 CPU cores (TALLRec movie
 * prompts): 512 cells beat 256 and 1024 on the tiny test model (+40% shared, +15% plain) and on a
 * 1024-wide 8-layer model (+10%, +25% over 2048); LLaMA-7B gets 2560.
 */
export function roundBudget(m: ModelShape, nCtx: number): number {
  const cells = 0.1 / attentionPerCell(m); // attention over them = 2 × 0.05 of a token's matrix FLOPs (a multiply-add is 2)
  return Math.min(nCtx, Math.max(512, Math.round(cells / 256) * 256));
}

/**
 * A token's attention FLOPs per attended KV cell (4·n_embd for QK and PV, plus the mask and
 * softmax, counted as 8 per head), over its matrix FLOPs (2·(2·n_embd² + 2·n_embd·n_embd_kv +
 * 3·n_embd·n_ff)); per layer, so for the whole model alike. Used by roundBudget and the KV layout
 * cost model (cost.ts).
 */
export function attentionPerCell(m: ModelShape): number {
  const d = m.nEmbd;
  const dKv = (d / m.nHead) * m.nHeadKv;
  const weights = 2 * (2 * d * d + 2 * d * dKv + 3 * d * m.nFf);
  return (4 * d + 8 * m.nHead) / weights;
}
