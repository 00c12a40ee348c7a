/**
 * Reading a chat message into filters, references and hints.
 *
 * The base is a deterministic parser: genre words and synonyms over MovieLens-100K's genres
 * ("scary" → Horror, "funny" → Comedy, "no horror" → exclude Horror), eras ("90s", "before 1980",
 * "older"), moods ("something lighter", "darker"), and follow-ups that refer to the previous
 * answer ("not that one", "not the second", "not Heat", "more like the second", "more like
 * Fargo", "I loved Heat", "something else", "start over", "top 3"). Titles are looked up in the
 * item catalog. It gives the same answer for the same message, whatever the model.
 *
 * {@link readIntentWithModel} optionally asks the LLM to fill a small JSON template; its answer
 * is validated field by field and merged into the parser's ({@link mergeModelIntent}), and
 * ignored when it is not valid JSON of that shape.
 *
 * @module
 */
import type { ChatMessage, GenerateOptions, GenerateResult } from "../engine/generation.js";
import type { AdapterSelection } from "../engine/engine.js";
import { MOVIELENS_100K_GENRES } from "../recsys/dataset-files.js";
import { foldTitle, type ItemCatalog } from "../recsys/items.js";

/** A reference to an item in a message. */
export type ItemRef =
  /** "the second", "#2", "number 2": 0-based position in the last recommendations. */
  | { kind: "ordinal"; index: number; text: string }
  /** "the last one". */
  | { kind: "last"; text: string }
  /** "that one", "it": the item in focus (the one last referred to, else the top recommendation). */
  | { kind: "that"; text: string }
  /** A title found in the catalog. */
  | { kind: "item"; item: string; text: string };

/** Moods shift genres: "lighter" leaves dark genres out and favours light ones; "darker" the reverse. */
export type Mood = "lighter" | "darker";

/** What a message asks for. Empty fields mean "not mentioned". */
export interface Intent {
  /** Wanted genres (any of them). */
  genres: string[];
  /** Genres to leave out. */
  excludeGenres: string[];
  /** Release year range (inclusive). */
  yearMin?: number;
  yearMax?: number;
  /** "newer" / "older": relative to the last recommendations. */
  era?: "newer" | "older";
  mood?: Mood;
  /** Items to leave out ("not that one", "not Heat"). */
  exclude: ItemRef[];
  /** Items the user wants more of ("more like the second"). */
  similarTo: ItemRef[];
  /** Items the user says they liked / disliked ("I loved Heat"). */
  liked: ItemRef[];
  disliked: ItemRef[];
  /** Items asked about without an action ("why the second?", "what about Fargo"). */
  mentioned: ItemRef[];
  /** "something else": leave out everything shown so far. */
  more: boolean;
  /** "start over": forget the conversation's filters. */
  reset: boolean;
  /** How many recommendations ("top 3"). */
  count?: number;
  /** Phrases that looked like titles but matched nothing in the catalog. */
  unresolved: string[];
}

/** Light and dark genres (MovieLens-100K names) used by moods. */
export const LIGHT_GENRES: readonly string[] = ["Comedy", "Children's", "Animation", "Musical", "Romance"];
export const DARK_GENRES: readonly string[] = ["Horror", "Thriller", "Crime", "Film-Noir", "War"];

/** Genre synonyms: a pattern over folded text and the MovieLens-100K genres it stands for. */
const GENRE_WORDS: ReadonlyArray<[RegExp, readonly string[]]> = [
  [/\baction(?:[- ]packed)?\b/g, ["Action"]],
  [/\badventures?\b/g, ["Adventure"]],
  [/\b(?:animation|animated|cartoons?|anime)\b/g, ["Animation"]],
  [/\b(?:children'?s?|kids?|kid[- ]friendly|family(?:[- ]friendly)?)\b/g, ["Children's"]],
  [/\b(?:rom[- ]?coms?)\b/g, ["Romance", "Comedy"]],
  [/\b(?:comedy|comedies|comic|funny|funnier|humou?rous|hilarious|laughs?)\b/g, ["Comedy"]],
  [/\b(?:crime|gangsters?|heists?|mafia|mob)\b/g, ["Crime"]],
  [/\b(?:documentary|documentaries|docs?)\b/g, ["Documentary"]],
  [/\b(?:dramas?|dramatic)\b/g, ["Drama"]],
  [/\b(?:fantasy|fantasies|magical|fairy[- ]tales?)\b/g, ["Fantasy"]],
  [/\b(?:film[- ]noir|noir)\b/g, ["Film-Noir"]],
  [/\b(?:horror|horrors|scary|scarier|frightening|slashers?|spooky)\b/g, ["Horror"]],
  [/\bmusicals?\b/g, ["Musical"]],
  [/\b(?:mystery|mysteries|whodunn?its?|detectives?)\b/g, ["Mystery"]],
  [/\b(?:romance|romances|romantic|love stor(?:y|ies))\b/g, ["Romance"]],
  [/\b(?:sci[- ]?fi|science[- ]fiction|space|futuristic)\b/g, ["Sci-Fi"]],
  [/\b(?:thrillers?|thrilling|suspense(?:ful)?)\b/g, ["Thriller"]],
  [/\b(?:war|wartime|military)\b/g, ["War"]],
  [/\b(?:westerns?|cowboys?)\b/g, ["Western"]],
];

const NEGATION = /\b(?:no|not|without|nothing|avoid|except|hate|dont|don't|never|less|skip|but)\s+(?:\w+\s+){0,2}$/;

const ORDINALS: Record<string, number> = {
  first: 0,
  second: 1,
  third: 2,
  fourth: 3,
  fifth: 4,
  sixth: 5,
  seventh: 6,
  eighth: 7,
  ninth: 8,
  tenth: 9,
  "1st": 0,
  "2nd": 1,
  "3rd": 2,
  "4th": 3,
  "5th": 4,
  "6th": 5,
  "7th": 6,
  "8th": 7,
  "9th": 8,
  "10th": 9,
};
const NUMBER_WORDS: Record<string, number> = { one: 1, two: 2, three: 3, four: 4, five: 5, six: 6, seven: 7, eight: 8, nine: 9, ten: 10, twelve: 12, fifteen: 15, twenty: 20 };
const DECADE_WORDS: Record<string, number> = { twenties: 1920, thirties: 1930, forties: 1940, fifties: 1950, sixties: 1960, seventies: 1970, eighties: 1980, nineties: 1990 };

/** Words that never make a title on their own ("not something lighter" names no movie). */
const FILLER = new Set(
  "a an the one ones that this it those these them some something anything any movie movies film films stuff more less so too very please really just again instead anymore else other others thing things kind sort of one's lighter darker light dark newer older new old recent classic funny scary".split(
    " ",
  ),
);

/** Lower-cases, strips accents, straightens quotes. Positions are preserved one-to-one where possible. */
function fold(s: string): string {
  return s
    .normalize("NFD")
    .replace(/[\u0300-\u036f]/g, "")
    .replace(/[\u2018\u2019\u02bc]/g, "'")
    .replace(/[\u201c\u201d]/g, '"')
    .toLowerCase();
}

/** Maps canonical genre names to the catalog's own spelling (e.g. "Children's" ↔ "Children"). */
function genreMapper(known: readonly string[]): (g: string) => string | undefined {
  const key = (s: string) =>
    s
      .toLowerCase()
      .replace(/[^a-z]/g, "")
      .replace(/s$/, "");
  const byKey = new Map(known.map((g) => [key(g), g]));
  return (g) => byKey.get(key(g));
}

/** Context for {@link parseIntent}. */
export interface ParseContext {
  /** Catalog to resolve titles against (optional: without it no titles are found). */
  catalog?: ItemCatalog;
  /** Genre names of the catalog (default: MovieLens-100K's). */
  genres?: readonly string[];
}

/** A blank intent. */
export function emptyIntent(): Intent {
  return { genres: [], excludeGenres: [], exclude: [], similarTo: [], liked: [], disliked: [], mentioned: [], more: false, reset: false, unresolved: [] };
}

/** Replaces a matched span by spaces, so later passes do not read it again. */
function blank(text: string, start: number, end: number): string {
  return text.slice(0, start) + " ".repeat(end - start) + text.slice(end);
}

const CLAUSE_END = /[.,;!?]|\b(?:and|but|or|please|instead|anymore|any more|because|since|so that)\b/;

/** The phrase after a keyword: up to the end of its clause (at most 8 words). */
function phraseAt(text: string, start: number): { phrase: string; end: number } {
  const rest = text.slice(start);
  const m = CLAUSE_END.exec(rest);
  let phrase = m ? rest.slice(0, m.index) : rest;
  const words = phrase.trim().split(/\s+/).slice(0, 8);
  phrase = words.join(" ");
  const end = start + (m ? m.index : rest.length);
  return { phrase: phrase.trim(), end };
}

function refOf(phrase: string): ItemRef | null {
  const p = phrase
    .replace(/^(?:the|your)\s+/, "")
    .replace(/\s+(?:one|ones|movie|film|pick|recommendation|suggestion)$/, "")
    .trim();
  if (/^(?:that|this|it|that one|this one)$/.test(phrase.trim()) || /^(?:that|this)$/.test(p)) return { kind: "that", text: phrase };
  if (p === "last" || p === "final" || p === "bottom") return { kind: "last", text: phrase };
  if (p in ORDINALS) return { kind: "ordinal", index: ORDINALS[p], text: phrase };
  const num = /^(?:#|no\.?\s*|number\s+)?(\d{1,2})$/.exec(p);
  if (num && Number(num[1]) >= 1) return { kind: "ordinal", index: Number(num[1]) - 1, text: phrase };
  return null;
}

function genresIn(phrase: string, map: (g: string) => string | undefined): string[] | null {
  let rest = ` ${phrase} `;
  const found: string[] = [];
  for (const [re, gs] of GENRE_WORDS) {
    re.lastIndex = 0;
    if (re.test(rest)) {
      for (const g of gs) {
        const m = map(g);
        if (m && !found.includes(m)) found.push(m);
      }
      re.lastIndex = 0;
      rest = rest.replace(re, " ");
    }
  }
  if (found.length === 0) return null;
  // a genre phrase is made of genre words and fillers only ("horror movies", "comedies or dramas")
  const left = rest.split(/\s+/).filter((w) => w && !FILLER.has(w) && !["or", "and", "genre", "genres", "flicks", "shows", "nor"].includes(w));
  return left.length === 0 ? found : null;
}

/** Folded title variants: as written, and with a trailing article moved to the front ("godfather the" → "the godfather"). */
function titleVariants(title: string): string[] {
  const f = foldTitle(title);
  const words = f.split(" ");
  const out = [f];
  for (let i = 1; i < words.length; i++) {
    if (["the", "a", "an", "les", "la", "le", "il", "el"].includes(words[i])) {
      out.push([words[i], ...words.slice(0, i), ...words.slice(i + 1)].join(" "));
      out.push([...words.slice(0, i), ...words.slice(i + 1)].join(" "));
      break;
    }
  }
  return out;
}

/**
 * Resolves a title phrase against the catalog: an exact title (ignoring case, punctuation, the
 * year and a moved article), or the start of a title covering most of it; trailing words of the
 * phrase are dropped until something matches. Loose matches ("in the" → "In the Line of Fire")
 * are not accepted.
 */
export function findTitle(phrase: string, catalog: ItemCatalog | undefined, options: { truncate?: boolean } = {}): string | null {
  if (!catalog) return null;
  const words = phrase
    .replace(/^["']|["']$/g, "")
    .split(/\s+/)
    .filter(Boolean);
  const shortest = options.truncate === false ? words.length : 1;
  for (let n = words.length; n >= shortest; n--) {
    const q = words.slice(0, n).join(" ");
    const qf = foldTitle(q);
    if (words.slice(0, n).every((w) => FILLER.has(w)) || qf.replace(/ /g, "").length < (n < words.length ? 4 : 2)) continue;
    let partial: string | null = null;
    for (const hit of catalog.findByTitle(q, 20)) {
      const variants = titleVariants(hit.title);
      if (variants.includes(qf)) return hit.id;
      if (partial === null && variants.some((v) => v.startsWith(qf) && qf.length >= 0.6 * v.length)) partial = hit.id;
    }
    if (partial !== null) return partial;
  }
  return null;
}

/** Genre words anywhere in a phrase ("in the mood for horror" → Horror). */
function looseGenres(phrase: string, map: (g: string) => string | undefined): string[] {
  const found: string[] = [];
  for (const [re, gs] of GENRE_WORDS) {
    re.lastIndex = 0;
    if (re.test(` ${phrase} `))
      for (const g of gs) {
        const m = map(g);
        if (m && !found.includes(m)) found.push(m);
      }
    re.lastIndex = 0;
  }
  return found;
}

type Role = "exclude" | "similarTo" | "liked" | "disliked" | "mentioned";

const ROLE_PATTERNS: ReadonlyArray<[RegExp, Role]> = [
  [/\b(?:i\s+(?:really\s+)?(?:hated|disliked|didn't like|didnt like|did not like|don't like|dont like|do not like|hate|dislike|can't stand))\s+/g, "disliked"],
  [/\b(?:i\s+(?:really\s+)?(?:loved|liked|enjoyed|adored|love|like|enjoy|adore))\s+/g, "liked"],
  [/\b(?:(?:more|something|anything|movies?|films?|stuff|ones?|others?)\s+like|similar\s+to|in the (?:style|vein) of)\s+/g, "similarTo"],
  [/\b(?:i(?:'ve| have)? (?:already )?seen|not|no|except|without|skip|drop|remove|exclude|hide|minus|forget|nothing like)\s+/g, "exclude"],
  [/\b(?:what about|how about|tell me (?:more )?about|why|explain|about)\s+/g, "mentioned"],
];

/**
 * Parses a message. Deterministic; never throws on any string.
 */
export function parseIntent(message: string, context: ParseContext = {}): Intent {
  const intent = emptyIntent();
  const map = genreMapper(context.genres ?? context.catalog?.genres() ?? MOVIELENS_100K_GENRES);
  const original = ` ${String(message ?? "")} `;
  let text = ` ${fold(String(message ?? ""))} `;
  // the user's own spelling of a phrase (folding keeps lengths for all but a few characters)
  const asWritten = (phrase: string) => {
    const folded = ` ${fold(String(message ?? ""))} `;
    const at = folded.indexOf(phrase);
    return at >= 0 && folded.length === original.length ? original.slice(at, at + phrase.length) : phrase;
  };
  const addGenres = (to: string[], gs: readonly string[]) => {
    for (const g of gs) if (!to.includes(g)) to.push(g);
  };

  // quoted titles: their role comes from the words before the quote
  const quoted: Array<{ start: number; end: number; title: string }> = [];
  for (const m of text.matchAll(/"([^"]{2,})"/g)) quoted.push({ start: m.index!, end: m.index! + m[0].length, title: m[1] });

  // role phrases ("not X", "more like X", "I loved X", "why X")
  for (const [re, role] of ROLE_PATTERNS) {
    re.lastIndex = 0;
    for (let m = re.exec(text); m; m = re.exec(text)) {
      const start = m.index + m[0].length;
      const q = quoted.find((x) => x.start === start);
      const { phrase, end } = q ? { phrase: q.title, end: q.end } : phraseAt(text, start);
      if (!phrase) continue;
      let handled = false;
      const ref = q ? null : refOf(phrase);
      const strict = q || ref ? null : genresIn(phrase, map);
      // a phrase with genre words names a movie only as a whole ("show me horror" is not "Show, The")
      const item = ref || strict ? null : findTitle(phrase, context.catalog, { truncate: q !== undefined || looseGenres(phrase, map).length === 0 });
      const loose = ref || strict || item || q ? [] : looseGenres(phrase, map);
      const genres = strict ?? (loose.length > 0 ? loose : null);
      if (ref) {
        intent[role].push(ref);
        handled = true;
      } else if (item) {
        intent[role].push({ kind: "item", item, text: phrase });
        handled = true;
      } else if (genres) {
        // "what about comedies?" is left to the genre pass below
        if (role === "exclude" || role === "disliked") addGenres(intent.excludeGenres, genres);
        else if (role === "liked" || role === "similarTo") addGenres(intent.genres, genres);
        handled = role !== "mentioned";
      } else if (q || (role !== "mentioned" && role !== "liked" && looksLikeTitle(phrase))) {
        intent.unresolved.push(asWritten(q ? q.title : phrase));
        handled = true;
      }
      if (handled) {
        let stop = end;
        // lists: "I hated Toy Story and Jumanji", "not the first, the third or Heat"
        if (role !== "mentioned" && (ref || item)) {
          for (;;) {
            const sep = /^\s*(?:,\s*(?:and|or|nor)?|and|or|nor)\s+/.exec(text.slice(stop));
            if (!sep) break;
            const next = phraseAt(text, stop + sep[0].length);
            const r2 = refOf(next.phrase);
            const i2 = r2 ? null : findTitle(next.phrase, context.catalog, { truncate: looseGenres(next.phrase, map).length === 0 });
            if (r2) intent[role].push(r2);
            else if (i2) intent[role].push({ kind: "item", item: i2, text: next.phrase });
            else break;
            stop = next.end;
          }
        }
        text = blank(text, m.index, stop);
        re.lastIndex = stop;
      }
    }
  }
  // quoted titles without a role keyword: mentioned
  for (const q of quoted) {
    if (text.slice(q.start, q.end).trim() === "") continue;
    const item = findTitle(q.title, context.catalog);
    if (item) intent.mentioned.push({ kind: "item", item, text: q.title });
    else intent.unresolved.push(asWritten(q.title));
    text = blank(text, q.start, q.end);
  }

  // reset, more, count
  if (/\b(?:start over|start again|reset|from scratch|clear (?:the |all )?filters?|forget (?:it|that|everything|all that))\b/.test(text)) intent.reset = true;
  if (/\b(?:something else|anything else|others|other ones|other movies|other films|different ones?|next ones?|what else|more)\b(?!\s+(?:like|of)\b)/.test(text)) intent.more = true;
  const count =
    /\b(?:top|give me|show me|recommend|suggest|list|just)\s+(\d{1,2}|one|two|three|four|five|six|seven|eight|nine|ten|twelve|fifteen|twenty)\b/.exec(text) ??
    /\b(\d{1,2}|two|three|four|five|six|seven|eight|nine|ten|twelve|fifteen|twenty)\s+(?:more\s+|other\s+|new\s+)?(?:movies|films|picks|recommendations|suggestions|titles|options|ones)\b/.exec(text);
  if (count) {
    const n = /^\d+$/.test(count[1]) ? Number(count[1]) : NUMBER_WORDS[count[1]];
    if (n >= 1 && n <= 50) intent.count = n;
  }

  // moods (before genres, so that "less scary" is a mood, not a genre)
  const lighter =
    /\b(?:light(?:er)?|light[- ]?hearted|feel[- ]good|cheerful|cheery|uplifting|upbeat|happ(?:y|ier)|fun|relaxing|easy[- ]going|less (?:dark|serious|grim|depressing|violent|scary|heavy|intense)|not (?:so|too|as) (?:dark|serious|heavy|grim|scary|violent))\b/g;
  if (lighter.test(text)) {
    intent.mood = "lighter";
    text = text.replace(lighter, " ");
  }
  const darker = /\b(?:dark(?:er)?|serious|grim|gritty|bleak|disturbing|intense|edgy|heav(?:y|ier)|less (?:funny|light|silly))\b/g;
  if (darker.test(text) && intent.mood === undefined) {
    intent.mood = "darker";
    text = text.replace(darker, " ");
  }

  // genres, negated by a nearby "no", "not", "without"...
  for (const [re, gs] of GENRE_WORDS) {
    re.lastIndex = 0;
    for (const m of text.matchAll(re)) {
      const before = text.slice(Math.max(0, m.index! - 30), m.index!);
      const mapped = gs.map(map).filter((g): g is string => g !== undefined);
      addGenres(NEGATION.test(before) ? intent.excludeGenres : intent.genres, mapped);
    }
  }

  // eras
  parseEra(text, intent);

  intent.genres = intent.genres.filter((g) => !intent.excludeGenres.includes(g));
  return intent;
}

function looksLikeTitle(phrase: string): boolean {
  const words = phrase.split(/\s+/).filter((w) => w && !FILLER.has(w));
  if (words.length === 0) return false;
  // genre, mood and era words are not titles
  if (words.every((w) => GENRE_WORDS.some(([re]) => ((re.lastIndex = 0), re.test(w))) || /^\d{2,4}'?s?$/.test(w) || /^(?:violence|gore|sex|swearing|subtitles|kids|old|black|white)$/.test(w))) return false;
  return true;
}

function year(s: string): number | undefined {
  const y = Number(s);
  return y >= 1880 && y <= 2100 ? y : undefined;
}

function parseEra(text: string, intent: Intent): void {
  let m: RegExpExecArray | null;
  if ((m = /\bbetween\s+(\d{4})\s+and\s+(\d{4})\b/.exec(text)) || (m = /\bfrom\s+(\d{4})\s+(?:to|until|till|through)\s+(\d{4})\b/.exec(text)) || (m = /\b(\d{4})\s*(?:-|–|to)\s*(\d{4})\b/.exec(text))) {
    const a = year(m[1]);
    const b = year(m[2]);
    if (a !== undefined && b !== undefined) {
      intent.yearMin = Math.min(a, b);
      intent.yearMax = Math.max(a, b);
      return;
    }
  }
  if ((m = /\b(?:before|pre|prior to|older than|earlier than)\s+(\d{4})\b/.exec(text))) intent.yearMax = (year(m[1]) ?? NaN) - 1;
  else if ((m = /\b(?:until|till|up to|through|no later than)\s+(\d{4})\b/.exec(text))) intent.yearMax = year(m[1]);
  if ((m = /\b(?:after|post|newer than|later than)\s+(\d{4})\b/.exec(text))) intent.yearMin = (year(m[1]) ?? NaN) + 1;
  else if ((m = /\b(?:since|from|starting)\s+(\d{4})\s+(?:on|onwards?|and (?:later|after|newer))\b/.exec(text)) || (m = /\bsince\s+(\d{4})\b/.exec(text))) intent.yearMin = year(m[1]);
  if (intent.yearMin !== undefined && !Number.isFinite(intent.yearMin)) delete intent.yearMin;
  if (intent.yearMax !== undefined && !Number.isFinite(intent.yearMax)) delete intent.yearMax;
  if (intent.yearMin === undefined && intent.yearMax === undefined) {
    const decade = /\b(19|20)?(\d)0'?s\b/.exec(text);
    const word = /\b(twenties|thirties|forties|fifties|sixties|seventies|eighties|nineties)\b/.exec(text);
    if (decade) {
      const century = decade[1] ? Number(decade[1]) * 100 : Number(decade[2]) <= 1 ? 2000 : 1900;
      const start = century + Number(decade[2]) * 10;
      intent.yearMin = start;
      intent.yearMax = start + 9;
    } else if (word) {
      intent.yearMin = DECADE_WORDS[word[1]];
      intent.yearMax = DECADE_WORDS[word[1]] + 9;
    } else if ((m = /\b(?:from|in|of)\s+(\d{4})\b/.exec(text)) && year(m[1]) !== undefined) {
      intent.yearMin = intent.yearMax = year(m[1]);
    }
  }
  if (intent.yearMin === undefined && intent.yearMax === undefined) {
    if (/\b(?:newer|more recent|recent|latest|modern)\b/.test(text)) intent.era = "newer";
    else if (/\b(?:older|old|classics?|vintage|golden age|old[- ]school|oldies)\b/.test(text)) intent.era = "older";
  }
}

/** What {@link readIntentWithModel} needs from an engine: `Engine.generate`. */
export interface Generator {
  generate(prompt: string | readonly ChatMessage[], options?: GenerateOptions & { adapter?: AdapterSelection }): Promise<GenerateResult>;
}

/** The fields the model may fill. */
export interface ModelIntent {
  genres: string[];
  excludeGenres: string[];
  yearMin?: number;
  yearMax?: number;
  mood?: Mood;
}

/** The messages that ask the model to fill the JSON template. */
export function intentMessages(message: string, genres: readonly string[]): ChatMessage[] {
  return [
    { role: "system", content: "You read movie requests and answer with JSON only." },
    {
      role: "user",
      content:
        `Known genres: ${genres.join(", ")}.\n` +
        `Request: ${JSON.stringify(message)}\n` +
        `Fill this JSON template (use null or [] for what the request does not say):\n` +
        `{"genres": [], "exclude_genres": [], "year_min": null, "year_max": null, "mood": null}\n` +
        `"mood" is "lighter", "darker" or null.`,
    },
  ];
}

/**
 * Validates the model's answer: the first `{...}` object in `text`, with exactly the template's
 * fields, genres among `genres` (any case), years in 1880–2100 with min ≤ max, mood "lighter",
 * "darker" or null. Returns null when anything is off.
 */
export function parseModelIntent(text: string, genres: readonly string[]): ModelIntent | null {
  const start = text.indexOf("{");
  if (start < 0) return null;
  let depth = 0;
  let end = -1;
  let inString = false;
  for (let i = start; i < text.length; i++) {
    const c = text[i];
    if (inString) {
      if (c === "\\") i++;
      else if (c === '"') inString = false;
    } else if (c === '"') inString = true;
    else if (c === "{") depth++;
    else if (c === "}" && --depth === 0) {
      end = i;
      break;
    }
  }
  if (end < 0) return null;
  let obj: unknown;
  try {
    obj = JSON.parse(text.slice(start, end + 1));
  } catch {
    return null;
  }
  if (!obj || typeof obj !== "object" || Array.isArray(obj)) return null;
  const o = obj as Record<string, unknown>;
  const allowed = ["genres", "exclude_genres", "year_min", "year_max", "mood"];
  if (Object.keys(o).some((k) => !allowed.includes(k))) return null;
  const map = new Map(genres.map((g) => [g.toLowerCase(), g]));
  const list = (v: unknown): string[] | null => {
    if (v === undefined || v === null) return [];
    if (!Array.isArray(v)) return null;
    const out: string[] = [];
    for (const g of v) {
      if (typeof g !== "string" || !map.has(g.toLowerCase())) return null;
      const name = map.get(g.toLowerCase())!;
      if (!out.includes(name)) out.push(name);
    }
    return out;
  };
  const yr = (v: unknown): number | undefined | null => {
    if (v === undefined || v === null) return undefined;
    return typeof v === "number" && Number.isInteger(v) && v >= 1880 && v <= 2100 ? v : null;
  };
  const g = list(o.genres);
  const x = list(o.exclude_genres);
  const yMin = yr(o.year_min);
  const yMax = yr(o.year_max);
  if (g === null || x === null || yMin === null || yMax === null) return null;
  if (yMin !== undefined && yMax !== undefined && yMin > yMax) return null;
  if (o.mood !== undefined && o.mood !== null && o.mood !== "lighter" && o.mood !== "darker") return null;
  const out: ModelIntent = { genres: g.filter((k) => !x.includes(k)), excludeGenres: x };
  if (yMin !== undefined) out.yearMin = yMin;
  if (yMax !== undefined) out.yearMax = yMax;
  if (o.mood === "lighter" || o.mood === "darker") out.mood = o.mood;
  return out;
}

/** Options of {@link readIntentWithModel}. */
export interface ModelIntentOptions {
  genres?: readonly string[];
  maxTokens?: number;
  seed?: number;
  adapter?: AdapterSelection;
  signal?: AbortSignal;
}

/**
 * Asks the model to fill the intent template (greedy decoding) and validates the answer.
 * Returns null when the answer is not valid (see {@link parseModelIntent}).
 */
export async function readIntentWithModel(gen: Generator, message: string, options: ModelIntentOptions = {}): Promise<ModelIntent | null> {
  const genres = options.genres ?? MOVIELENS_100K_GENRES.filter((g) => g !== "unknown");
  const r = await gen.generate(intentMessages(message, genres), {
    maxTokens: options.maxTokens ?? 96,
    temperature: 0,
    seed: options.seed ?? 0,
    adapter: options.adapter ?? null,
    signal: options.signal,
  });
  return parseModelIntent(r.text, genres);
}

/**
 * Merges the model's reading into the parser's: genres and exclusions are united (an exclusion
 * wins), years and mood are taken from the model only where the parser found none.
 */
export function mergeModelIntent(parsed: Intent, model: ModelIntent | null): Intent {
  if (!model) return parsed;
  const out: Intent = { ...parsed, genres: [...parsed.genres], excludeGenres: [...parsed.excludeGenres] };
  for (const g of model.excludeGenres) if (!out.excludeGenres.includes(g)) out.excludeGenres.push(g);
  for (const g of model.genres) if (!out.genres.includes(g)) out.genres.push(g);
  out.genres = out.genres.filter((g) => !out.excludeGenres.includes(g));
  if (out.yearMin === undefined && out.yearMax === undefined && out.era === undefined) {
    if (model.yearMin !== undefined) out.yearMin = model.yearMin;
    if (model.yearMax !== undefined) out.yearMax = model.yearMax;
  }
  if (out.mood === undefined && model.mood !== undefined) out.mood = model.mood;
  return out;
}
