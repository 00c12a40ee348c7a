/**
 * SentencePiece model files (`tokenizer.model`): a protobuf `ModelProto` with
 * `repeated SentencePiece pieces = 1` (`piece = 1`, `score = 2`, `type = 3`),
 * `TrainerSpec trainer_spec = 2` (`model_type = 3`, `vocab_size = 4`, `byte_fallback = 35`,
 * `unk_id = 40`, `bos_id = 41`, `eos_id = 42`, `pad_id = 43`) and
 * `NormalizerSpec normalizer_spec = 3` (`name = 1`, `add_dummy_prefix = 3`,
 * `remove_extra_whitespaces = 4`, `escape_whitespaces = 5`). Fields the converter does not need
 * are skipped when reading; the writer emits only these.
 */
import { ConvertError } from "./errors.js";

/** SentencePiece piece types (`ModelProto.SentencePiece.Type`); they equal llama.cpp's token types. */
export const SentencePieceType = { NORMAL: 1, UNKNOWN: 2, CONTROL: 3, USER_DEFINED: 4, UNUSED: 5, BYTE: 6 } as const;

/** A SentencePiece model: pieces with scores and types, and the trainer/normalizer fields tallrec uses. */
export interface SentencePieceModel {
  pieces: Array<{ piece: string; score: number; type: number }>;
  /** 1 unigram, 2 BPE, 3 word, 4 char. */
  modelType: number;
  byteFallback: boolean;
  unkId: number;
  bosId: number;
  eosId: number;
  /** -1 when the model has no padding piece. */
  padId: number;
  addDummyPrefix: boolean;
  removeExtraWhitespaces: boolean;
}

class ProtoReader {
  pos: number;
  constructor(
    private readonly b: Uint8Array,
    private readonly path: string,
    start: number,
    readonly end: number,
  ) {
    this.pos = start;
  }
  fail(msg: string): never {
    throw new ConvertError(this.path, `corrupt SentencePiece model: ${msg} at byte ${this.pos}`);
  }
  varint(): bigint {
    let v = 0n;
    let shift = 0n;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.end) this.fail("truncated varint");
      const c = this.b[this.pos++];
      v |= BigInt(c & 0x7f) << shift;
      if ((c & 0x80) === 0) return v;
      shift += 7n;
    }
    return this.fail("varint longer than 10 bytes");
  }
  int32(): number {
    return Number(BigInt.asIntN(32, this.varint()));
  }
  float(): number {
    if (this.pos + 4 > this.end) this.fail("truncated float");
    const v = new DataView(this.b.buffer, this.b.byteOffset + this.pos, 4).getFloat32(0, true);
    this.pos += 4;
    return v;
  }
  /** A length-delimited field: returns [start, end). */
  bytes(): [number, number] {
    const n = this.varint();
    if (n > BigInt(this.end - this.pos)) this.fail(`a length of ${n} bytes runs past the end`);
    const s = this.pos;
    this.pos += Number(n);
    return [s, this.pos];
  }
  skip(wire: number): void {
    if (wire === 0) this.varint();
    else if (wire === 1) this.advance(8);
    else if (wire === 2) this.bytes();
    else if (wire === 5) this.advance(4);
    else this.fail(`unsupported wire type ${wire}`);
  }
  private advance(n: number): void {
    if (this.pos + n > this.end) this.fail("truncated field");
    this.pos += n;
  }
}

/** Calls `fn(field, value)` for each varint field (read as int32) of the message at [start, end) of `data`; skips the other fields. */
function eachVarintField(data: Uint8Array, path: string, [start, end]: [number, number], fn: (field: number, value: number) => void): void {
  const r = new ProtoReader(data, path, start, end);
  while (r.pos < r.end) {
    const t = Number(r.varint());
    if ((t & 7) !== 0) {
      r.skip(t & 7);
      continue;
    }
    fn(t >>> 3, r.int32());
  }
}

const utf8 = new TextDecoder("utf-8");

/**
 * Parses a SentencePiece `tokenizer.model`.
 *
 * @throws {ConvertError} for truncated or malformed protobuf data, or a model with no pieces.
 */
export function parseSentencePieceModel(data: Uint8Array, path: string): SentencePieceModel {
  const m: SentencePieceModel = {
    pieces: [],
    modelType: 1,
    byteFallback: false,
    unkId: 0,
    bosId: 1,
    eosId: 2,
    padId: -1,
    addDummyPrefix: true,
    removeExtraWhitespaces: true,
  };
  const r = new ProtoReader(data, path, 0, data.length);
  while (r.pos < r.end) {
    const tag = Number(r.varint());
    const field = tag >>> 3;
    const wire = tag & 7;
    if (field === 1 && wire === 2) {
      const [s, e] = r.bytes();
      const pr = new ProtoReader(data, path, s, e);
      const piece = { piece: "", score: 0, type: SentencePieceType.NORMAL as number };
      while (pr.pos < pr.end) {
        const t = Number(pr.varint());
        if (t === (1 << 3) + 2) {
          const [a, b] = pr.bytes();
          piece.piece = utf8.decode(data.subarray(a, b));
        } else if (t === (2 << 3) + 5) piece.score = pr.float();
        else if (t === (3 << 3) + 0) piece.type = pr.int32();
        else pr.skip(t & 7);
      }
      m.pieces.push(piece);
    } else if (field === 2 && wire === 2) {
      eachVarintField(data, path, r.bytes(), (f, v) => {
        if (f === 3) m.modelType = v;
        else if (f === 35) m.byteFallback = v !== 0;
        else if (f === 40) m.unkId = v;
        else if (f === 41) m.bosId = v;
        else if (f === 42) m.eosId = v;
        else if (f === 43) m.padId = v;
      });
    } else if (field === 3 && wire === 2) {
      eachVarintField(data, path, r.bytes(), (f, v) => {
        if (f === 3) m.addDummyPrefix = v !== 0;
        else if (f === 4) m.removeExtraWhitespaces = v !== 0;
      });
    } else {
      r.skip(wire);
    }
  }
  if (m.pieces.length === 0) throw new ConvertError(path, "not a SentencePiece model: no pieces");
  return m;
}

class ProtoWriter {
  private chunks: number[] = [];
  varint(v: number | bigint): this {
    let x = BigInt.asUintN(64, BigInt(v));
    do {
      let c = Number(x & 0x7fn);
      x >>= 7n;
      if (x !== 0n) c |= 0x80;
      this.chunks.push(c);
    } while (x !== 0n);
    return this;
  }
  tag(field: number, wire: number): this {
    return this.varint((field << 3) | wire);
  }
  bytesField(field: number, b: Uint8Array): this {
    this.tag(field, 2).varint(b.length);
    for (const x of b) this.chunks.push(x);
    return this;
  }
  floatField(field: number, v: number): this {
    this.tag(field, 5);
    const b = new Uint8Array(4);
    new DataView(b.buffer).setFloat32(0, v, true);
    for (const x of b) this.chunks.push(x);
    return this;
  }
  intField(field: number, v: number): this {
    return this.tag(field, 0).varint(v);
  }
  finish(): Uint8Array {
    return Uint8Array.from(this.chunks);
  }
}

/** Serializes a SentencePiece model (the fields of {@link SentencePieceModel} only). */
export function encodeSentencePieceModel(m: SentencePieceModel): Uint8Array {
  const enc = new TextEncoder();
  const w = new ProtoWriter();
  for (const p of m.pieces) {
    const pw = new ProtoWriter().bytesField(1, enc.encode(p.piece)).floatField(2, p.score);
    if (p.type !== SentencePieceType.NORMAL) pw.intField(3, p.type);
    w.bytesField(1, pw.finish());
  }
  const tw = new ProtoWriter()
    .intField(3, m.modelType)
    .intField(4, m.pieces.length)
    .intField(35, m.byteFallback ? 1 : 0)
    .intField(40, m.unkId)
    .intField(41, m.bosId)
    .intField(42, m.eosId)
    .intField(43, m.padId);
  w.bytesField(2, tw.finish());
  const nw = new ProtoWriter()
    .bytesField(1, enc.encode("identity"))
    .intField(3, m.addDummyPrefix ? 1 : 0)
    .intField(4, m.removeExtraWhitespaces ? 1 : 0)
    .intField(5, 1);
  w.bytesField(3, nw.finish());
  return w.finish();
}
