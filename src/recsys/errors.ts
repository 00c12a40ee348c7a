/**
 * Error types raised by the recommender modules.
 *
 * Every error is a {@link TallrecError} carrying a code of the library's one
 * vocabulary (src/errors.ts), so callers (for example the Chat-REC layer, the
 * server, the CLI) can branch on the kind of failure without parsing messages:
 * `invalid_data` (a malformed data row), `unknown_user` / `unknown_item`,
 * `empty` (a user without history), `not_ready` (not fitted), `invalid_file`
 * (a model file), `invalid_input` (an argument out of range).
 *
 * @module
 */

import { type ErrorCode, TallrecError, type TallrecErrorOptions } from "../errors.js";

/** Base class of all errors thrown by `src/recsys`. */
export class RecsysError extends TallrecError {
  constructor(code: ErrorCode, message: string, options?: TallrecErrorOptions) {
    super(code, message, options);
  }
}

/**
 * A malformed row (or header) in an input file.
 *
 * The message has the form `file:line: field "name": problem`, so it can be
 * shown to a user as is.
 */
export class DataFormatError extends RecsysError {
  /** File name (or label) the row came from. */
  readonly file: string;
  /** 1-based line number of the offending row (0 when not line-specific). */
  readonly line: number;
  /** Name of the offending field (column), or `"row"` for whole-row problems. */
  readonly field: string;
  /** Raw text of the offending value, when there is one. */
  readonly value: string | undefined;

  constructor(file: string, line: number, field: string, problem: string, value?: string) {
    const shown = value === undefined ? "" : `, got ${JSON.stringify(truncate(value, 60))}`;
    super("invalid_data", `${file}:${line}: field "${field}": ${problem}${shown}`);
    this.file = file;
    this.line = line;
    this.field = field;
    this.value = value;
  }
}

/** A user or item id that the dataset / model has never seen. */
export class UnknownIdError extends RecsysError {
  /** Whether the id was used as a user or an item. */
  readonly kind: "user" | "item";
  /** The id as given by the caller. */
  readonly id: string;

  constructor(kind: "user" | "item", id: string, context?: string) {
    super(kind === "user" ? "unknown_user" : "unknown_item", `unknown ${kind} id ${JSON.stringify(id)}${context ? ` (${context})` : ""}`);
    this.kind = kind;
    this.id = id;
  }
}

/**
 * A known user without any training interactions: a personalised model has
 * nothing to base a recommendation on. Fall back to a popularity model.
 */
export class EmptyHistoryError extends RecsysError {
  /** The user id. */
  readonly user: string;

  constructor(user: string, model: string) {
    super("empty", `user ${JSON.stringify(user)} has no training interactions, so ${model} cannot personalise for them (use a popularity model as the cold-start fallback)`);
    this.user = user;
  }
}

/** A model method was called before `fit()` (or `load()`). */
export class NotFittedError extends RecsysError {
  constructor(model: string) {
    super("not_ready", `${model} is not fitted: call fit(train) or load(path) first`);
  }
}

/** A saved model file is not readable: wrong format, version, model kind, truncation or corruption. */
export class ModelFileError extends RecsysError {
  /** Path (or label) of the file. */
  readonly path: string;

  constructor(path: string, problem: string) {
    super("invalid_file", `${path}: ${problem}`);
    this.path = path;
  }
}

/** An argument outside its valid range (k <= 0, fraction outside (0,1), ...). */
export class InvalidArgumentError extends RecsysError {
  constructor(message: string) {
    super("invalid_input", message);
  }
}

function truncate(s: string, n: number): string {
  return s.length <= n ? s : `${s.slice(0, n)}…`;
}
