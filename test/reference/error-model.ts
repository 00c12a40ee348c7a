/**
 * Bounds from an error model, not from constants tuned on one CPU.
 *
 * llama.cpp computes in float32 with reduction orders that depend on the CPU's vector width
 * (ggml_vec_dot_* accumulate in 8 lanes with AVX2 and 16 with AVX-512; the llamafile sgemm used
 * for matrix products of two or more tokens blocks differently again) and on the batch's shape
 * (a prompt alone or inside a batch of 64 sits at other KV cells, so its softmax sums and P·V
 * products add the same terms in another order). Each such difference is float32-sized; where a
 * value is then rounded to F16 (the KV cache, the inputs of products with F16 weights) it can
 * land on the other side of a rounding boundary and become an F16 ulp. How much that moves the
 * answer logits depends on the model (depth, width, how sensitive its logits are): this module
 * measures that sensitivity on the float64 reference by running realizations of the float32
 * error model (Float32Noise in llama64.ts) and returns σ, the RMS deviation of the logits.
 *
 * Bounds used by the tests:
 * - llama.cpp against the unperturbed reference: |Δ| ≤ K·σ + ε·max(1, |x|)
 * - a prompt in two batch shapes: |Δ| ≤ √2·K·σ + ε·max(1, |x|) (two independent realizations)
 * with K = 6 (σ is estimated from R realizations; a 6σ excursion of a Student-t with R−1 degrees
 * of freedom has probability below 1e-3 for R ≥ 8) and ε = 1e-6 for what the model leaves out
 * (libm's exp/cos against ggml's, float32 conversion of weights that are exactly float32).
 */
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";

import { Float32Noise, loadReference, type ReferenceAdapter, type ReferenceModel, type ReferencePrecision } from "./llama64.js";

export const SIGMA_K = 6;
export const FLOOR = 1e-6;

export interface ErrorEstimate {
  /** Unperturbed reference values. */
  yes: number;
  no: number;
  lse: number;
  /** RMS deviation of the perturbed realizations from the unperturbed values. */
  sigmaYes: number;
  sigmaNo: number;
  sigmaLse: number;
}

const YES = 8241;
const NO = 3782;

function logSumExp(row: Float64Array): number {
  let m = -Infinity;
  for (const v of row) m = Math.max(m, v);
  let s = 0;
  for (const v of row) s += Math.exp(v - m);
  return m + Math.log(s);
}

/** σ of the yes/no logits and the log-sum-exp for one prompt, from `realizations` seeded runs. */
export function estimateError(ref: ReferenceModel, tokens: readonly number[], { realizations = 8, seed = 1, yes = YES, no = NO } = {}): ErrorEstimate {
  const clean = ref.forwardLastLogits(tokens);
  const c = { yes: clean[yes], no: clean[no], lse: logSumExp(clean) };
  let sy = 0;
  let sn = 0;
  let sl = 0;
  for (let r = 0; r < realizations; r++) {
    const row = ref.forwardLastLogits(tokens, new Float32Noise(seed * 1000 + r));
    sy += (row[yes] - c.yes) ** 2;
    sn += (row[no] - c.no) ** 2;
    sl += (logSumExp(row) - c.lse) ** 2;
  }
  const n = Math.max(1, realizations); // 0 realizations: the unperturbed values only, σ = 0
  return { ...c, sigmaYes: Math.sqrt(sy / n), sigmaNo: Math.sqrt(sn / n), sigmaLse: Math.sqrt(sl / n) };
}

/** The bound for llama.cpp against the unperturbed reference value x with model σ. */
export function referenceBound(sigma: number, x: number): number {
  return SIGMA_K * sigma + FLOOR * Math.max(1, Math.abs(x));
}

/** The bound for the same prompt scored in two batch shapes (two realizations of the noise). */
export function invarianceBound(sigma: number, x: number): number {
  return Math.SQRT2 * SIGMA_K * sigma + FLOOR * Math.max(1, Math.abs(x));
}

/**
 * The estimates are deterministic (seeded) and cost a few float64 forward passes each, so they are
 * kept on disk beside the generated models (models/.cache/error-model/), keyed by the content of
 * the model and adapter files, the precision flags, the tokens and the model version below: a
 * fresh clone computes them once (about a minute on 2 cores), later runs read them.
 */
const ERROR_MODEL_VERSION = 2;

const fileDigests = new Map<string, string>();
function fileDigest(path: string): string {
  let d = fileDigests.get(path);
  if (!d) {
    d = createHash("sha256").update(readFileSync(path)).digest("hex");
    fileDigests.set(path, d);
  }
  return d;
}

const references = new Map<string, ReferenceModel>();

export interface SigmaRequest {
  model: string;
  adapters?: readonly ReferenceAdapter[];
  precision?: ReferencePrecision;
  tokens: readonly number[];
  realizations?: number;
}

/** estimateError for one prompt, read from the on-disk cache when it was computed before. */
export function cachedError(req: SigmaRequest): ErrorEstimate {
  const adapters = req.adapters ?? [];
  const precision = req.precision ?? {};
  const realizations = req.realizations ?? 8;
  const key = createHash("sha256")
    .update(
      JSON.stringify({
        v: ERROR_MODEL_VERSION,
        model: fileDigest(req.model),
        adapters: adapters.map((a) => [fileDigest(a.path), a.scale]),
        precision: { f16Kv: !!precision.f16Kv, f16Activations: !!precision.f16Activations, f32Rope: !!precision.f32Rope },
        tokens: req.tokens,
        realizations,
      }),
    )
    .digest("hex");
  const dir = join(dirname(req.model), ".cache", "error-model");
  const file = join(dir, `${key.slice(0, 32)}.json`);
  if (existsSync(file)) {
    try {
      return JSON.parse(readFileSync(file, "utf8")) as ErrorEstimate;
    } catch {
      // a torn write from an interrupted run: compute again
    }
  }
  const refKey = JSON.stringify([req.model, adapters, precision]);
  let ref = references.get(refKey);
  if (!ref) {
    ref = loadReference(req.model, adapters, precision);
    references.set(refKey, ref);
  }
  const est = estimateError(ref, req.tokens, { realizations });
  mkdirSync(dir, { recursive: true });
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, JSON.stringify(est));
  renameSync(tmp, file);
  return est;
}
