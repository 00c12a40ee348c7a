/**
 * A safe reader for Python pickles (protocols 2 to 5) as `torch.save` writes them, and a small
 * builder for test fixtures.
 *
 * Nothing is ever executed: the reader is a stack machine over plain values. A pickle may name a
 * Python global only when the caller allows it, either as a callable (the reader then runs the
 * caller's TypeScript stand-in on REDUCE, e.g. building a tensor view for
 * `torch._utils._rebuild_tensor_v2`) or as a tag (a value that may be passed around but never
 * called, e.g. `torch.FloatStorage` inside a persistent id). Any other global, object
 * construction opcode (NEWOBJ, INST, OBJ, extension registry) or protocol-0 text opcode is an
 * error that names it. Every length is checked against the remaining bytes.
 */

/** A malformed pickle or one that does something not allowed. */
export class PickleError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "PickleError";
  }
}

/** A Python tuple. */
export class PyTuple {
  constructor(readonly items: unknown[]) {}
}

/** A Python dict or OrderedDict (keys: str, int, bool, None). */
export class PyDict {
  readonly entries = new Map<PyKey, unknown>();
  /** State set by BUILD (e.g. the `_metadata` attribute of a state dict), ignored by converters. */
  state: unknown = undefined;
}

/** A Python global (`module.name`) the caller allowed. */
export class PyGlobal {
  constructor(
    readonly module: string,
    readonly name: string,
  ) {}
  /** "module.name". */
  get qualified(): string {
    return `${this.module}.${this.name}`;
  }
}

/** Hashable values usable as dict keys. */
export type PyKey = string | number | bigint | boolean | null;

/** What the reader may touch. */
export interface UnpickleOptions {
  /** Globals that may be called on REDUCE, by "module.name", with their TypeScript stand-ins. */
  callables?: Readonly<Record<string, (args: readonly unknown[]) => unknown>>;
  /** Globals that may appear as values but are never called. */
  tags?: ReadonlySet<string>;
  /** Resolves a persistent id (BINPERSID); without it persistent ids are errors. */
  persistentLoad?: (pid: unknown) => unknown;
}

const latin1 = new TextDecoder("latin1");
const utf8 = new TextDecoder("utf-8", { fatal: true });

const REFUSED: Readonly<Record<number, string>> = {
  0x81: "NEWOBJ (object construction)",
  0x92: "NEWOBJ_EX (object construction)",
  0x69: "INST (object construction)",
  0x6f: "OBJ (object construction)",
  0x82: "EXT1 (extension registry)",
  0x83: "EXT2 (extension registry)",
  0x84: "EXT4 (extension registry)",
  0x50: "PERSID (text persistent id)",
  0x97: "NEXT_BUFFER (out-of-band buffer)",
  0x98: "READONLY_BUFFER (out-of-band buffer)",
  0x49: "INT (protocol 0 text)",
  0x4c: "LONG (protocol 0 text)",
  0x46: "FLOAT (protocol 0 text)",
  0x53: "STRING (protocol 0 text)",
  0x56: "UNICODE (protocol 0 text)",
};

function isKey(v: unknown): v is PyKey {
  return v === null || typeof v === "string" || typeof v === "number" || typeof v === "bigint" || typeof v === "boolean";
}

function describe(v: unknown): string {
  if (v === null) return "None";
  if (v instanceof PyGlobal) return v.qualified;
  if (v instanceof PyTuple) return "tuple";
  if (v instanceof PyDict) return "dict";
  if (Array.isArray(v)) return "list";
  if (v instanceof Uint8Array) return "bytes";
  return typeof v;
}

/** Decodes a little-endian two's complement integer (LONG1/LONG4). */
function decodeLong(b: Uint8Array): number | bigint {
  if (b.length === 0) return 0;
  let v = 0n;
  for (let i = b.length - 1; i >= 0; i--) v = (v << 8n) | BigInt(b[i]);
  if (b[b.length - 1] & 0x80) v -= 1n << BigInt(8 * b.length);
  return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
}

/**
 * Reads a pickle without executing anything (see the module comment for what is allowed).
 *
 * @throws {PickleError} for malformed data, a disallowed global (the message names it), or an
 *   opcode that constructs objects.
 */
export function unpickle(data: Uint8Array, opts: UnpickleOptions = {}): unknown {
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const callables = opts.callables ?? {};
  const tags = opts.tags ?? new Set<string>();
  let pos = 0;
  let stack: unknown[] = [];
  const metastack: unknown[][] = [];
  const memo = new Map<number, unknown>();

  const fail = (msg: string): never => {
    throw new PickleError(`pickle: ${msg} (at byte ${pos})`);
  };
  const need = (n: number): number => {
    if (n < 0 || pos + n > data.length) fail(`truncated: needs ${n} more bytes, ${data.length - pos} left`);
    const at = pos;
    pos += n;
    return at;
  };
  const bytes = (n: number | bigint): Uint8Array => {
    if (typeof n === "bigint") {
      if (n > BigInt(data.length)) fail(`truncated: a length of ${n} bytes`);
      n = Number(n);
    }
    const at = need(n);
    return data.subarray(at, at + n);
  };
  const line = (): string => {
    const end = data.indexOf(0x0a, pos);
    if (end < 0) fail("truncated: unterminated text line");
    const s = latin1.decode(data.subarray(pos, end));
    pos = end + 1;
    return s;
  };
  const pop = (): unknown => {
    if (stack.length === 0) fail("stack underflow");
    return stack.pop();
  };
  const top = (): unknown => {
    if (stack.length === 0) fail("stack underflow");
    return stack[stack.length - 1];
  };
  const popMark = (): unknown[] => {
    const items = stack;
    const prev = metastack.pop();
    if (prev === undefined) fail("no MARK to pop to");
    stack = prev!;
    return items;
  };
  const str = (b: Uint8Array): string => {
    try {
      return utf8.decode(b);
    } catch {
      return fail("invalid UTF-8 in a string");
    }
  };
  const global = (module: string, name: string): PyGlobal => {
    const q = `${module}.${name}`;
    if (!(q in callables) && !tags.has(q)) {
      const allowed = [...Object.keys(callables), ...tags].join(", ");
      fail(`refers to the Python global ${q}, which is not allowed (a checkpoint may only use ${allowed || "no globals"})`);
    }
    return new PyGlobal(module, name);
  };
  const setItems = (d: unknown, kvs: unknown[]): void => {
    if (!(d instanceof PyDict)) fail(`SETITEM(S) on a ${describe(d)}, not a dict`);
    if (kvs.length % 2 !== 0) fail("SETITEMS with an odd number of items");
    for (let i = 0; i < kvs.length; i += 2) {
      const k = kvs[i];
      if (!isKey(k)) fail(`unsupported dict key of type ${describe(k)}`);
      (d as PyDict).entries.set(k as PyKey, kvs[i + 1]);
    }
  };
  const appendItems = (l: unknown, items: unknown[]): void => {
    if (!Array.isArray(l)) fail(`APPEND(S) on a ${describe(l)}, not a list`);
    (l as unknown[]).push(...items);
  };
  const memoGet = (i: number): unknown => {
    if (!memo.has(i)) fail(`memo key ${i} is not defined`);
    return memo.get(i);
  };

  for (;;) {
    const op = data[need(1)];
    switch (op) {
      case 0x80: {
        const proto = data[need(1)];
        if (proto > 5) fail(`unsupported pickle protocol ${proto}`);
        break;
      }
      case 0x95: // FRAME: framing is only a read-ahead hint
        need(8);
        break;
      case 0x2e: // STOP
        if (stack.length !== 1 || metastack.length !== 0) fail(`STOP with ${stack.length} values on the stack`);
        return stack[0];
      case 0x28: // MARK
        metastack.push(stack);
        stack = [];
        break;
      case 0x30: // POP
        if (stack.length === 0) popMark();
        else stack.pop();
        break;
      case 0x31: // POP_MARK
        popMark();
        break;
      case 0x32: // DUP
        stack.push(top());
        break;
      case 0x4e:
        stack.push(null);
        break;
      case 0x88:
        stack.push(true);
        break;
      case 0x89:
        stack.push(false);
        break;
      case 0x4a:
        stack.push(view.getInt32(need(4), true));
        break;
      case 0x4b:
        stack.push(data[need(1)]);
        break;
      case 0x4d:
        stack.push(view.getUint16(need(2), true));
        break;
      case 0x8a:
        stack.push(decodeLong(bytes(data[need(1)])));
        break;
      case 0x8b: {
        const n = view.getInt32(need(4), true);
        if (n < 0) fail("LONG4 with a negative length");
        stack.push(decodeLong(bytes(n)));
        break;
      }
      case 0x47:
        stack.push(view.getFloat64(need(8), false));
        break;
      case 0x58:
        stack.push(str(bytes(view.getUint32(need(4), true))));
        break;
      case 0x8c:
        stack.push(str(bytes(data[need(1)])));
        break;
      case 0x8d:
        stack.push(str(bytes(view.getBigUint64(need(8), true))));
        break;
      case 0x54: {
        const n = view.getInt32(need(4), true);
        if (n < 0) fail("BINSTRING with a negative length");
        stack.push(latin1.decode(bytes(n)));
        break;
      }
      case 0x55:
        stack.push(latin1.decode(bytes(data[need(1)])));
        break;
      case 0x42:
        stack.push(bytes(view.getUint32(need(4), true)).slice());
        break;
      case 0x43:
        stack.push(bytes(data[need(1)]).slice());
        break;
      case 0x8e:
      case 0x96:
        stack.push(bytes(view.getBigUint64(need(8), true)).slice());
        break;
      case 0x29:
        stack.push(new PyTuple([]));
        break;
      case 0x74: {
        const items = popMark(); // before reading `stack`: popMark replaces it
        stack.push(new PyTuple(items));
        break;
      }
      case 0x85:
        stack.push(new PyTuple([pop()]));
        break;
      case 0x86: {
        const b = pop();
        const a = pop();
        stack.push(new PyTuple([a, b]));
        break;
      }
      case 0x87: {
        const c = pop();
        const b = pop();
        const a = pop();
        stack.push(new PyTuple([a, b, c]));
        break;
      }
      case 0x5d:
        stack.push([]);
        break;
      case 0x6c: {
        const items = popMark();
        stack.push(items);
        break;
      }
      case 0x61: {
        const v = pop();
        appendItems(top(), [v]);
        break;
      }
      case 0x65: {
        const items = popMark();
        appendItems(top(), items);
        break;
      }
      case 0x7d:
        stack.push(new PyDict());
        break;
      case 0x64: {
        const items = popMark();
        const d = new PyDict();
        setItems(d, items);
        stack.push(d);
        break;
      }
      case 0x73: {
        const v = pop();
        const k = pop();
        setItems(top(), [k, v]);
        break;
      }
      case 0x75: {
        const items = popMark();
        setItems(top(), items);
        break;
      }
      case 0x8f:
        stack.push([]);
        break;
      case 0x90: {
        const items = popMark();
        appendItems(top(), items);
        break;
      }
      case 0x91: {
        const items = popMark();
        stack.push(items);
        break;
      }
      case 0x63: {
        const module = line();
        const name = line();
        stack.push(global(module, name));
        break;
      }
      case 0x93: {
        const name = pop();
        const module = pop();
        if (typeof module !== "string" || typeof name !== "string") fail("STACK_GLOBAL needs two strings");
        stack.push(global(module as string, name as string));
        break;
      }
      case 0x52: {
        const args = pop();
        const fn = pop();
        if (!(fn instanceof PyGlobal)) fail(`REDUCE calls a ${describe(fn)}, not an allowed global`);
        const g = fn as PyGlobal;
        const impl = callables[g.qualified];
        if (!impl) fail(`calls the Python global ${g.qualified}, which may not be called`);
        if (!(args instanceof PyTuple)) fail(`REDUCE arguments of ${g.qualified} are a ${describe(args)}, not a tuple`);
        stack.push(impl((args as PyTuple).items));
        break;
      }
      case 0x62: {
        const state = pop();
        const obj = top();
        if (!(obj instanceof PyDict)) fail(`BUILD on a ${describe(obj)} (only dicts may carry state)`);
        (obj as PyDict).state = state;
        break;
      }
      case 0x51: {
        const pid = pop();
        if (!opts.persistentLoad) fail("persistent id without a loader");
        stack.push(opts.persistentLoad!(pid));
        break;
      }
      case 0x71:
        memo.set(data[need(1)], top());
        break;
      case 0x72:
        memo.set(view.getUint32(need(4), true), top());
        break;
      case 0x94:
        memo.set(memo.size, top());
        break;
      case 0x70: {
        const i = Number(line());
        if (!Number.isSafeInteger(i)) fail("PUT with a bad index");
        memo.set(i, top());
        break;
      }
      case 0x68:
        stack.push(memoGet(data[need(1)]));
        break;
      case 0x6a:
        stack.push(memoGet(view.getUint32(need(4), true)));
        break;
      case 0x67: {
        const i = Number(line());
        if (!Number.isSafeInteger(i)) fail("GET with a bad index");
        stack.push(memoGet(i));
        break;
      }
      default: {
        pos--;
        const why = REFUSED[op];
        fail(why ? `opcode 0x${op.toString(16)} ${why} is not allowed` : `unknown opcode 0x${op.toString(16)}`);
      }
    }
  }
}

/** Builds protocol-2 pickles opcode by opcode (for test fixtures). */
export class PickleBuilder {
  private readonly parts: number[] = [];
  private readonly enc = new TextEncoder();
  private memoNext = 0;
  private readonly globals = new Map<string, number>();

  private raw(...b: number[]): this {
    for (const x of b) this.parts.push(x);
    return this;
  }
  private u32(n: number): this {
    return this.raw(n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, (n >>> 24) & 0xff);
  }
  /** PROTO n. */
  proto(n = 2): this {
    return this.raw(0x80, n);
  }
  mark(): this {
    return this.raw(0x28);
  }
  stop(): this {
    return this.raw(0x2e);
  }
  none(): this {
    return this.raw(0x4e);
  }
  bool(v: boolean): this {
    return this.raw(v ? 0x88 : 0x89);
  }
  /** The smallest integer opcode for n (BININT1, BININT2, BININT or LONG1). */
  int(n: number): this {
    if (Number.isInteger(n) && n >= 0 && n < 256) return this.raw(0x4b, n);
    if (Number.isInteger(n) && n >= 0 && n < 65536) return this.raw(0x4d, n & 0xff, n >>> 8);
    if (Number.isInteger(n) && n >= -0x80000000 && n <= 0x7fffffff) return this.raw(0x4a).u32(n >>> 0);
    let v = BigInt(n);
    const out: number[] = [];
    while (v !== 0n && v !== -1n) {
      out.push(Number(v & 0xffn));
      v >>= 8n;
    }
    if (out.length === 0 || ((out[out.length - 1] & 0x80) !== 0) !== n < 0) out.push(n < 0 ? 0xff : 0);
    return this.raw(0x8a, out.length, ...out);
  }
  /** BINUNICODE. */
  str(s: string): this {
    const b = this.enc.encode(s);
    return this.raw(0x58)
      .u32(b.length)
      .raw(...b);
  }
  emptyTuple(): this {
    return this.raw(0x29);
  }
  /** TUPLE (from the last MARK). */
  tuple(): this {
    return this.raw(0x74);
  }
  tuple1(): this {
    return this.raw(0x85);
  }
  tuple2(): this {
    return this.raw(0x86);
  }
  tuple3(): this {
    return this.raw(0x87);
  }
  emptyDict(): this {
    return this.raw(0x7d);
  }
  emptyList(): this {
    return this.raw(0x5d);
  }
  appends(): this {
    return this.raw(0x65);
  }
  setitem(): this {
    return this.raw(0x73);
  }
  setitems(): this {
    return this.raw(0x75);
  }
  /** GLOBAL "module\nname\n", memoized: a repeated global becomes BINGET, as Python's pickler does. */
  global(module: string, name: string): this {
    const key = `${module}.${name}`;
    const m = this.globals.get(key);
    if (m !== undefined) return this.raw(0x68, m);
    this.raw(0x63, ...this.enc.encode(`${module}\n${name}\n`));
    return this.put(key);
  }
  /** BINPUT of the top of the stack (remembered under `key` for globals). */
  put(key?: string): this {
    const i = this.memoNext++;
    if (i > 255) return this;
    if (key) this.globals.set(key, i);
    return this.raw(0x71, i);
  }
  reduce(): this {
    return this.raw(0x52);
  }
  build(): this {
    return this.raw(0x62);
  }
  binpersid(): this {
    return this.raw(0x51);
  }
  /** Any opcode bytes (to build hostile pickles in tests). */
  bytes(...b: number[]): this {
    return this.raw(...b);
  }
  /** The pickle so far. */
  finish(): Uint8Array {
    return Uint8Array.from(this.parts);
  }
}
