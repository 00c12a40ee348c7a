/**
 * Input/output layer for `tallrec batch` and `tallrec eval`: streaming CSV
 * and JSONL readers and writers, a format-agnostic row source, and the
 * durable-progress primitive behind `--resume`.
 *
 * @module
 */
export * from "./csv.js";
export * from "./jsonl.js";
export * from "./table.js";
export * from "./checkpoint.js";
export { TextWriter, type TextWriterOptions } from "./writer.js";
export { decodeWindows1252, decodeText } from "./encoding.js";
export { type ByteSource, DEFAULT_MAX_RECORD_BYTES } from "./lines.js";
