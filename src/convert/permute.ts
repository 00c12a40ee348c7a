/**
 * The row permutation llama.cpp applies to LLaMA's q_proj and k_proj weights.
 *
 * Hugging Face's LLaMA applies rotary embeddings by "rotate half": in each head of `d` rows,
 * row `i` is paired with row `i + d/2`. llama.cpp's rope (type NORM) pairs adjacent rows `2i`
 * and `2i + 1`. convert_hf_to_gguf.py therefore reorders the rows of each head:
 * `w.reshape(n_head, 2, d/2, ...).swapaxes(1, 2).reshape(w.shape)`, i.e. GGUF row
 * `h·d + 2i + j` is HF row `h·d + j·d/2 + i` (j ∈ {0, 1}). In a LoRA update `B·A` only B's rows
 * (the output dimension) move.
 */

/**
 * Reorders the rows of a row-major matrix between Hugging Face and llama.cpp layouts.
 *
 * @param data the matrix bytes: `nRows` rows of `rowBytes` bytes each.
 * @param nHead heads the rows are split into (n_head for q, n_head_kv for k).
 * @param direction "to-gguf" (what the converter does) or "to-hf" (its inverse).
 * @returns a new buffer.
 */
export function permuteQkRows(data: Uint8Array, nRows: number, rowBytes: number, nHead: number, direction: "to-gguf" | "to-hf"): Uint8Array {
  if (data.length !== nRows * rowBytes) throw new RangeError(`permuteQkRows: ${data.length} bytes is not ${nRows} rows of ${rowBytes}`);
  if (nRows % nHead !== 0 || (nRows / nHead) % 2 !== 0) throw new RangeError(`permuteQkRows: ${nRows} rows do not split into ${nHead} heads of even size`);
  const d = nRows / nHead;
  const half = d / 2;
  const out = new Uint8Array(data.length);
  for (let h = 0; h < nHead; h++) {
    for (let i = 0; i < half; i++) {
      for (let j = 0; j < 2; j++) {
        const gguf = h * d + 2 * i + j;
        const hf = h * d + j * half + i;
        const [dst, src] = direction === "to-gguf" ? [gguf, hf] : [hf, gguf];
        out.set(data.subarray(src * rowBytes, (src + 1) * rowBytes), dst * rowBytes);
      }
    }
  }
  return out;
}
