/**
 * A LLaMA tokenizer from a Hugging Face checkpoint directory, as the GGUF `tokenizer.ggml.*`
 * metadata needs it: from `tokenizer.model` (SentencePiece, preferred, as llama.cpp's converter
 * does) or from `tokenizer.json` (a SentencePiece-style BPE with byte fallback), plus
 * `tokenizer_config.json`, `added_tokens.json` and `config.json` for special tokens and flags.
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";

import { ConvertError } from "./errors.js";
import { readJsonObject } from "./fileio.js";
import { parseSentencePieceModel, SentencePieceType } from "./sentencepiece.js";

/** A vocabulary ready for GGUF. */
export interface GgufVocab {
  tokens: string[];
  scores: number[];
  /** llama.cpp token types (equal to SentencePiece's piece types). */
  tokenTypes: number[];
  bosId?: number;
  eosId?: number;
  unkId?: number;
  padId?: number;
  addBos: boolean;
  addEos: boolean;
  addSpacePrefix: boolean;
  /** The file the pieces came from. */
  source: string;
  /** Notes about choices made (e.g. a config.json id overridden), for the log. */
  notes: string[];
}

type Json = Record<string, unknown>;

function readJson(path: string): Json | undefined {
  return existsSync(path) ? readJsonObject(path) : undefined;
}

/** A special token's text in tokenizer_config.json: a string or `{ "content": ... }`. */
function tokenText(v: unknown): string | undefined {
  if (typeof v === "string") return v;
  if (v && typeof v === "object" && typeof (v as Json).content === "string") return (v as Json).content as string;
  return undefined;
}

/** llama.cpp's `does_token_look_special`. */
function looksSpecial(t: string): boolean {
  return ["<pad>", "<mask>", "<2mass>", "[@BOS@]"].includes(t) || (t.startsWith("<|") && t.endsWith("|>")) || (t.startsWith("<｜") && t.endsWith("｜>")) || (t.startsWith("<unused") && t.endsWith(">"));
}

interface SpecialDefaults {
  bos?: number;
  eos?: number;
  unk?: number;
  pad?: number;
}

/** Applies tokenizer_config.json / config.json special tokens and flags on top of a vocabulary. */
function finishSpecials(dir: string, v: Omit<GgufVocab, "addBos" | "addEos" | "addSpacePrefix">, defaults: SpecialDefaults, addSpacePrefix: boolean): GgufVocab {
  const tc = readJson(join(dir, "tokenizer_config.json")) ?? {};
  const cfg = readJson(join(dir, "config.json")) ?? {};
  const index = new Map<string, number>();
  v.tokens.forEach((t, i) => {
    if (!index.has(t)) index.set(t, i);
  });
  const n = v.tokens.length;
  const pick = (kind: "bos" | "eos" | "unk" | "pad"): number | undefined => {
    const text = tokenText(tc[`${kind}_token`]);
    const fromText = text ? index.get(text) : undefined;
    const fromCfg = cfg[`${kind}_token_id`];
    const cfgId = typeof fromCfg === "number" && Number.isInteger(fromCfg) && fromCfg >= 0 && fromCfg < n ? fromCfg : undefined;
    const chosen = fromText ?? defaults[kind] ?? cfgId;
    if (cfgId !== undefined && chosen !== undefined && cfgId !== chosen) {
      v.notes.push(`config.json ${kind}_token_id ${cfgId} disagrees with the tokenizer's ${kind} token ${chosen} (${JSON.stringify(v.tokens[chosen])}); using ${chosen}`);
    }
    return chosen;
  };
  const flag = (key: string, fallback: boolean): boolean => (typeof tc[key] === "boolean" ? (tc[key] as boolean) : fallback);
  return {
    ...v,
    bosId: pick("bos"),
    eosId: pick("eos"),
    unkId: pick("unk"),
    padId: pick("pad"),
    addBos: flag("add_bos_token", true),
    addEos: flag("add_eos_token", false),
    addSpacePrefix: flag("add_prefix_space", addSpacePrefix),
  };
}

/** The pieces of `tokenizer.model`, padded and amended exactly as llama.cpp's `_create_vocab_sentencepiece`. */
function fromSentencePiece(dir: string, nVocab: number): GgufVocab {
  const path = join(dir, "tokenizer.model");
  const sp = parseSentencePieceModel(new Uint8Array(readFileSync(path)), path);
  if (sp.pieces.length > nVocab) {
    throw new ConvertError(path, `the tokenizer has ${sp.pieces.length} pieces but the model's vocabulary has ${nVocab} rows`);
  }
  const tokens = Array.from({ length: nVocab }, (_, i) => `[PAD${i}]`);
  const scores = new Array<number>(nVocab).fill(-10000);
  const tokenTypes = new Array<number>(nVocab).fill(SentencePieceType.UNUSED);
  sp.pieces.forEach((p, i) => {
    tokens[i] = p.piece;
    scores[i] = p.score;
    tokenTypes[i] = p.type === SentencePieceType.UNKNOWN || p.type === SentencePieceType.CONTROL || p.type === SentencePieceType.UNUSED || p.type === SentencePieceType.BYTE ? p.type : SentencePieceType.NORMAL;
  });
  const added = readJson(join(dir, "added_tokens.json"));
  for (const [text, id] of Object.entries(added ?? {})) {
    if (typeof id !== "number" || !Number.isInteger(id) || id < 0 || id >= nVocab) continue;
    tokens[id] = text;
    scores[id] = -1000;
    tokenTypes[id] = SentencePieceType.USER_DEFINED;
  }
  const tc = readJson(join(dir, "tokenizer_config.json"));
  const decoder = tc?.added_tokens_decoder;
  if (decoder && typeof decoder === "object") {
    for (const [idText, data] of Object.entries(decoder as Json)) {
      const id = Number(idText);
      const content = tokenText(data);
      if (!Number.isInteger(id) || id < 0 || id >= nVocab || content === undefined) continue;
      const special = (data as Json).special === true || looksSpecial(content);
      tokens[id] = special ? content : content.replaceAll("\u2581", " ");
      tokenTypes[id] = special ? SentencePieceType.CONTROL : SentencePieceType.USER_DEFINED;
      scores[id] = -1000;
    }
  }
  const ids = (x: number) => (x >= 0 && x < nVocab ? x : undefined);
  return finishSpecials(dir, { tokens, scores, tokenTypes, source: path, notes: [] }, { bos: ids(sp.bosId), eos: ids(sp.eosId), unk: ids(sp.unkId), pad: ids(sp.padId) }, sp.addDummyPrefix);
}

/**
 * The vocabulary of a `tokenizer.json` with a SentencePiece-style BPE model (LLaMA 1/2). Scores
 * are derived from the merge list so that llama.cpp's SPM tokenizer reproduces the BPE: a token's
 * score is minus the rank of the first merge producing it, and tokens no merge produces score
 * `-(merges + id)`. (llama.cpp's own converter gives every token -1000 here, which does not
 * tokenize like LLaMA.)
 */
function fromTokenizerJson(dir: string, nVocab: number): GgufVocab {
  const path = join(dir, "tokenizer.json");
  const tj = readJson(path)!;
  const model = tj.model as Json | undefined;
  if (!model || model.type !== "BPE" || model.byte_fallback !== true) {
    throw new ConvertError(path, "only LLaMA-1/2 style tokenizers (BPE with byte_fallback) are supported; Llama 3 and other tokenizers are not", "unsupported");
  }
  const vocab = model.vocab as Record<string, number> | undefined;
  if (!vocab || typeof vocab !== "object") throw new ConvertError(path, "model.vocab is missing");
  const tokens: string[] = [];
  for (const [text, id] of Object.entries(vocab)) {
    if (!Number.isInteger(id) || id < 0) throw new ConvertError(path, `token ${JSON.stringify(text)} has invalid id ${id}`);
    tokens[id] = text;
  }
  const specials = new Set<number>();
  for (const a of (tj.added_tokens as Json[] | undefined) ?? []) {
    if (typeof a.id !== "number" || typeof a.content !== "string") continue;
    tokens[a.id] = a.content;
    if (a.special === true) specials.add(a.id);
  }
  if (tokens.length > nVocab) throw new ConvertError(path, `the tokenizer has ${tokens.length} tokens but the model's vocabulary has ${nVocab} rows`);
  for (let i = 0; i < tokens.length; i++) if (tokens[i] === undefined) throw new ConvertError(path, `no token has id ${i}`);
  const byText = new Map<string, number>();
  tokens.forEach((t, i) => byText.set(t, i));
  const firstRank = new Map<number, number>();
  const merges = (model.merges as unknown[] | undefined) ?? [];
  merges.forEach((m, rank) => {
    let joined: string;
    if (typeof m === "string") {
      const sp = m.indexOf(" ");
      if (sp < 0) throw new ConvertError(path, `merge #${rank} ${JSON.stringify(m)} is not "left right"`);
      joined = m.slice(0, sp) + m.slice(sp + 1);
    } else if (Array.isArray(m) && m.length === 2 && typeof m[0] === "string" && typeof m[1] === "string") joined = m[0] + m[1];
    else throw new ConvertError(path, `merge #${rank} is neither "left right" nor [left, right]`);
    const id = byText.get(joined);
    if (id !== undefined && !firstRank.has(id)) firstRank.set(id, rank);
  });
  const nMerges = merges.length;
  const unkText = typeof model.unk_token === "string" ? model.unk_token : undefined;
  const unk = unkText !== undefined ? byText.get(unkText) : undefined;
  const out: Omit<GgufVocab, "addBos" | "addEos" | "addSpacePrefix"> = { tokens: [], scores: [], tokenTypes: [], source: path, notes: [] };
  for (let id = 0; id < nVocab; id++) {
    if (id >= tokens.length) {
      out.tokens.push(`[PAD${id}]`);
      out.scores.push(-10000);
      out.tokenTypes.push(SentencePieceType.UNUSED);
      continue;
    }
    const t = tokens[id];
    out.tokens.push(t);
    out.scores.push(-(firstRank.get(id) ?? nMerges + id));
    out.tokenTypes.push(id === unk ? SentencePieceType.UNKNOWN : specials.has(id) ? SentencePieceType.CONTROL : /^<0x[0-9A-Fa-f]{2}>$/.test(t) ? SentencePieceType.BYTE : SentencePieceType.NORMAL);
  }
  const normalizer = JSON.stringify(tj.normalizer ?? null);
  const pre = JSON.stringify(tj.pre_tokenizer ?? null);
  const addSpacePrefix = normalizer.includes('"Prepend"') || /"add_prefix_space":true|"prepend_scheme":"(first|always)"/.test(pre) || (tj.normalizer == null && tj.pre_tokenizer == null);
  return finishSpecials(dir, out, { unk }, addSpacePrefix);
}

/**
 * Loads the tokenizer of a Hugging Face LLaMA checkpoint for a model with `nVocab` embedding rows.
 *
 * @throws {ConvertError} when there is neither `tokenizer.model` nor `tokenizer.json`, or the
 *   tokenizer is not a LLaMA-1/2 SentencePiece one, or it has more tokens than the model.
 */
export function loadHfTokenizer(dir: string, nVocab: number): GgufVocab {
  if (existsSync(join(dir, "tokenizer.model"))) return fromSentencePiece(dir, nVocab);
  if (existsSync(join(dir, "tokenizer.json"))) return fromTokenizerJson(dir, nVocab);
  throw new ConvertError(dir, "no tokenizer: expected tokenizer.model (SentencePiece) or tokenizer.json");
}
