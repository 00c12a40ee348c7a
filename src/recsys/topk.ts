/**
 * Top-k selection over a score vector with a bounded binary heap:
 * O(n log k). Order: score descending, ties by index ascending, so results
 * are deterministic. NaN scores are never selected.
 *
 * @module
 */

/** Whether entry (sa, ia) ranks below entry (sb, ib): lower score, or equal score and higher index. */
function worse(sa: number, ia: number, sb: number, ib: number): boolean {
  return sa < sb || (sa === sb && ia > ib);
}

/** Puts entry (s, i) at the root of the min-heap of the first `size` entries and sifts it down. */
function replaceRoot(heapScore: Float64Array, heapIdx: Int32Array, size: number, s: number, i: number): void {
  let c = 0;
  for (;;) {
    const l = 2 * c + 1;
    if (l >= size) break;
    const r = l + 1;
    const m = r < size && worse(heapScore[r], heapIdx[r], heapScore[l], heapIdx[l]) ? r : l;
    if (!worse(heapScore[m], heapIdx[m], s, i)) break;
    heapScore[c] = heapScore[m];
    heapIdx[c] = heapIdx[m];
    c = m;
  }
  heapScore[c] = s;
  heapIdx[c] = i;
}

/**
 * Indices of the `k` best entries of `scores` for which `accept(index)` is
 * true (all entries when `accept` is omitted), best first.
 */
export function topK(scores: ArrayLike<number>, k: number, accept?: (index: number) => boolean): Int32Array {
  if (k <= 0) return new Int32Array(0);
  const heapIdx = new Int32Array(k); // min-heap on (score, -index): root is the worst kept entry
  const heapScore = new Float64Array(k);
  let size = 0;
  const n = scores.length;
  for (let i = 0; i < n; i++) {
    const s = scores[i];
    if (s !== s) continue; // NaN
    if (size === k && !worse(heapScore[0], heapIdx[0], s, i)) continue;
    if (accept && !accept(i)) continue;
    if (size < k) {
      // sift up
      let c = size++;
      while (c > 0) {
        const p = (c - 1) >> 1;
        if (!worse(s, i, heapScore[p], heapIdx[p])) break;
        heapScore[c] = heapScore[p];
        heapIdx[c] = heapIdx[p];
        c = p;
      }
      heapScore[c] = s;
      heapIdx[c] = i;
    } else {
      replaceRoot(heapScore, heapIdx, size, s, i);
    }
  }
  // Pop everything: worst first, fill from the back.
  const out = new Int32Array(size);
  for (let pos = size - 1; pos >= 0; pos--) {
    out[pos] = heapIdx[0];
    const ls = heapScore[size - 1];
    const li = heapIdx[size - 1];
    size--;
    replaceRoot(heapScore, heapIdx, size, ls, li);
  }
  return out;
}
