/**
 * Text decoding for input records.
 *
 * Input files are bytes. A record that is valid UTF-8 is decoded as UTF-8.
 * A record that is not is decoded as **Windows-1252** and flagged
 * `latin1: true` by the readers. Windows-1252 is what the WHATWG Encoding
 * Standard (and so every browser and `new TextDecoder("latin1")`) means by the
 * labels "latin1" and "iso-8859-1": identical to ISO-8859-1 except that bytes
 * 0x80–0x9F are the printable characters Excel and Windows editors actually
 * write there (€ ‚ ƒ „ … † ‡ ˆ ‰ Š ‹ Œ Ž ' ' " " • – — ˜ ™ š › œ ž Ÿ) rather
 * than C1 control codes. The five bytes Windows-1252 leaves undefined (0x81,
 * 0x8D, 0x8F, 0x90, 0x9D) decode to the C1 control of the same value, as in
 * the WHATWG mapping, so decoding never fails and never loses a byte.
 *
 * @module
 */
import { isUtf8 } from "node:buffer";

/** Code points for bytes 0x80–0x9F in Windows-1252 (WHATWG index). */
const CP1252_HIGH: readonly number[] = [
  0x20ac, 0x0081, 0x201a, 0x0192, 0x201e, 0x2026, 0x2020, 0x2021, 0x02c6, 0x2030, 0x0160, 0x2039, 0x0152, 0x008d, 0x017d, 0x008f, 0x0090, 0x2018, 0x2019, 0x201c, 0x201d, 0x2022, 0x2013, 0x2014, 0x02dc, 0x2122, 0x0161,
  0x203a, 0x0153, 0x009d, 0x017e, 0x0178,
];

const C1_RE = /[\u0080-\u009f]/g;
const HAS_C1 = /[\u0080-\u009f]/;
const c1Replace = (ch: string): string => String.fromCharCode(CP1252_HIGH[ch.charCodeAt(0) - 0x80]);

/** Decodes bytes as Windows-1252 (see the module comment). */
export function decodeWindows1252(bytes: Uint8Array): string {
  const s = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("latin1");
  return HAS_C1.test(s) ? s.replace(C1_RE, c1Replace) : s;
}

/** True when the bytes are well-formed UTF-8. */
export function isValidUtf8(bytes: Uint8Array): boolean {
  return bytes.length === 0 || isUtf8(bytes);
}

/**
 * Decodes a record given as several byte fields: all as UTF-8 when every
 * field is valid UTF-8, otherwise all as Windows-1252 with `latin1: true`.
 */
export function decodeRecord(fields: readonly Buffer[]): { values: string[]; latin1: boolean } {
  let utf8 = true;
  for (const f of fields) {
    if (!isValidUtf8(f)) {
      utf8 = false;
      break;
    }
  }
  const values = new Array<string>(fields.length);
  for (let i = 0; i < fields.length; i++) {
    values[i] = utf8 ? fields[i].toString("utf8") : decodeWindows1252(fields[i]);
  }
  return { values, latin1: !utf8 };
}

/** Decodes one byte range as UTF-8, or Windows-1252 when it is not valid UTF-8. */
export function decodeText(bytes: Buffer): { text: string; latin1: boolean } {
  if (isValidUtf8(bytes)) return { text: bytes.toString("utf8"), latin1: false };
  return { text: decodeWindows1252(bytes), latin1: true };
}
