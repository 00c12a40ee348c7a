/**
 * An independent float64 reference forward pass of a Hugging Face LlamaForCausalLM checkpoint
 * with optional PEFT LoRA adapters, in Hugging Face's own conventions, written for obviousness:
 *
 * - weights read straight from `model.safetensors` / `adapter_model.safetensors` with a parser
 *   of its own (no tallrec code), PyTorch shapes (out, in), y = W x;
 * - q_proj/k_proj in Hugging Face's (unpermuted) row order with "rotate half" RoPE: in each head
 *   of d dimensions, dimension i pairs with i + d/2 at angle pos · base^(-2i/d);
 * - LoRA as PEFT applies it: y += s · B (A x), s = lora_alpha / r (lora_alpha / sqrt(r) with
 *   use_rslora), A (r, in), B (out, r);
 * - grouped-query attention: head h uses key/value head floor(h / (n_head / n_kv_head)).
 *
 * It shares nothing with llama64.ts (adjacent-pair RoPE on permuted GGUF weights), so agreement
 * between llama.cpp running a converted model and this reference checks the permutation, the
 * tensor mapping and the LoRA scale of the converters.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";

/** A tensor from a safetensors file, as float64. */
interface Tensor {
  shape: number[];
  data: Float64Array;
}

function halfToNumber(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m ? NaN : s * Infinity;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

/** Parses a whole safetensors file (F32, F16, BF16) into float64 tensors. */
export function readSafetensors64(path: string): Map<string, Tensor> {
  const buf = readFileSync(path);
  const n = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + n).toString("utf8")) as Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>;
  const base = 8 + n;
  const out = new Map<string, Tensor>();
  for (const [name, t] of Object.entries(header)) {
    if (name === "__metadata__") continue;
    const [b, e] = t.data_offsets;
    const count = t.shape.reduce((x, y) => x * y, 1);
    const data = new Float64Array(count);
    for (let i = 0; i < count; i++) {
      if (t.dtype === "F32") data[i] = buf.readFloatLE(base + b + 4 * i);
      else if (t.dtype === "F16") data[i] = halfToNumber(buf.readUInt16LE(base + b + 2 * i));
      else if (t.dtype === "BF16") {
        const f = Buffer.alloc(4);
        f.writeUInt32LE(buf.readUInt16LE(base + b + 2 * i) << 16);
        data[i] = f.readFloatLE(0);
      } else throw new Error(`${path}: ${name} has dtype ${t.dtype}`);
    }
    if ((e - b) / count !== (t.dtype === "F32" ? 4 : 2)) throw new Error(`${path}: ${name} size mismatch`);
    out.set(name, { shape: t.shape, data });
  }
  return out;
}

/** A PEFT adapter directory (adapter_config.json + adapter_model.safetensors) and its user scale. */
export interface HfAdapter {
  dir: string;
  scale: number;
}

interface Lora {
  a: Float64Array; // (r, in)
  b: Float64Array; // (out, r)
  r: number;
  s: number;
}

interface Linear {
  w: Float64Array; // (out, in)
  nIn: number;
  nOut: number;
  loras: Lora[];
}

function apply(l: Linear, x: Float64Array): Float64Array {
  const y = new Float64Array(l.nOut);
  for (let o = 0; o < l.nOut; o++) {
    let s = 0;
    for (let i = 0; i < l.nIn; i++) s += l.w[o * l.nIn + i] * x[i];
    y[o] = s;
  }
  for (const { a, b, r, s } of l.loras) {
    const ax = new Float64Array(r);
    for (let k = 0; k < r; k++) {
      let t = 0;
      for (let i = 0; i < l.nIn; i++) t += a[k * l.nIn + i] * x[i];
      ax[k] = t;
    }
    for (let o = 0; o < l.nOut; o++) {
      let t = 0;
      for (let k = 0; k < r; k++) t += b[o * r + k] * ax[k];
      y[o] += s * t;
    }
  }
  return y;
}

function rmsNorm(x: Float64Array, w: Float64Array, eps: number): Float64Array {
  let ss = 0;
  for (const v of x) ss += v * v;
  const k = 1 / Math.sqrt(ss / x.length + eps);
  return x.map((v, i) => v * k * w[i]);
}

/** Hugging Face LLaMA rotary embedding: rotate_half pairs dimension i with i + d/2 in each head. */
function ropeRotateHalf(v: Float64Array, nHeads: number, d: number, pos: number, base: number): void {
  const half = d / 2;
  for (let h = 0; h < nHeads; h++) {
    for (let i = 0; i < half; i++) {
      const theta = pos * Math.pow(base, (-2 * i) / d);
      const c = Math.cos(theta);
      const s = Math.sin(theta);
      const x1 = v[h * d + i];
      const x2 = v[h * d + i + half];
      v[h * d + i] = x1 * c - x2 * s;
      v[h * d + i + half] = x2 * c + x1 * s;
    }
  }
}

/** A loaded Hugging Face reference model. */
export interface HfReferenceModel {
  /** Logits over the vocabulary at the last of `tokens` (positions 0..n-1). */
  forwardLastLogits(tokens: readonly number[]): Float64Array;
}

/** Loads `modelDir` (config.json + model.safetensors) with PEFT adapters applied in Hugging Face's convention. */
export function loadHfReference(modelDir: string, adapters: readonly HfAdapter[] = []): HfReferenceModel {
  const cfg = JSON.parse(readFileSync(join(modelDir, "config.json"), "utf8")) as Record<string, number>;
  const nEmbd = cfg.hidden_size;
  const nHead = cfg.num_attention_heads;
  const nKv = cfg.num_key_value_heads ?? nHead;
  const d = nEmbd / nHead;
  const eps = cfg.rms_norm_eps;
  const base = cfg.rope_theta ?? 10000;
  const w = readSafetensors64(join(modelDir, "model.safetensors"));
  const get = (name: string): Tensor => {
    const t = w.get(name);
    if (!t) throw new Error(`missing ${name}`);
    return t;
  };
  const peft = adapters.map(({ dir, scale }) => {
    const c = JSON.parse(readFileSync(join(dir, "adapter_config.json"), "utf8")) as { r: number; lora_alpha: number; use_rslora?: boolean };
    const s = (scale * c.lora_alpha) / (c.use_rslora ? Math.sqrt(c.r) : c.r);
    return { tensors: readSafetensors64(join(dir, "adapter_model.safetensors")), s };
  });
  const linear = (prefix: string): Linear => {
    const t = get(`${prefix}.weight`);
    const l: Linear = { w: t.data, nOut: t.shape[0], nIn: t.shape[1], loras: [] };
    for (const p of peft) {
      const a = p.tensors.get(`base_model.model.${prefix}.lora_A.weight`);
      const b = p.tensors.get(`base_model.model.${prefix}.lora_B.weight`);
      if (!a && !b) continue;
      if (!a || !b) throw new Error(`${prefix}: half a LoRA pair`);
      l.loras.push({ a: a.data, b: b.data, r: a.shape[0], s: p.s });
    }
    return l;
  };
  const layers = Array.from({ length: cfg.num_hidden_layers }, (_, i) => {
    const p = `model.layers.${i}`;
    return {
      inNorm: get(`${p}.input_layernorm.weight`).data,
      q: linear(`${p}.self_attn.q_proj`),
      k: linear(`${p}.self_attn.k_proj`),
      v: linear(`${p}.self_attn.v_proj`),
      o: linear(`${p}.self_attn.o_proj`),
      postNorm: get(`${p}.post_attention_layernorm.weight`).data,
      gate: linear(`${p}.mlp.gate_proj`),
      up: linear(`${p}.mlp.up_proj`),
      down: linear(`${p}.mlp.down_proj`),
    };
  });
  const embed = get("model.embed_tokens.weight").data;
  const norm = get("model.norm.weight").data;
  const head = linear("lm_head");

  return {
    forwardLastLogits(tokens) {
      let hs = tokens.map((t) => embed.slice(t * nEmbd, (t + 1) * nEmbd));
      for (const L of layers) {
        const qs: Float64Array[] = [];
        const ks: Float64Array[] = [];
        const vs: Float64Array[] = [];
        hs.forEach((x, pos) => {
          const h = rmsNorm(x, L.inNorm, eps);
          const q = apply(L.q, h);
          const k = apply(L.k, h);
          ropeRotateHalf(q, nHead, d, pos, base);
          ropeRotateHalf(k, nKv, d, pos, base);
          qs.push(q);
          ks.push(k);
          vs.push(apply(L.v, h));
        });
        hs = hs.map((x, t) => {
          const att = new Float64Array(nHead * d);
          for (let h = 0; h < nHead; h++) {
            const g = Math.floor(h / (nHead / nKv));
            const sc = new Float64Array(t + 1);
            for (let s = 0; s <= t; s++) {
              let dot = 0;
              for (let j = 0; j < d; j++) dot += qs[t][h * d + j] * ks[s][g * d + j];
              sc[s] = dot / Math.sqrt(d);
            }
            const m = Math.max(...sc);
            let z = 0;
            for (let s = 0; s <= t; s++) z += sc[s] = Math.exp(sc[s] - m);
            for (let s = 0; s <= t; s++) for (let j = 0; j < d; j++) att[h * d + j] += (sc[s] / z) * vs[s][g * d + j];
          }
          const o = apply(L.o, att);
          const x1 = x.map((v, i) => v + o[i]);
          const h2 = rmsNorm(x1, L.postNorm, eps);
          const gate = apply(L.gate, h2);
          const up = apply(L.up, h2);
          const act = gate.map((g, i) => (g / (1 + Math.exp(-g))) * up[i]);
          const dn = apply(L.down, act);
          return x1.map((v, i) => v + dn[i]);
        });
      }
      return apply(head, rmsNorm(hs[hs.length - 1], norm, eps));
    },
  };
}
