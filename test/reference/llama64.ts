/**
 * An independent float64 reference forward pass of a LLaMA-architecture GGUF
 * model (with optional LoRA adapters), written for obviousness, not speed.
 * It reads weights only through this package's GGUF reader and follows
 * llama.cpp's LLAMA graph:
 *
 *   x = token_embd[token]
 *   per block: h = rmsnorm(x)·attn_norm; q,k,v = W h (+ LoRA); RoPE NORM on q,k;
 *              causal grouped-query attention with 1/sqrt(head_dim) scaling;
 *              x += W_o attn;  h = rmsnorm(x)·ffn_norm;  x += W_down (silu(W_gate h) · W_up h)
 *   logits = W_output (rmsnorm(x)·output_norm)
 *
 * A LoRA adapter adds `s · B (A x)` to a linear's output, `s = scale · alpha / r`
 * (r read from lora_b, `s = scale` when alpha is 0), exactly as llama.cpp's build_lora_mm.
 */
import { f16ToF32Table, f32ToF16Bits } from "../../src/gguf/float.js";
import { getMetadataNumber, getMetadataString, openGgufSync, readTensorF64, type GgufFile } from "../../src/gguf/reader.js";
import { GgmlType } from "../../src/gguf/types.js";

/**
 * Where llama.cpp's CPU backend rounds to half precision, for comparing like with like:
 * - `f16Activations`: a matrix product with an F16 weight converts its input to F16 first
 *   (ggml's vec_dot type for F16 is F16);
 * - `f16Kv`: with an F16 KV cache, K and V are stored as F16, and the products with them round
 *   their other operand too (Q for Q·K, the attention probabilities for P·V).
 * Both off: exact float64 math.
 */
export interface ReferencePrecision {
  f16Activations?: boolean;
  f16Kv?: boolean;
  /**
   * RoPE angles as ggml's CPU and CUDA kernels compute them: in float32, `theta = pos` then
   * `theta *= powf(base, -2/n_rot)` pair by pair (rope_cache_init). At position p the float32
   * angle is off by up to ~p·2^-24 radians (3e-5 at p = 300), hundreds of times float32's own
   * precision, and with an F16 KV cache that shifts which way K values round. Off: exact angles.
   */
  f32Rope?: boolean;
}

/** float32's unit roundoff (round to nearest): half an ulp of 1. */
export const U32 = 2 ** -24;

/**
 * The error model used to bound how far llama.cpp's float32 arithmetic may stray from this
 * reference. One realization perturbs every value llama.cpp computes in float32 by random noise
 * of the size float32 rounding gives it, and then rounds to F16 where llama.cpp does:
 * - a dot product of n terms t_i (matrix rows, Q·K, P·V, LoRA): σ = u·sqrt(n/2)·‖t‖₂ (recursive
 *   summation with random-sign rounding errors; blocked or vectorised summation, as ggml does,
 *   only makes the partial sums smaller, so this is an upper estimate for any reduction order);
 * - a sum of n squares (RMS norm) or of n exponentials (softmax): σ = u·sqrt(n)·|y|;
 * - an elementwise result (rope, scaling, SiLU·up, residual add): σ = 2u·|y|.
 * Where a value is rounded to F16 afterwards, the noise decides on which side of a rounding
 * boundary it falls, which is how a different reduction order in llama.cpp (another ISA's vector
 * width, another batch shape) turns float32-sized differences into F16-ulp-sized ones. The RMS
 * over realizations of (perturbed − unperturbed) logits is the model's σ for a prompt; see
 * test/reference/error-model.ts.
 */
export class Float32Noise {
  private state: number;
  constructor(seed: number) {
    this.state = seed >>> 0 || 0x9e3779b9;
  }
  /** mulberry32: a small seeded generator (the model needs reproducible realizations, not crypto). */
  private uniform(): number {
    let t = (this.state = (this.state + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (((t ^ (t >>> 14)) >>> 0) + 0.5) / 4294967296;
  }
  /**
   * A unit-variance draw. Uniform on [-√3, √3] rather than Gaussian: the logits sum thousands of
   * these, so their distribution is Gaussian either way, and one generator call is several times
   * cheaper than Box–Muller (the error model runs the reference many times).
   */
  unit(): number {
    return (2 * this.uniform() - 1) * 1.7320508075688772;
  }
  /** y + noise of standard deviation u·sqrt(n/2)·norm: a dot product of n terms whose 2-norm is `norm`. */
  dot(y: number, n: number, norm: number): number {
    return y + U32 * Math.sqrt(n / 2) * norm * this.unit();
  }
  /** y·(1 + noise of standard deviation c·u): a result with relative float32 error of about c·u. */
  rel(y: number, c: number): number {
    return y * (1 + c * U32 * this.unit());
  }
  relArray(v: Float64Array, c: number): Float64Array {
    for (let i = 0; i < v.length; i++) v[i] = this.rel(v[i], c);
    return v;
  }
}

const F16_VALUES = f16ToF32Table(); // every binary16 value, exact in float32

/** Rounds to the nearest half-precision value (round to nearest even, as ggml does). */
export function roundF16(x: number): number {
  return F16_VALUES[f32ToF16Bits(x)];
}

function roundF16Array(v: Float64Array): Float64Array {
  const out = new Float64Array(v.length);
  for (let i = 0; i < v.length; i++) out[i] = roundF16(v[i]);
  return out;
}

/** A LoRA adapter file and its user scale. */
export interface ReferenceAdapter {
  path: string;
  scale: number;
}

/** Hyperparameters read from the model's metadata. */
export interface ReferenceHparams {
  nEmbd: number;
  nLayer: number;
  nHead: number;
  nHeadKv: number;
  headDim: number;
  nRot: number;
  nVocab: number;
  ropeFreqBase: number;
  rmsEps: number;
}

/** A loaded reference model. */
export interface ReferenceModel {
  hparams: ReferenceHparams;
  /**
   * Logits over the whole vocabulary for the last position of `tokens` (positions 0..n-1).
   * With `noise`, one realization of the float32 error model (see Float32Noise).
   */
  forwardLastLogits(tokens: readonly number[], noise?: Float32Noise): Float64Array;
}

/** A linear layer: weight in ggml layout (element (i, o) at i + nIn·o) plus LoRA pairs. */
interface Linear {
  w: Float64Array;
  nIn: number;
  nOut: number;
  /** Round the input to F16 before the product with w (an F16 weight under f16Activations). */
  f16: boolean;
  loras: Array<{ a: Float64Array; b: Float64Array; r: number; s: number; f16: boolean }>;
}

/** y = W x: y[o] = Σ_i w[o·nIn + i] x[i]. */
function matvec(w: Float64Array, x: Float64Array, nIn: number, nOut: number, noise?: Float32Noise): Float64Array {
  const y = new Float64Array(nOut);
  for (let o = 0; o < nOut; o++) {
    let s = 0;
    let sq = 0;
    const base = o * nIn;
    if (noise) {
      for (let i = 0; i < nIn; i++) {
        const t = w[base + i] * x[i];
        s += t;
        sq += t * t;
      }
      y[o] = noise.dot(s, nIn, Math.sqrt(sq));
    } else {
      for (let i = 0; i < nIn; i++) s += w[base + i] * x[i];
      y[o] = s;
    }
  }
  return y;
}

function applyLinear(l: Linear, x: Float64Array, noise?: Float32Noise): Float64Array {
  const y = matvec(l.w, l.f16 ? roundF16Array(x) : x, l.nIn, l.nOut, noise);
  for (const { a, b, r, s, f16 } of l.loras) {
    const ax = matvec(a, f16 ? roundF16Array(x) : x, l.nIn, r, noise); // lora_a: ggml [nIn, r]
    const bax = matvec(b, f16 ? roundF16Array(ax) : ax, r, l.nOut, noise); // lora_b: ggml [r, nOut]
    for (let o = 0; o < l.nOut; o++) y[o] += noise ? noise.rel(s * bax[o], 2) : s * bax[o];
  }
  return y;
}

function rmsNorm(x: Float64Array, weight: Float64Array, eps: number, noise?: Float32Noise): Float64Array {
  let ss = 0;
  for (let i = 0; i < x.length; i++) ss += x[i] * x[i];
  let scale = 1 / Math.sqrt(ss / x.length + eps);
  if (noise) scale = noise.rel(scale, Math.sqrt(x.length));
  const y = new Float64Array(x.length);
  for (let i = 0; i < x.length; i++) y[i] = x[i] * scale * weight[i];
  return noise ? noise.relArray(y, 2) : y;
}

/** ggml's rope angle for pair i at position pos, in float32 (see ReferencePrecision.f32Rope). */
function ropeAnglesF32(pos: number, nRot: number, base: number): Float64Array {
  const f = Math.fround;
  const thetaScale = f(Math.pow(f(base), f(-2 / nRot)));
  const out = new Float64Array(nRot / 2);
  let theta = f(pos);
  for (let i = 0; i < nRot / 2; i++) {
    out[i] = theta;
    theta = f(theta * thetaScale);
  }
  return out;
}

/** RoPE, llama.cpp rope type NORM: rotate adjacent pairs (2i, 2i+1) of each head by pos · base^(-2i/nRot). */
function rope(v: Float64Array, nHeads: number, headDim: number, nRot: number, pos: number, base: number, f32Angles: boolean, noise?: Float32Noise): void {
  const angles = f32Angles ? ropeAnglesF32(pos, nRot, base) : null;
  for (let h = 0; h < nHeads; h++) {
    for (let i = 0; i < nRot / 2; i++) {
      const theta = angles ? angles[i] : pos * Math.pow(base, (-2 * i) / nRot);
      const c = angles ? Math.fround(Math.cos(theta)) : Math.cos(theta);
      const s = angles ? Math.fround(Math.sin(theta)) : Math.sin(theta);
      const j = h * headDim + 2 * i;
      const x0 = v[j];
      const x1 = v[j + 1];
      v[j] = x0 * c - x1 * s;
      v[j + 1] = x0 * s + x1 * c;
      if (noise) {
        v[j] = noise.rel(v[j], 2);
        v[j + 1] = noise.rel(v[j + 1], 2);
      }
    }
  }
}

const silu = (x: number): number => x / (1 + Math.exp(-x));

interface AdapterTensors {
  file: GgufFile;
  scale: number;
  alpha: number;
}

function loadAdapters(model: GgufFile, adapters: readonly ReferenceAdapter[]): AdapterTensors[] {
  const arch = getMetadataString(model, "general.architecture");
  return adapters.map(({ path, scale }) => {
    const file = openGgufSync(path);
    if (getMetadataString(file, "general.type", "") !== "adapter") throw new Error(`${path}: general.type is not "adapter"`);
    if (getMetadataString(file, "adapter.type", "") !== "lora") throw new Error(`${path}: adapter.type is not "lora"`);
    if (getMetadataString(file, "general.architecture", "") !== arch) throw new Error(`${path}: model arch and LoRA arch mismatch`);
    for (const t of file.tensors) {
      const m = /^(.*)\.lora_[ab]$/.exec(t.name);
      if (!m) throw new Error(`${path}: unexpected tensor ${t.name}`);
      if (m[1] === "token_embd.weight") throw new Error(`${path}: LoRA on token_embd is not supported by this reference`);
      if (!model.tensorsByName.has(m[1])) throw new Error(`${path}: LoRA tensor ${m[1]} does not exist in base model`);
    }
    return { file, scale, alpha: getMetadataNumber(file, "adapter.lora.alpha", 0) };
  });
}

/**
 * Loads a LLaMA GGUF (and LoRA adapters) into float64 arrays.
 *
 * @throws {Error} when an adapter does not fit the model (architecture, tensor names or shapes).
 */
export function loadReference(modelPath: string, adapters: readonly ReferenceAdapter[] = [], precision: ReferencePrecision = {}): ReferenceModel {
  const f = openGgufSync(modelPath);
  const arch = getMetadataString(f, "general.architecture");
  if (arch !== "llama") throw new Error(`${modelPath}: architecture ${arch} is not llama`);
  const nEmbd = getMetadataNumber(f, "llama.embedding_length");
  const nLayer = getMetadataNumber(f, "llama.block_count");
  const nHead = getMetadataNumber(f, "llama.attention.head_count");
  const nHeadKv = getMetadataNumber(f, "llama.attention.head_count_kv", nHead);
  const headDim = nEmbd / nHead;
  const hp: ReferenceHparams = {
    nEmbd,
    nLayer,
    nHead,
    nHeadKv,
    headDim,
    nRot: getMetadataNumber(f, "llama.rope.dimension_count", headDim),
    nVocab: f.tensorsByName.get("token_embd.weight")!.dims[1],
    ropeFreqBase: getMetadataNumber(f, "llama.rope.freq_base", 10000),
    rmsEps: getMetadataNumber(f, "llama.attention.layer_norm_rms_epsilon"),
  };
  if (hp.nRot !== headDim) throw new Error(`rope dimension ${hp.nRot} != head dim ${headDim} (llama.cpp LLAMA requires equality)`);
  const ads = loadAdapters(f, adapters);

  const linear = (name: string): Linear => {
    const info = f.tensorsByName.get(name);
    if (!info) throw new Error(`${modelPath}: missing tensor ${name}`);
    const [nIn, nOut] = info.dims;
    const l: Linear = { w: readTensorF64(f, name), nIn, nOut, f16: !!precision.f16Activations && info.type === GgmlType.F16, loras: [] };
    for (const ad of ads) {
      const ai = ad.file.tensorsByName.get(`${name}.lora_a`);
      const bi = ad.file.tensorsByName.get(`${name}.lora_b`);
      if (!ai && !bi) continue;
      if (!ai || !bi) throw new Error(`${ad.file.path}: ${name} has only one of lora_a / lora_b`);
      const r = bi.dims[0];
      if (ai.dims[0] !== nIn || bi.dims[1] !== nOut || ai.dims[1] !== r) {
        throw new Error(`${ad.file.path}: tensor ${name} has incorrect shape`);
      }
      const s = ad.alpha ? (ad.scale * ad.alpha) / r : ad.scale;
      l.loras.push({ a: readTensorF64(ad.file, `${name}.lora_a`), b: readTensorF64(ad.file, `${name}.lora_b`), r, s, f16: !!precision.f16Activations && ai.type === GgmlType.F16 });
    }
    return l;
  };

  const embd = readTensorF64(f, "token_embd.weight");
  const layers = Array.from({ length: nLayer }, (_, l) => ({
    attnNorm: readTensorF64(f, `blk.${l}.attn_norm.weight`),
    q: linear(`blk.${l}.attn_q.weight`),
    k: linear(`blk.${l}.attn_k.weight`),
    v: linear(`blk.${l}.attn_v.weight`),
    o: linear(`blk.${l}.attn_output.weight`),
    ffnNorm: readTensorF64(f, `blk.${l}.ffn_norm.weight`),
    gate: linear(`blk.${l}.ffn_gate.weight`),
    up: linear(`blk.${l}.ffn_up.weight`),
    down: linear(`blk.${l}.ffn_down.weight`),
  }));
  const outputNorm = readTensorF64(f, "output_norm.weight");
  const output = linear(f.tensorsByName.has("output.weight") ? "output.weight" : "token_embd.weight");

  function forwardLastLogits(tokens: readonly number[], noise?: Float32Noise): Float64Array {
    const T = tokens.length;
    if (T === 0) throw new Error("no tokens");
    let xs: Float64Array[] = tokens.map((tok) => {
      if (!Number.isInteger(tok) || tok < 0 || tok >= hp.nVocab) throw new Error(`token ${tok} outside the vocabulary`);
      return embd.slice(tok * nEmbd, (tok + 1) * nEmbd);
    });
    const group = nHead / nHeadKv;
    const scale = 1 / Math.sqrt(headDim);
    const f32Rope = !!precision.f32Rope;
    for (const L of layers) {
      const qs: Float64Array[] = [];
      const ks: Float64Array[] = [];
      const vs: Float64Array[] = [];
      for (let t = 0; t < T; t++) {
        const h = rmsNorm(xs[t], L.attnNorm, hp.rmsEps, noise);
        const q = applyLinear(L.q, h, noise);
        const k = applyLinear(L.k, h, noise);
        rope(q, nHead, headDim, hp.nRot, t, hp.ropeFreqBase, f32Rope, noise);
        rope(k, nHeadKv, headDim, hp.nRot, t, hp.ropeFreqBase, f32Rope, noise);
        const v = applyLinear(L.v, h, noise);
        qs.push(precision.f16Kv ? roundF16Array(q) : q);
        ks.push(precision.f16Kv ? roundF16Array(k) : k);
        vs.push(precision.f16Kv ? roundF16Array(v) : v);
      }
      const next: Float64Array[] = [];
      // the last layer only needs the last position's output (K and V of all positions are above)
      const first = L === layers[layers.length - 1] ? T - 1 : 0;
      for (let t = 0; t < first; t++) next.push(xs[t]);
      for (let t = first; t < T; t++) {
        const att = new Float64Array(nHead * headDim);
        for (let h = 0; h < nHead; h++) {
          const kvh = Math.floor(h / group);
          const scores = new Float64Array(t + 1);
          let max = -Infinity;
          for (let s = 0; s <= t; s++) {
            let dot = 0;
            let sq = 0;
            for (let d = 0; d < headDim; d++) {
              const term = qs[t][h * headDim + d] * ks[s][kvh * headDim + d];
              dot += term;
              sq += term * term;
            }
            scores[s] = (noise ? noise.dot(dot, headDim, Math.sqrt(sq)) : dot) * scale;
            max = Math.max(max, scores[s]);
          }
          let sum = 0;
          for (let s = 0; s <= t; s++) {
            scores[s] = noise ? noise.rel(Math.exp(scores[s] - max), 2) : Math.exp(scores[s] - max);
            sum += scores[s];
          }
          if (noise) sum = noise.rel(sum, Math.sqrt(t + 1));
          const sq = new Float64Array(headDim);
          for (let s = 0; s <= t; s++) {
            const p = precision.f16Kv ? roundF16(scores[s] / sum) : scores[s] / sum;
            for (let d = 0; d < headDim; d++) {
              const term = p * vs[s][kvh * headDim + d];
              att[h * headDim + d] += term;
              if (noise) sq[d] += term * term;
            }
          }
          if (noise) for (let d = 0; d < headDim; d++) att[h * headDim + d] = noise.dot(att[h * headDim + d], t + 1, Math.sqrt(sq[d]));
        }
        const x = xs[t].slice();
        const o = applyLinear(L.o, att, noise);
        for (let i = 0; i < nEmbd; i++) x[i] = noise ? noise.rel(x[i] + o[i], 1) : x[i] + o[i];
        const h2 = rmsNorm(x, L.ffnNorm, hp.rmsEps, noise);
        const g = applyLinear(L.gate, h2, noise);
        const u = applyLinear(L.up, h2, noise);
        for (let i = 0; i < g.length; i++) g[i] = noise ? noise.rel(silu(g[i]) * u[i], 3) : silu(g[i]) * u[i];
        const d = applyLinear(L.down, g, noise);
        for (let i = 0; i < nEmbd; i++) x[i] = noise ? noise.rel(x[i] + d[i], 1) : x[i] + d[i];
        next.push(x);
      }
      xs = next;
    }
    return applyLinear(output, rmsNorm(xs[T - 1], outputNorm, hp.rmsEps, noise), noise);
  }

  return { hparams: hp, forwardLastLogits };
}

/** log-softmax of a logit vector (float64, max-shifted). */
export function logSoftmax(logits: Float64Array): Float64Array {
  let max = -Infinity;
  for (const v of logits) max = Math.max(max, v);
  let sum = 0;
  for (const v of logits) sum += Math.exp(v - max);
  const lse = max + Math.log(sum);
  return logits.map((v) => v - lse);
}
