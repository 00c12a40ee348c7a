/**
 * Plans a scoring call for the "streams" KV layout: a context with `kv_unified = false`, where each
 * of its sequences has a KV stream of its own and a token attends only over its own stream's cells
 * (the unified layout of plan.ts makes every token of a round attend over every cell in use, other
 * prompts' cells masked but computed).
 *
 * The prefix common to all the call's prompts (the header: TALLRec's template, or a user's history
 * when ranking candidates) is decoded once into stream 0 and copied whole into the other streams
 * (llama.cpp copies only whole streams across streams); each prompt's own tokens (its suffix) are
 * then decoded in its stream. Prompts go into rounds of at most `streams` prompts, longest suffix
 * first, and the shorter suffixes of a round are padded after their scored token (with their last
 * token, positions continuing, no logits): llama.cpp splits a multi-stream batch into micro-batches
 * with the same number of tokens per sequence (`split_equal`), so equal suffixes keep every
 * micro-batch full. Padding comes after the scored token, so causal attention keeps it out of the
 * score. After each round, cells past the header are dropped in every stream; the header stays
 * resident (in stream 0) for the next call.
 *
 * Facts this relies on (llama.cpp at the bundled commit; ../shared/notes/llama-cpp-facts.md): a
 * stream has PAD(n_ctx / n_seq_max, 256) cells; a token may carry one sequence id only; a copy
 * across streams is queued and done at the start of the next decode.
 */
import { IntList, STEP_CLEAR, STEP_COPY, STEP_DECODE, STEP_REMOVE_FROM, type Plan, type PlanOptions } from "./plan.js";

export interface StreamLimits {
  /** Streams (n_seq_max of the context). */
  streams: number;
  /** KV cells of one stream: no prompt may be longer. */
  streamCells: number;
  /** Most tokens in one llama_decode call (n_batch). */
  nBatch: number;
}

/** Plans the scoring of `prompts` (BOS included, each 1..streamCells tokens) in the streams layout. */
export function planStreams(prompts: readonly Int32Array[], limits: StreamLimits, options: PlanOptions = {}): Plan {
  const share = options.share ?? true;
  const { streams, streamCells, nBatch } = limits;
  if (streams < 1 || nBatch < 1 || streamCells < 1) throw new RangeError("streams, streamCells and nBatch must be positive");
  for (let i = 0; i < prompts.length; i++) {
    const n = prompts[i].length;
    if (n < 1 || n > streamCells) throw new RangeError(`prompt ${i} has ${n} tokens; a stream holds 1..${streamCells}`);
  }
  // output slots: identical prompts share one when sharing
  const outputOf = new Int32Array(prompts.length);
  const unique: Int32Array[] = [];
  const seen = new Map<string, number>();
  prompts.forEach((p, i) => {
    const key = share ? p.join(",") : "";
    const slot = share ? seen.get(key) : undefined;
    if (slot !== undefined) {
      outputOf[i] = slot;
      return;
    }
    outputOf[i] = unique.length;
    if (share) seen.set(key, unique.length);
    unique.push(p);
  });

  // the header: the longest common prefix, leaving every prompt at least its last token
  let h = 0;
  if (share && unique.length > 0) {
    h = Math.min(...unique.map((p) => p.length)) - 1;
    const first = unique[0];
    for (const p of unique) {
      let k = 0;
      while (k < h && p[k] === first[k]) k++;
      h = k;
    }
  }
  const header = unique.length > 0 ? unique[0].subarray(0, h) : new Int32Array(0);

  const tokens = new IntList();
  const pos = new IntList();
  const out = new IntList();
  const seqOffsets = new IntList();
  const seqIds = new IntList();
  const steps: number[] = [];
  seqOffsets.push(0);
  let flushedTo = 0;
  let decodeCalls = 0;
  let padding = 0;
  const emit = (token: number, p: number, slot: number, seq: number) => {
    tokens.push(token);
    pos.push(p);
    out.push(slot);
    seqIds.push(seq);
    seqOffsets.push(seqIds.length);
  };
  const flush = () => {
    for (let a = flushedTo; a < tokens.length; a += nBatch) {
      steps.push(STEP_DECODE, a, Math.min(tokens.length, a + nBatch));
      decodeCalls++;
    }
    flushedTo = tokens.length;
  };

  // what the previous call left in stream 0 (positions 0..r-1) and is still the header's
  const resident = share ? Array.from(options.resident ?? []) : [];
  let reused = 0;
  while (reused < h && reused < resident.length && resident[reused] === header[reused]) reused++;
  if (resident.length === 0) steps.push(STEP_CLEAR, 0, 0);
  else if (resident.length > reused) steps.push(STEP_REMOVE_FROM, reused, 0);
  for (let j = reused; j < h; j++) emit(header[j], j, -1, 0);
  flush(); // a decode of its own: the copies below read stream 0 at the start of the next decode

  // rounds, longest suffix first
  const order = unique.map((_, i) => i).sort((x, y) => unique[y].length - unique[x].length || x - y);
  let copied = 1; // streams holding this call's header (stream 0 does)
  let rounds = 0;
  for (let i = 0; i < order.length;) {
    const width = unique[order[i]].length - h; // the round's suffix length (the longest)
    const k = Math.max(1, Math.min(streams, order.length - i, Math.floor(nBatch / width)));
    if (h > 0) {
      for (; copied < k; copied++) steps.push(STEP_COPY, 0, copied);
    }
    for (let s = 0; s < k; s++) {
      const slot = order[i + s];
      const p = unique[slot];
      for (let j = h; j < p.length; j++) emit(p[j], j, j === p.length - 1 ? slot : -1, s);
      for (let j = p.length; j < h + width; j++) emit(p[p.length - 1], j, -1, s); // padding
      padding += h + width - p.length;
    }
    flush();
    steps.push(STEP_REMOVE_FROM, h, 0);
    rounds++;
    i += k;
  }
  flush();

  let promptTokens = 0;
  for (const p of prompts) promptTokens += p.length;
  return {
    tokens: tokens.toArray(),
    pos: pos.toArray(),
    out: out.toArray(),
    seqOffsets: seqOffsets.toArray(),
    seqIds: seqIds.toArray(),
    steps: Int32Array.from(steps),
    nOutputs: unique.length,
    outputOf,
    residentAfter: Int32Array.from(header),
    stats: { promptTokens, decodedTokens: tokens.length, reusedTokens: reused, decodeCalls, rounds, paddingTokens: padding },
  };
}
