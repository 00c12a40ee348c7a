/**
 * The error every converter throws for bad input: a missing or truncated file, an unsupported
 * format feature, a checkpoint that does not fit its base model. Messages start with the file
 * (or directory) the problem is about.
 */

import { printableText } from "../printable.js";

/** A problem with a checkpoint, adapter or model being converted. */
export class ConvertError extends Error {
  /** The file or directory the problem is about. */
  readonly path: string;

  constructor(path: string, message: string, options?: { cause?: unknown }) {
    // names from the file (tensors, keys) may hold control characters or ANSI escapes: escaped here, once for every message
    super(printableText(`${path}: ${message}`), options);
    this.name = "ConvertError";
    this.path = path;
  }
}
