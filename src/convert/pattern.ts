/**
 * PEFT's rank_pattern / alpha_pattern keys, matched in linear time.
 *
 * PEFT documents the keys as "layer names or regexp expression" and looks a module up with
 * `re.match(rf"(.*\.)?({key})$", module_name)`: a key matches a module whose full name is the key,
 * or ends with "." followed by the key, the key read as a Python regular expression. A backtracking
 * engine (JavaScript's RegExp, Python's re) takes exponential time on keys such as "(.*.*)*X", so a
 * checkpoint's config could stall the converter; here the key is compiled to a Thompson NFA and
 * simulated over the name, which takes time proportional to the key's size times the name's
 * length whatever the key. Supported: literals, ".", escapes (\d \w \s \D \W \S and escaped
 * punctuation), classes [...] with ranges and negation, groups (...) and (?:...), alternation,
 * the quantifiers * + ? {n} {n,} {n,m} (lazy forms too; a whole-name match does not care), and
 * ^ at the start. Anything else (backreferences, lookaround) is refused rather than guessed.
 */

/** Longest key accepted, in characters. */
export const MAX_PATTERN_KEY = 1000;
/** Largest count in a {n,m} repetition. */
const MAX_REPEAT = 100;
/** Most NFA states one key may compile to. */
const MAX_STATES = 50_000;

export class PatternError extends Error {}

type Test = (c: string) => boolean;
type Node = { k: "set"; test: Test } | { k: "cat"; xs: Node[] } | { k: "alt"; xs: Node[] } | { k: "rep"; x: Node; min: number; max: number };

const ANY: Test = (c) => c !== "\n";
const DIGIT: Test = (c) => c >= "0" && c <= "9";
const WORD: Test = (c) => /[A-Za-z0-9_]/.test(c);
const SPACE: Test = (c) => /\s/.test(c);
const not =
  (t: Test): Test =>
  (c) =>
    !t(c);
const EMPTY: Node = { k: "cat", xs: [] };

class Parser {
  private i = 0;
  constructor(private readonly src: string) {}

  private fail(what: string): never {
    throw new PatternError(`${what} at character ${this.i + 1}`);
  }

  parse(): Node {
    const node = this.alt();
    if (this.i < this.src.length) this.fail("unbalanced ')'");
    return node;
  }

  private peek(): string | undefined {
    return this.src[this.i];
  }

  private alt(): Node {
    const xs = [this.cat()];
    while (this.peek() === "|") {
      this.i++;
      xs.push(this.cat());
    }
    return xs.length === 1 ? xs[0] : { k: "alt", xs };
  }

  private cat(): Node {
    const xs: Node[] = [];
    while (this.i < this.src.length && this.peek() !== "|" && this.peek() !== ")") xs.push(this.repeat());
    return xs.length === 1 ? xs[0] : { k: "cat", xs };
  }

  private repeat(): Node {
    let x = this.atom();
    for (;;) {
      const c = this.peek();
      let min: number;
      let max: number;
      if (c === "*") [min, max] = [0, -1];
      else if (c === "+") [min, max] = [1, -1];
      else if (c === "?") [min, max] = [0, 1];
      else if (c === "{") {
        const m = /^\{(\d{1,4})(,(\d{0,4}))?\}/.exec(this.src.slice(this.i));
        if (!m) break; // a literal "{", as in Python
        min = Number(m[1]);
        max = m[2] === undefined ? min : m[3] === "" ? -1 : Number(m[3]);
        if (min > MAX_REPEAT || max > MAX_REPEAT) this.fail(`a repetition count above ${MAX_REPEAT}`);
        if (max !== -1 && max < min) this.fail("a repetition {n,m} with m < n");
        this.i += m[0].length - 1;
      } else break;
      this.i++;
      if (this.peek() === "?" || this.peek() === "+") this.i++; // lazy or possessive: the same set of whole-name matches
      x = { k: "rep", x, min, max };
    }
    return x;
  }

  private atom(): Node {
    const c = this.src[this.i++];
    switch (c) {
      case "(": {
        if (this.peek() === "?") {
          if (this.src[this.i + 1] !== ":") this.fail("an unsupported group (lookaround, named or flagged)");
          this.i += 2;
        }
        const inner = this.alt();
        if (this.peek() !== ")") this.fail("a missing ')'");
        this.i++;
        return inner;
      }
      case "[":
        return { k: "set", test: this.charClass() };
      case ".":
        return { k: "set", test: ANY };
      case "\\":
        return { k: "set", test: this.escape(false) };
      case "^":
        if (this.i === 1) return EMPTY; // the anchor at the start (handled by the caller)
        return this.fail("'^' that is not at the start");
      case "$":
        if (this.i === this.src.length) return EMPTY;
        return this.fail("'$' that is not at the end");
      case "*":
      case "+":
      case "?":
        return this.fail("nothing to repeat");
      default:
        return { k: "set", test: (x) => x === c };
    }
  }

  private escape(inClass: boolean): Test {
    const c = this.src[this.i++];
    if (c === undefined) this.fail("a trailing backslash");
    switch (c) {
      case "d":
        return DIGIT;
      case "D":
        return not(DIGIT);
      case "w":
        return WORD;
      case "W":
        return not(WORD);
      case "s":
        return SPACE;
      case "S":
        return not(SPACE);
      case "n":
        return (x) => x === "\n";
      case "t":
        return (x) => x === "\t";
      default:
        if (/[A-Za-z0-9]/.test(c)) this.fail(`the unsupported escape \\${c}${inClass ? " in a class" : ""}`);
        return (x) => x === c;
    }
  }

  private charClass(): Test {
    const negate = this.peek() === "^";
    if (negate) this.i++;
    const tests: Test[] = [];
    let first = true;
    for (;;) {
      const c = this.src[this.i];
      if (c === undefined) this.fail("a missing ']'");
      if (c === "]" && !first) {
        this.i++;
        break;
      }
      first = false;
      let lo: string;
      if (c === "\\") {
        this.i++;
        const t = this.escape(true);
        const e = this.src[this.i - 1];
        if ("dDwWsS".includes(e)) {
          tests.push(t);
          continue;
        }
        lo = e === "n" ? "\n" : e === "t" ? "\t" : e;
      } else {
        lo = c;
        this.i++;
      }
      if (this.peek() === "-" && this.src[this.i + 1] !== undefined && this.src[this.i + 1] !== "]") {
        this.i++;
        let hi = this.src[this.i++];
        if (hi === "\\") hi = this.src[this.i++] ?? this.fail("a trailing backslash");
        if (hi < lo) this.fail("a reversed range");
        tests.push((x) => x >= lo && x <= hi);
      } else {
        const only = lo;
        tests.push((x) => x === only);
      }
    }
    const any: Test = (x) => tests.some((t) => t(x));
    return negate ? not(any) : any;
  }
}

/** NFA state: a character test leading to `out`, or an epsilon split to `out` and `out2`, or the match. */
interface State {
  test?: Test;
  out: number;
  out2: number;
}
const MATCH = -1;

class Nfa {
  readonly states: State[] = [];

  private add(s: State): number {
    if (this.states.length >= MAX_STATES) throw new PatternError("the key is too complex");
    this.states.push(s);
    return this.states.length - 1;
  }

  /** Compiles `n` so that a match of it continues at `next`; returns its start state. */
  compile(n: Node, next: number): number {
    switch (n.k) {
      case "set":
        return this.add({ test: n.test, out: next, out2: -2 });
      case "cat": {
        let s = next;
        for (let j = n.xs.length - 1; j >= 0; j--) s = this.compile(n.xs[j], s);
        if (n.xs.length === 0) s = this.add({ out: next, out2: -2 }); // epsilon
        return s;
      }
      case "alt": {
        const starts = n.xs.map((x) => this.compile(x, next));
        let s = starts[starts.length - 1];
        for (let j = starts.length - 2; j >= 0; j--) s = this.add({ out: starts[j], out2: s });
        return s;
      }
      case "rep": {
        let s = next;
        if (n.max === -1) {
          const loop = this.add({ out: -2, out2: next });
          this.states[loop].out = this.compile(n.x, loop);
          s = loop;
        } else {
          // x{0,k} as (x(x(...)?)?)?: each optional copy either matches and goes on, or skips to `next`
          for (let j = 0; j < n.max - n.min; j++) s = this.add({ out: this.compile(n.x, s), out2: next });
        }
        for (let j = 0; j < n.min; j++) s = this.compile(n.x, s);
        return s;
      }
    }
  }

  /** True when the whole of `text` is accepted from `start`. */
  run(start: number, text: string): boolean {
    let current = this.closure([start]);
    for (const ch of text) {
      const moved: number[] = [];
      for (const s of current) {
        if (s === MATCH) continue;
        const st = this.states[s];
        if (st.test && st.test(ch)) moved.push(st.out);
      }
      if (moved.length === 0) return false;
      current = this.closure(moved);
    }
    return current.includes(MATCH);
  }

  private closure(seeds: number[]): number[] {
    const seen = new Set<number>();
    const out: number[] = [];
    const stack = [...seeds];
    while (stack.length > 0) {
      const s = stack.pop()!;
      if (seen.has(s)) continue;
      seen.add(s);
      if (s === MATCH) {
        out.push(s);
        continue;
      }
      const st = this.states[s];
      if (st.test) out.push(s);
      else {
        stack.push(st.out);
        if (st.out2 !== -2) stack.push(st.out2);
      }
    }
    return out;
  }
}

/** A compiled key: `matches(name)` is PEFT's `re.match(rf"(.*\.)?({key})$", name)`. */
export interface PatternKey {
  key: string;
  matches(name: string): boolean;
}

/**
 * Compiles a rank_pattern/alpha_pattern key.
 *
 * @throws {PatternError} for a key that is too long or uses syntax outside the supported subset.
 */
export function compilePatternKey(key: string): PatternKey {
  if (key.length === 0) throw new PatternError("an empty key");
  if (key.length > MAX_PATTERN_KEY) throw new PatternError(`a key of ${key.length} characters (at most ${MAX_PATTERN_KEY})`);
  const body = new Parser(key).parse();
  const anchored = key.startsWith("^");
  // (.*\.)?(key)$ : an optional prefix ending in a dot, unless the key is anchored at the start
  const node: Node = anchored
    ? body
    : {
        k: "cat",
        xs: [
          {
            k: "rep",
            x: {
              k: "cat",
              xs: [
                { k: "rep", x: { k: "set", test: ANY }, min: 0, max: -1 },
                { k: "set", test: (c) => c === "." },
              ],
            },
            min: 0,
            max: 1,
          },
          body,
        ],
      };
  const nfa = new Nfa();
  const start = nfa.compile(node, MATCH);
  return { key, matches: (name) => nfa.run(start, name) };
}
