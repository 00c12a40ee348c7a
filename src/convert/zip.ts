/**
 * A small zip reader (the container of PyTorch checkpoints: `torch.save` writes a zip of
 * `<archive>/data.pkl`, `<archive>/data/<key>` storages, `<archive>/version`, ...) and a writer
 * for test fixtures. Stored and deflated entries, zip64 sizes and offsets; CRC-32 is checked on
 * every entry read. Encrypted, multi-disk and other compression methods are refused.
 */
import * as zlib from "node:zlib";

import { ConvertError } from "./errors.js";
import { RandomAccessFile } from "./fileio.js";

/** One file in a zip archive. */
export interface ZipEntry {
  name: string;
  /** 0 stored, 8 deflated. */
  method: number;
  compressedSize: number;
  size: number;
  crc: number;
  localHeaderOffset: number;
}

/** An opened zip archive: its central directory. */
export interface ZipArchive {
  path: string;
  fileSize: number;
  entries: Map<string, ZipEntry>;
}

const SIG_EOCD = 0x06054b50;
const SIG_ZIP64_EOCD = 0x06064b50;
const SIG_ZIP64_LOCATOR = 0x07064b50;
const SIG_CENTRAL = 0x02014b50;
const SIG_LOCAL = 0x04034b50;
const U32_MAX = 0xffffffff;
const U16_MAX = 0xffff;

/** True when the first bytes of `head` are a zip local file header ("PK\x03\x04") or an empty archive. */
export function looksLikeZip(head: Uint8Array): boolean {
  return head.length >= 4 && head[0] === 0x50 && head[1] === 0x4b && ((head[2] === 3 && head[3] === 4) || (head[2] === 5 && head[3] === 6));
}

function u64(view: DataView, at: number, path: string, what: string): number {
  const v = view.getBigUint64(at, true);
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new ConvertError(path, `zip: ${what} ${v} is too large`);
  return Number(v);
}

/**
 * Reads the central directory of a zip file.
 *
 * @throws {ConvertError} when the file is not a zip, is truncated, or uses unsupported features.
 */
export function openZip(path: string): ZipArchive {
  const f = new RandomAccessFile(path);
  try {
    const size = f.size;
    if (size < 22) throw new ConvertError(path, `truncated or not a zip archive: ${size} bytes`);
    const tailLen = Math.min(size, 22 + 0xffff);
    const tail = f.read(size - tailLen, tailLen, "end of central directory");
    const tv = new DataView(tail.buffer);
    let eocd = -1;
    for (let i = tailLen - 22; i >= 0; i--) {
      if (tv.getUint32(i, true) === SIG_EOCD && i + 22 + tv.getUint16(i + 20, true) <= tailLen) {
        eocd = i;
        break;
      }
    }
    if (eocd < 0) throw new ConvertError(path, "truncated or not a zip archive: no end-of-central-directory record");
    const eocdAbs = size - tailLen + eocd;
    if (tv.getUint16(eocd + 4, true) !== 0 || tv.getUint16(eocd + 6, true) !== 0) throw new ConvertError(path, "multi-disk zip archives are not supported", "unsupported");
    let count = tv.getUint16(eocd + 10, true);
    let cdSize = tv.getUint32(eocd + 12, true);
    let cdOffset = tv.getUint32(eocd + 16, true);
    if (count === U16_MAX || cdSize === U32_MAX || cdOffset === U32_MAX) {
      // zip64: a locator right before the EOCD points at the zip64 EOCD record.
      if (eocdAbs < 20) throw new ConvertError(path, "zip64: missing end-of-central-directory locator");
      const loc = new DataView(f.read(eocdAbs - 20, 20, "zip64 locator").buffer);
      if (loc.getUint32(0, true) !== SIG_ZIP64_LOCATOR) throw new ConvertError(path, "zip64: missing end-of-central-directory locator");
      const recOff = u64(loc, 8, path, "zip64 record offset");
      const rec = new DataView(f.read(recOff, 56, "zip64 end-of-central-directory record").buffer);
      if (rec.getUint32(0, true) !== SIG_ZIP64_EOCD) throw new ConvertError(path, "zip64: bad end-of-central-directory record");
      count = u64(rec, 32, path, "entry count");
      cdSize = u64(rec, 40, path, "central directory size");
      cdOffset = u64(rec, 48, path, "central directory offset");
    }
    if (cdOffset + cdSize > size) {
      throw new ConvertError(path, `truncated: the central directory ends at byte ${cdOffset + cdSize} but the file has ${size} bytes`);
    }
    if (count > cdSize / 46) throw new ConvertError(path, `corrupt zip: ${count} entries cannot fit in a central directory of ${cdSize} bytes`);
    const cd = f.read(cdOffset, cdSize, "central directory");
    const cv = new DataView(cd.buffer);
    const entries = new Map<string, ZipEntry>();
    const dec = new TextDecoder("utf-8");
    let p = 0;
    for (let i = 0; i < count; i++) {
      if (p + 46 > cdSize || cv.getUint32(p, true) !== SIG_CENTRAL) throw new ConvertError(path, `corrupt zip: bad central directory entry #${i}`);
      const flags = cv.getUint16(p + 8, true);
      const method = cv.getUint16(p + 10, true);
      const crc = cv.getUint32(p + 16, true);
      let compressedSize = cv.getUint32(p + 20, true);
      let usize = cv.getUint32(p + 24, true);
      const nameLen = cv.getUint16(p + 28, true);
      const extraLen = cv.getUint16(p + 30, true);
      const commentLen = cv.getUint16(p + 32, true);
      let localHeaderOffset = cv.getUint32(p + 42, true);
      if (p + 46 + nameLen + extraLen + commentLen > cdSize) throw new ConvertError(path, `corrupt zip: central directory entry #${i} overruns`);
      const name = dec.decode(cd.subarray(p + 46, p + 46 + nameLen));
      // zip64 extended information: only the fields that are 0xFFFFFFFF in the fixed part, in order.
      let e = p + 46 + nameLen;
      const extraEnd = e + extraLen;
      while (e + 4 <= extraEnd) {
        const id = cv.getUint16(e, true);
        const len = cv.getUint16(e + 2, true);
        if (id === 0x0001) {
          let q = e + 4;
          const take = (what: string): number => {
            if (q + 8 > e + 4 + len) throw new ConvertError(path, `corrupt zip: short zip64 field in ${name}`);
            const v = u64(cv, q, path, what);
            q += 8;
            return v;
          };
          if (usize === U32_MAX) usize = take("size");
          if (compressedSize === U32_MAX) compressedSize = take("compressed size");
          if (localHeaderOffset === U32_MAX) localHeaderOffset = take("offset");
        }
        e += 4 + len;
      }
      if (flags & 1) throw new ConvertError(path, `zip entry ${name} is encrypted`);
      if (method !== 0 && method !== 8) throw new ConvertError(path, `zip entry ${name} uses compression method ${method} (only stored and deflated are supported)`, "unsupported");
      if (method === 0 && compressedSize !== usize) throw new ConvertError(path, `corrupt zip: stored entry ${name} has different sizes`);
      if (localHeaderOffset + 30 + compressedSize > size) {
        throw new ConvertError(path, `truncated: zip entry ${name} ends past the end of the file (${size} bytes)`);
      }
      entries.set(name, { name, method, compressedSize, size: usize, crc, localHeaderOffset });
      p += 46 + nameLen + extraLen + commentLen;
    }
    return { path, fileSize: size, entries };
  } finally {
    f.close();
  }
}

/**
 * Reads and decompresses one entry, checking its size and CRC-32.
 *
 * @throws {ConvertError} for truncation, a bad local header, or corrupt data.
 */
export function readZipEntry(zip: ZipArchive, entry: ZipEntry): Uint8Array {
  const f = new RandomAccessFile(zip.path);
  try {
    const lh = new DataView(f.read(entry.localHeaderOffset, 30, `local header of ${entry.name}`).buffer);
    if (lh.getUint32(0, true) !== SIG_LOCAL) throw new ConvertError(zip.path, `corrupt zip: bad local header for ${entry.name}`);
    const start = entry.localHeaderOffset + 30 + lh.getUint16(26, true) + lh.getUint16(28, true);
    const raw = f.read(start, entry.compressedSize, `zip entry ${entry.name}`);
    let data: Uint8Array;
    if (entry.method === 0) data = raw;
    else {
      try {
        // the declared size is enforced while inflating: a small entry that inflates without end
        // (a zip bomb) stops one byte past it instead of filling memory first
        data = new Uint8Array(zlib.inflateRawSync(raw, { maxOutputLength: Math.max(1, entry.size + 1) }));
      } catch (e) {
        if ((e as { code?: string }).code === "ERR_BUFFER_TOO_LARGE") {
          throw new ConvertError(zip.path, `zip entry ${entry.name} inflates to more than the ${entry.size} bytes its header declares (corrupt or hostile file)`, "invalid_file", { cause: e });
        }
        throw new ConvertError(zip.path, `zip entry ${entry.name}: corrupt deflate data (${(e as Error).message})`, "invalid_file", { cause: e });
      }
    }
    if (data.length !== entry.size) throw new ConvertError(zip.path, `zip entry ${entry.name}: ${data.length} bytes, expected ${entry.size}`);
    if (zlib.crc32(data) !== entry.crc) throw new ConvertError(zip.path, `zip entry ${entry.name}: CRC-32 mismatch (corrupt file)`);
    return data;
  } finally {
    f.close();
  }
}

/** What the local and the central header of an entry both say. */
interface EntryFields {
  version: number;
  flags: number;
  method: number;
  crc: number;
  compressedSize: number;
  size: number;
  nameLength: number;
}

/**
 * Writes `f` and the extra field's length at `at`, where "version needed to extract" starts: 4 in
 * a local header, 6 in a central one (the fields from there on are laid out alike in both).
 */
function writeEntryFields(view: DataView, at: number, f: EntryFields, extraLength: number): void {
  view.setUint16(at, f.version, true);
  view.setUint16(at + 2, f.flags, true);
  view.setUint16(at + 4, f.method, true);
  view.setUint32(at + 10, f.crc, true);
  view.setUint32(at + 14, f.compressedSize, true);
  view.setUint32(at + 18, f.size, true);
  view.setUint16(at + 22, f.nameLength, true);
  view.setUint16(at + 24, extraLength, true);
}

/** A ZIP64 extended-information extra field (header id 1) holding `values` as u64s, in order. */
function zip64Extra(...values: number[]): Uint8Array {
  const extra = new Uint8Array(4 + 8 * values.length);
  const v = new DataView(extra.buffer);
  v.setUint16(0, 1, true);
  v.setUint16(2, 8 * values.length, true);
  values.forEach((x, k) => v.setBigUint64(4 + 8 * k, BigInt(x), true));
  return extra;
}

/** Options of {@link encodeZip}. */
export interface ZipWriteOptions {
  /** Deflate these entries (by name); the rest are stored. */
  deflate?: ReadonlySet<string>;
  /** Write zip64 records and extra fields even though the archive is small (for tests). */
  zip64?: boolean;
  /** Align stored data to this many bytes with padding in the local extra field (torch uses 64). */
  align?: number;
}

/**
 * Builds a zip archive in memory: stored or deflated entries, optional zip64 structures.
 * Used for test fixtures (PyTorch checkpoints), not for large files.
 */
export function encodeZip(files: ReadonlyArray<{ name: string; data: Uint8Array }>, opts: ZipWriteOptions = {}): Uint8Array {
  const { deflateRawSync } = zlib;
  const enc = new TextEncoder();
  const parts: Uint8Array[] = [];
  let offset = 0;
  const push = (b: Uint8Array): void => {
    parts.push(b);
    offset += b.length;
  };
  const central: Uint8Array[] = [];
  for (const file of files) {
    const name = enc.encode(file.name);
    const deflate = opts.deflate?.has(file.name) ?? false;
    const body = deflate ? new Uint8Array(deflateRawSync(file.data)) : file.data;
    const crc = zlib.crc32(file.data);
    const z64 = opts.zip64 ?? false;
    const headerOffset = offset;
    let extra = z64 ? zip64Extra(file.data.length, body.length) : new Uint8Array(0);
    if (opts.align && !deflate) {
      const unaligned = headerOffset + 30 + name.length + extra.length;
      const pad = (opts.align - ((unaligned + 4) % opts.align)) % opts.align;
      const padded = new Uint8Array(extra.length + 4 + pad);
      padded.set(extra);
      const pv = new DataView(padded.buffer);
      pv.setUint16(extra.length, 0x4246, true); // "FB", as torch's writer
      pv.setUint16(extra.length + 2, pad, true);
      extra = padded;
    }
    const entry: EntryFields = {
      version: z64 ? 45 : 20,
      flags: 0x0800, // UTF-8 names
      method: deflate ? 8 : 0,
      crc,
      compressedSize: z64 ? U32_MAX : body.length,
      size: z64 ? U32_MAX : file.data.length,
      nameLength: name.length,
    };
    const lh = new Uint8Array(30);
    const lv = new DataView(lh.buffer);
    lv.setUint32(0, SIG_LOCAL, true);
    writeEntryFields(lv, 4, entry, extra.length);
    push(lh);
    push(name);
    push(extra);
    push(body);

    const cextra = z64 ? zip64Extra(file.data.length, body.length, headerOffset) : new Uint8Array(0);
    const ch = new Uint8Array(46);
    const cv = new DataView(ch.buffer);
    cv.setUint32(0, SIG_CENTRAL, true);
    cv.setUint16(4, z64 ? 45 : 20, true); // version made by
    writeEntryFields(cv, 6, entry, cextra.length);
    cv.setUint32(42, z64 ? U32_MAX : headerOffset, true);
    central.push(ch, name, cextra);
  }
  const cdOffset = offset;
  for (const c of central) push(c);
  const cdSize = offset - cdOffset;
  const z64 = opts.zip64 ?? false;
  if (z64) {
    const recOffset = offset;
    const rec = new Uint8Array(56);
    const rv = new DataView(rec.buffer);
    rv.setUint32(0, SIG_ZIP64_EOCD, true);
    rv.setBigUint64(4, 44n, true);
    rv.setUint16(12, 45, true);
    rv.setUint16(14, 45, true);
    rv.setBigUint64(24, BigInt(files.length), true);
    rv.setBigUint64(32, BigInt(files.length), true);
    rv.setBigUint64(40, BigInt(cdSize), true);
    rv.setBigUint64(48, BigInt(cdOffset), true);
    push(rec);
    const loc = new Uint8Array(20);
    const lv = new DataView(loc.buffer);
    lv.setUint32(0, SIG_ZIP64_LOCATOR, true);
    lv.setBigUint64(8, BigInt(recOffset), true);
    lv.setUint32(16, 1, true);
    push(loc);
  }
  const eocd = new Uint8Array(22);
  const ev = new DataView(eocd.buffer);
  ev.setUint32(0, SIG_EOCD, true);
  ev.setUint16(8, z64 ? U16_MAX : files.length, true);
  ev.setUint16(10, z64 ? U16_MAX : files.length, true);
  ev.setUint32(12, z64 ? U32_MAX : cdSize, true);
  ev.setUint32(16, z64 ? U32_MAX : cdOffset, true);
  push(eocd);
  const out = new Uint8Array(offset);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** An entry of {@link encodeRawZip}: bytes as stored, headers as declared. */
export interface RawZipEntry {
  name: string;
  /** The stored bytes (already deflated when `deflated`). */
  body: Uint8Array;
  deflated?: boolean;
  /** Compression method written in the headers (default 8 when `deflated`, else 0). */
  method?: number;
  /** Declared uncompressed size (default: the body's length); may lie. */
  size?: number;
  /** Declared CRC-32 (default: the body's, or 0 for deflated entries); may lie. */
  crc?: number;
}

/**
 * Builds a zip archive whose headers say what the caller declares, true or not: the hostile-input
 * tests and the fuzzer (bench/fuzz) make zip bombs and lying entries with it. Use
 * {@link encodeZip} for well-formed archives.
 */
export function encodeRawZip(files: readonly RawZipEntry[]): Uint8Array {
  const parts: Buffer[] = [];
  const central: Buffer[] = [];
  let offset = 0;
  for (const f of files) {
    const name = Buffer.from(f.name);
    const size = f.size ?? f.body.length;
    const method = f.method ?? (f.deflated ? 8 : 0);
    const crc = f.crc ?? (f.deflated ? 0 : zlib.crc32(f.body));
    // setUint32 stores a declared size or CRC modulo 2^32, as `>>> 0` would.
    const entry: EntryFields = { version: 20, flags: 0, method, crc, compressedSize: f.body.length, size, nameLength: name.length };
    const lh = Buffer.alloc(30);
    lh.writeUInt32LE(SIG_LOCAL, 0);
    writeEntryFields(new DataView(lh.buffer, lh.byteOffset, lh.length), 4, entry, 0);
    const ch = Buffer.alloc(46);
    ch.writeUInt32LE(SIG_CENTRAL, 0);
    ch.writeUInt16LE(20, 4);
    writeEntryFields(new DataView(ch.buffer, ch.byteOffset, ch.length), 6, entry, 0);
    ch.writeUInt32LE(offset, 42);
    central.push(ch, name);
    parts.push(lh, name, Buffer.from(f.body));
    offset += 30 + name.length + f.body.length;
  }
  const cd = Buffer.concat(central);
  const eocd = Buffer.alloc(22);
  eocd.writeUInt32LE(0x06054b50, 0);
  eocd.writeUInt16LE(files.length, 8);
  eocd.writeUInt16LE(files.length, 10);
  eocd.writeUInt32LE(cd.length, 12);
  eocd.writeUInt32LE(offset, 16);
  return new Uint8Array(Buffer.concat([...parts, cd, eocd]));
}
