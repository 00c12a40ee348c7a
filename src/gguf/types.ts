/**
 * GGUF format constants and value types shared by the reader and the writer.
 *
 * The layout follows ggml's `gguf.h` (format version 3, little-endian only):
 * magic "GGUF", u32 version, u64 tensor count, u64 metadata count, the metadata
 * key/value pairs, the tensor infos, padding to the alignment, then the tensor data.
 */
import { printableText } from "../printable.js";
import { TallrecError } from "../errors.js";

/** Metadata value types (`enum gguf_type`). */
export const GgufValueType = {
  UINT8: 0,
  INT8: 1,
  UINT16: 2,
  INT16: 3,
  UINT32: 4,
  INT32: 5,
  FLOAT32: 6,
  BOOL: 7,
  STRING: 8,
  ARRAY: 9,
  UINT64: 10,
  INT64: 11,
  FLOAT64: 12,
} as const;
/** A metadata value type code. */
export type GgufValueType = (typeof GgufValueType)[keyof typeof GgufValueType];

/** Metadata value types that hold a JS `number`. */
export type GgufNumberType =
  | typeof GgufValueType.UINT8
  | typeof GgufValueType.INT8
  | typeof GgufValueType.UINT16
  | typeof GgufValueType.INT16
  | typeof GgufValueType.UINT32
  | typeof GgufValueType.INT32
  | typeof GgufValueType.FLOAT32
  | typeof GgufValueType.FLOAT64;
/** Metadata value types that hold a JS `bigint` (64-bit integers). */
export type GgufBigintType = typeof GgufValueType.UINT64 | typeof GgufValueType.INT64;
/** Every value type that may appear as an array element (llama.cpp rejects nested arrays). */
export type GgufScalarType = GgufNumberType | GgufBigintType | typeof GgufValueType.BOOL | typeof GgufValueType.STRING;

/** A scalar metadata value, tagged with its GGUF type. */
export type GgufScalarValue =
  { type: GgufNumberType; value: number } | { type: GgufBigintType; value: bigint } | { type: typeof GgufValueType.BOOL; value: boolean } | { type: typeof GgufValueType.STRING; value: string };

/** An array metadata value: `itemType` is the element type, elements are JS values of that type. */
export type GgufArrayValue =
  | { type: typeof GgufValueType.ARRAY; itemType: GgufNumberType; value: number[] }
  | { type: typeof GgufValueType.ARRAY; itemType: GgufBigintType; value: bigint[] }
  | { type: typeof GgufValueType.ARRAY; itemType: typeof GgufValueType.BOOL; value: boolean[] }
  | { type: typeof GgufValueType.ARRAY; itemType: typeof GgufValueType.STRING; value: string[] };

/** A metadata value as stored in a GGUF file, keeping its exact type. */
export type GgufValue = GgufScalarValue | GgufArrayValue;

/** One metadata entry: a key with its typed value. */
export type GgufMetadataEntry = GgufValue & { key: string };

/** Size in bytes of one element of each fixed-size value type. */
export const GGUF_VALUE_SIZE: Readonly<Record<number, number>> = {
  [GgufValueType.UINT8]: 1,
  [GgufValueType.INT8]: 1,
  [GgufValueType.UINT16]: 2,
  [GgufValueType.INT16]: 2,
  [GgufValueType.UINT32]: 4,
  [GgufValueType.INT32]: 4,
  [GgufValueType.FLOAT32]: 4,
  [GgufValueType.BOOL]: 1,
  [GgufValueType.UINT64]: 8,
  [GgufValueType.INT64]: 8,
  [GgufValueType.FLOAT64]: 8,
};

/** Readable name of a value type code (for messages). */
export function ggufValueTypeName(type: number): string {
  for (const [name, code] of Object.entries(GgufValueType)) if (code === type) return name;
  return `unknown(${type})`;
}

/** ggml tensor types (`enum ggml_type`) as of llama.cpp/ggml 0.4.0. */
export const GgmlType = {
  F32: 0,
  F16: 1,
  Q4_0: 2,
  Q4_1: 3,
  Q5_0: 6,
  Q5_1: 7,
  Q8_0: 8,
  Q8_1: 9,
  Q2_K: 10,
  Q3_K: 11,
  Q4_K: 12,
  Q5_K: 13,
  Q6_K: 14,
  Q8_K: 15,
  IQ2_XXS: 16,
  IQ2_XS: 17,
  IQ3_XXS: 18,
  IQ1_S: 19,
  IQ4_NL: 20,
  IQ3_S: 21,
  IQ2_S: 22,
  IQ4_XS: 23,
  I8: 24,
  I16: 25,
  I32: 26,
  I64: 27,
  F64: 28,
  IQ1_M: 29,
  BF16: 30,
  TQ1_0: 34,
  TQ2_0: 35,
  MXFP4: 39,
  NVFP4: 40,
  Q1_0: 41,
  Q2_0: 42,
} as const;
/** A ggml tensor type code. */
export type GgmlType = (typeof GgmlType)[keyof typeof GgmlType];

/** Block layout of a ggml type: `blockSize` elements are stored in `typeSize` bytes. */
export interface GgmlTypeTraits {
  name: string;
  blockSize: number;
  typeSize: number;
}

/** Block sizes and byte sizes, checked against ggml-common.h of the bundled llama.cpp. */
const TRAITS: ReadonlyMap<number, GgmlTypeTraits> = new Map<number, GgmlTypeTraits>([
  [GgmlType.F32, { name: "F32", blockSize: 1, typeSize: 4 }],
  [GgmlType.F16, { name: "F16", blockSize: 1, typeSize: 2 }],
  [GgmlType.Q4_0, { name: "Q4_0", blockSize: 32, typeSize: 18 }],
  [GgmlType.Q4_1, { name: "Q4_1", blockSize: 32, typeSize: 20 }],
  [GgmlType.Q5_0, { name: "Q5_0", blockSize: 32, typeSize: 22 }],
  [GgmlType.Q5_1, { name: "Q5_1", blockSize: 32, typeSize: 24 }],
  [GgmlType.Q8_0, { name: "Q8_0", blockSize: 32, typeSize: 34 }],
  [GgmlType.Q8_1, { name: "Q8_1", blockSize: 32, typeSize: 36 }],
  [GgmlType.Q2_K, { name: "Q2_K", blockSize: 256, typeSize: 84 }],
  [GgmlType.Q3_K, { name: "Q3_K", blockSize: 256, typeSize: 110 }],
  [GgmlType.Q4_K, { name: "Q4_K", blockSize: 256, typeSize: 144 }],
  [GgmlType.Q5_K, { name: "Q5_K", blockSize: 256, typeSize: 176 }],
  [GgmlType.Q6_K, { name: "Q6_K", blockSize: 256, typeSize: 210 }],
  [GgmlType.Q8_K, { name: "Q8_K", blockSize: 256, typeSize: 292 }],
  [GgmlType.IQ2_XXS, { name: "IQ2_XXS", blockSize: 256, typeSize: 66 }],
  [GgmlType.IQ2_XS, { name: "IQ2_XS", blockSize: 256, typeSize: 74 }],
  [GgmlType.IQ3_XXS, { name: "IQ3_XXS", blockSize: 256, typeSize: 98 }],
  [GgmlType.IQ1_S, { name: "IQ1_S", blockSize: 256, typeSize: 50 }],
  [GgmlType.IQ4_NL, { name: "IQ4_NL", blockSize: 32, typeSize: 18 }],
  [GgmlType.IQ3_S, { name: "IQ3_S", blockSize: 256, typeSize: 110 }],
  [GgmlType.IQ2_S, { name: "IQ2_S", blockSize: 256, typeSize: 82 }],
  [GgmlType.IQ4_XS, { name: "IQ4_XS", blockSize: 256, typeSize: 136 }],
  [GgmlType.I8, { name: "I8", blockSize: 1, typeSize: 1 }],
  [GgmlType.I16, { name: "I16", blockSize: 1, typeSize: 2 }],
  [GgmlType.I32, { name: "I32", blockSize: 1, typeSize: 4 }],
  [GgmlType.I64, { name: "I64", blockSize: 1, typeSize: 8 }],
  [GgmlType.F64, { name: "F64", blockSize: 1, typeSize: 8 }],
  [GgmlType.IQ1_M, { name: "IQ1_M", blockSize: 256, typeSize: 56 }],
  [GgmlType.BF16, { name: "BF16", blockSize: 1, typeSize: 2 }],
  [GgmlType.TQ1_0, { name: "TQ1_0", blockSize: 256, typeSize: 54 }],
  [GgmlType.TQ2_0, { name: "TQ2_0", blockSize: 256, typeSize: 66 }],
  [GgmlType.MXFP4, { name: "MXFP4", blockSize: 32, typeSize: 17 }],
  [GgmlType.NVFP4, { name: "NVFP4", blockSize: 64, typeSize: 36 }],
  [GgmlType.Q1_0, { name: "Q1_0", blockSize: 128, typeSize: 18 }],
  [GgmlType.Q2_0, { name: "Q2_0", blockSize: 64, typeSize: 18 }],
]);

/** Block layout of a ggml type, or `undefined` for an unknown or removed type code. */
export function ggmlTypeTraits(type: number): GgmlTypeTraits | undefined {
  return TRAITS.get(type);
}

/** Readable name of a ggml type code (for messages), e.g. "Q4_K" or "unknown(31)". */
export function ggmlTypeName(type: number): string {
  return TRAITS.get(type)?.name ?? `unknown(${type})`;
}

/** Default tensor data alignment when `general.alignment` is absent. */
export const GGUF_DEFAULT_ALIGNMENT = 32;
/** Most dimensions a ggml tensor may have. */
export const GGML_MAX_DIMS = 4;
/** llama.cpp limits tensor names to GGML_MAX_NAME - 1 bytes. */
export const GGML_MAX_NAME = 64;
/** The file magic, "GGUF" read as a little-endian u32. */
export const GGUF_MAGIC = 0x46554747;

/** Any problem with a GGUF file: bad format, truncation, unsupported content. Messages start with the file path. */
export class GgufError extends TallrecError {
  /** The file the problem is about. */
  readonly path: string;

  /** Code `invalid_file`, or `not_found` when the cause is a missing file. */
  constructor(path: string, message: string, options?: { cause?: unknown }) {
    const missing = (options?.cause as { code?: unknown } | undefined)?.code === "ENOENT";
    // names from the file (tensors, keys) may hold control characters or ANSI escapes: escaped here, once for every message
    super(missing ? "not_found" : "invalid_file", printableText(`${path}: ${message}`), options);
    this.name = "GgufError";
    this.path = path;
  }
}
