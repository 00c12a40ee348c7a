/**
 * The error every converter throws for bad input: a missing or truncated file, an unsupported
 * format feature, a checkpoint that does not fit its base model. Messages start with the file
 * (or directory) the problem is about.
 */

import { TallrecError } from "../errors.js";
import { printableText } from "../printable.js";

/** The codes a {@link ConvertError} carries. */
export type ConvertErrorCode = "invalid_file" | "unsupported" | "not_found";

/**
 * A problem with a checkpoint, adapter or model being converted: `invalid_file` (malformed,
 * truncated, not fitting its base model), `unsupported` (valid, but uses a feature the
 * converters do not support) or `not_found` (a file that does not exist).
 */
export class ConvertError extends TallrecError {
  /** The file or directory the problem is about. */
  readonly path: string;

  constructor(path: string, message: string, code: ConvertErrorCode = "invalid_file", options?: { cause?: unknown }) {
    // names from the file (tensors, keys) may hold control characters or ANSI escapes: escaped here, once for every message
    super(code, printableText(`${path}: ${message}`), options);
    this.name = "ConvertError";
    this.path = path;
  }
}
