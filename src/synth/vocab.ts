/**
 * The real 32000-token LLaMA-1/2 vocabulary, taken from the `llama-tokenizer-js`
 * package (a devDependency), laid out as llama.cpp's SentencePiece ("llama")
 * tokenizer needs it so that a synthetic model tokenizes exactly like LLaMA.
 */
import { GgufValueType, type GgufMetadataEntry } from "../gguf/types.js";
import { gv, kv } from "../gguf/writer.js";

/** llama.cpp token types (`enum llama_token_type`). */
export const LlamaTokenType = {
  UNDEFINED: 0,
  NORMAL: 1,
  UNKNOWN: 2,
  CONTROL: 3,
  USER_DEFINED: 4,
  UNUSED: 5,
  BYTE: 6,
} as const;

/** A SentencePiece vocabulary ready for GGUF. */
export interface LlamaVocab {
  /** Token texts by id ("▁" marks a space, bytes are "<0xNN>"). */
  tokens: string[];
  /** SentencePiece scores by id (higher merges first). */
  scores: number[];
  /** llama.cpp token types by id. */
  tokenTypes: number[];
  /** Number of BPE merges the scores were derived from. */
  nMerges: number;
  unkId: number;
  bosId: number;
  eosId: number;
  addBos: boolean;
  addEos: boolean;
  addSpacePrefix: boolean;
}

interface LlamaTokenizerLike {
  vocabById: string[];
  vocabByString: Map<string, number>;
  merges: Map<string, number>;
  encode(prompt: string, addBos?: boolean, addPrecedingSpace?: boolean): number[];
}

let tokenizerPromise: Promise<LlamaTokenizerLike> | undefined;

/**
 * The `llama-tokenizer-js` default tokenizer instance, imported on first use.
 *
 * @throws {Error} with install instructions when the package is not installed.
 */
export function loadLlamaTokenizer(): Promise<LlamaTokenizerLike> {
  tokenizerPromise ??= (async () => {
    const name = "llama-tokenizer-js";
    let mod: { default: LlamaTokenizerLike };
    try {
      mod = (await import(name)) as { default: LlamaTokenizerLike };
    } catch (e) {
      throw new Error(`the synthetic test models need the LLaMA vocabulary from the npm package ${name} ` + `(a devDependency): install it with "npm install --save-dev ${name}@1.2.2"`, { cause: e });
    }
    const tok = mod.default;
    if (!tok || !Array.isArray(tok.vocabById) || !(tok.merges instanceof Map)) {
      throw new Error(`${name} does not export the expected tokenizer (vocabById, merges)`);
    }
    return tok;
  })();
  tokenizerPromise.catch(() => {
    tokenizerPromise = undefined;
  });
  return tokenizerPromise;
}

/**
 * Builds the LLaMA vocabulary with scores and types that make llama.cpp's SPM
 * tokenizer reproduce LLaMA's tokenization:
 * - a token's score is minus the rank of the first BPE merge that produces it;
 * - tokens no merge produces (specials, bytes, single characters) score
 *   `-(nMerges + id)`, below every merge;
 * - types: id 0 UNKNOWN, 1 and 2 CONTROL, 3..258 BYTE, the rest NORMAL.
 */
export async function loadLlamaVocab(): Promise<LlamaVocab> {
  const tok = await loadLlamaTokenizer();
  const tokens = tok.vocabById.slice();
  if (tokens.length !== 32000) throw new Error(`expected 32000 LLaMA tokens, got ${tokens.length}`);
  const firstRank = new Map<number, number>();
  let rank = 0;
  // merges is in priority order (insertion order = rank); the key is "left right".
  for (const key of tok.merges.keys()) {
    const sp = key.indexOf(" ");
    const produced = tok.vocabByString.get(key.slice(0, sp) + key.slice(sp + 1));
    if (produced !== undefined && !firstRank.has(produced)) firstRank.set(produced, rank);
    rank++;
  }
  const nMerges = rank;
  const scores = tokens.map((_, id) => -(firstRank.get(id) ?? nMerges + id));
  const tokenTypes = tokens.map((_, id) => (id === 0 ? LlamaTokenType.UNKNOWN : id <= 2 ? LlamaTokenType.CONTROL : id <= 258 ? LlamaTokenType.BYTE : LlamaTokenType.NORMAL));
  return {
    tokens,
    scores,
    tokenTypes,
    nMerges,
    unkId: 0,
    bosId: 1,
    eosId: 2,
    addBos: true,
    addEos: false,
    addSpacePrefix: true,
  };
}

/** The `tokenizer.ggml.*` metadata entries for a vocabulary, as convert_hf_to_gguf.py writes them for LLaMA. */
export function vocabMetadata(v: LlamaVocab): GgufMetadataEntry[] {
  return [
    kv("tokenizer.ggml.model", gv.str("llama")),
    kv("tokenizer.ggml.pre", gv.str("default")),
    kv("tokenizer.ggml.tokens", gv.strArray(v.tokens)),
    kv("tokenizer.ggml.scores", gv.numArray(GgufValueType.FLOAT32, v.scores)),
    kv("tokenizer.ggml.token_type", gv.numArray(GgufValueType.INT32, v.tokenTypes)),
    kv("tokenizer.ggml.bos_token_id", gv.u32(v.bosId)),
    kv("tokenizer.ggml.eos_token_id", gv.u32(v.eosId)),
    kv("tokenizer.ggml.unknown_token_id", gv.u32(v.unkId)),
    kv("tokenizer.ggml.add_bos_token", gv.bool(v.addBos)),
    kv("tokenizer.ggml.add_eos_token", gv.bool(v.addEos)),
    kv("tokenizer.ggml.add_space_prefix", gv.bool(v.addSpacePrefix)),
  ];
}
