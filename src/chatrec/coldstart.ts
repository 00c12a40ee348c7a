/**
 * Cold start through item text: an item nobody has rated yet has no collaborative signal, but it
 * has a title, genres, a year and maybe a description. Their text is embedded with the model
 * (`engine.embed`: mean-pooled, L2-normalised hidden states), and a cold item's score for a user
 * is the cosine between its embedding and the mean embedding of the items the user liked. The
 * same embeddings answer "more like X" when X itself has no interactions.
 *
 * Embeddings are cached by item text per engine, so a catalog is embedded once and a new item
 * costs one more embedding.
 *
 * @module
 */
import type { ItemInfo } from "../recsys/items.js";

/** What cold start needs from an engine: `Engine.embed`. */
export interface Embedder {
  embed(texts: readonly string[]): Promise<Float32Array[]>;
}

/** The text embedded for an item: `Title (1995). Genres: A, B. Description`. */
export function itemText(info: ItemInfo, description?: string): string {
  const genres = info.genres.filter((g) => g !== "unknown");
  let text = info.title;
  if (info.year !== undefined && !/\(\d{4}\)\s*$/.test(info.title)) text += ` (${info.year})`;
  text += ".";
  if (genres.length > 0) text += ` Genres: ${genres.join(", ")}.`;
  if (description && description.trim()) text += ` ${description.trim()}`;
  return text;
}

/** Dot product (the cosine of two normalised vectors). */
export function dot(a: Float32Array, b: Float32Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
}

/** The normalised mean of vectors (null for none). */
export function meanDirection(vectors: readonly Float32Array[]): Float32Array | null {
  if (vectors.length === 0) return null;
  const out = new Float32Array(vectors[0].length);
  for (const v of vectors) for (let i = 0; i < out.length; i++) out[i] += v[i];
  let n = 0;
  for (const x of out) n += x * x;
  n = Math.sqrt(n);
  if (n === 0) return null;
  for (let i = 0; i < out.length; i++) out[i] /= n;
  return out;
}

/** Embeddings of texts, computed once per text (in batches) and kept. */
export class TextEmbeddings {
  private readonly cache = new Map<string, Float32Array>();
  private pending: Promise<unknown> = Promise.resolve();
  /** Texts embedded so far (each once). */
  computed = 0;

  constructor(
    private readonly embedder: Embedder,
    private readonly options: { batchSize?: number; maxEntries?: number } = {},
  ) {}

  /** Embeddings of `texts`, in order. */
  async get(texts: readonly string[]): Promise<Float32Array[]> {
    // one computation at a time, so concurrent callers do not embed the same text twice
    const run = this.pending.then(async () => {
      const missing = [...new Set(texts.filter((t) => !this.cache.has(t)))];
      const batch = this.options.batchSize ?? 32;
      for (let i = 0; i < missing.length; i += batch) {
        const part = missing.slice(i, i + batch);
        const vs = await this.embedder.embed(part);
        part.forEach((t, k) => this.cache.set(t, vs[k]));
        this.computed += part.length;
      }
      const max = this.options.maxEntries ?? 200_000;
      while (this.cache.size > max) this.cache.delete(this.cache.keys().next().value as string);
      return texts.map((t) => this.cache.get(t)!);
    });
    this.pending = run.catch(() => undefined);
    return run;
  }
}

const perEmbedder = new WeakMap<Embedder, TextEmbeddings>();

/** The shared embedding cache of an engine. */
export function embeddingsOf(embedder: Embedder): TextEmbeddings {
  let e = perEmbedder.get(embedder);
  if (!e) perEmbedder.set(embedder, (e = new TextEmbeddings(embedder)));
  return e;
}

/** Options of {@link nearestByText}. */
export interface NearestOptions {
  /** Most items returned. */
  k: number;
  /** Descriptions by item id, added to the embedded text. */
  descriptions?: ReadonlyMap<string, string>;
}

/**
 * The `k` items of `pool` whose text embeddings are closest to the mean embedding of `anchors`
 * (cosine, best first; ties: pool order). Empty when there are no anchors.
 */
export async function nearestByText(embeddings: TextEmbeddings, anchors: readonly ItemInfo[], pool: readonly ItemInfo[], options: NearestOptions): Promise<Array<{ item: string; score: number }>> {
  if (anchors.length === 0 || pool.length === 0 || options.k < 1) return [];
  const text = (i: ItemInfo) => itemText(i, options.descriptions?.get(i.id));
  const vs = await embeddings.get([...anchors.map(text), ...pool.map(text)]);
  const centre = meanDirection(vs.slice(0, anchors.length));
  if (!centre) return [];
  const scored = pool.map((info, i) => ({ item: info.id, score: dot(centre, vs[anchors.length + i]), i }));
  scored.sort((a, b) => b.score - a.score || a.i - b.i);
  return scored.slice(0, options.k).map(({ item, score }) => ({ item, score }));
}
