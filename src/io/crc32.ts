/**
 * CRC-32 (IEEE 802.3, as zlib / PNG / gzip), incremental.
 *
 * @module
 */

const TABLE = (() => {
  const t = new Int32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c;
  }
  return t;
})();

/** CRC-32 of `bytes`, continuing from `crc` (the CRC of the preceding bytes; 0 to start). */
export function crc32(bytes: Uint8Array, crc = 0): number {
  let c = ~crc;
  for (let i = 0; i < bytes.length; i++) c = TABLE[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return ~c >>> 0;
}

/** CRC-32 as 8 lowercase hex digits. */
export function crc32Hex(bytes: Uint8Array, crc = 0): string {
  return crc32(bytes, crc).toString(16).padStart(8, "0");
}
