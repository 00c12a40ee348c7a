/**
 * HTTP errors of the server: the one place where the library's error codes (src/errors.ts) become
 * HTTP statuses, and the formatting of schema validation errors.
 */
import { STATUS_CODES } from "node:http";

import { codeOf, ERROR_CODES, TallrecError, type ErrorCode } from "../errors.js";

/** An error answered with its code's status and `{ statusCode, error, code, message }` (plus `extra`). */
export class HttpError extends TallrecError {
  readonly statusCode: number;
  /** Response headers, e.g. Retry-After. */
  readonly headers: Record<string, string>;
  /** Further fields of the response body (e.g. per-item results). */
  readonly extra: Record<string, unknown>;

  constructor(code: ErrorCode, message: string, options: { status?: number; headers?: Record<string, string>; extra?: Record<string, unknown>; retryAfterSeconds?: number; cause?: unknown } = {}) {
    super(code, message, { retryAfterSeconds: options.retryAfterSeconds, cause: options.cause });
    this.name = "HttpError";
    this.statusCode = options.status ?? ERROR_CODES[code].http;
    this.headers = { ...(options.retryAfterSeconds !== undefined ? { "retry-after": String(options.retryAfterSeconds) } : {}), ...options.headers };
    this.extra = options.extra ?? {};
  }

  /**
   * The HTTP form of any error: a TallrecError (from the engine, its scheduler, Chat-REC, recsys,
   * the converters) keeps its code and message and gets its code's status, with Retry-After when
   * it says when to retry; anything else is `internal` (500) and its message is not shown.
   */
  static from(err: unknown, internalMessage = "internal error"): HttpError {
    if (err instanceof HttpError) return err;
    const code = codeOf(err);
    if (code === "internal") return new HttpError("internal", internalMessage, { cause: err });
    const e = err as Partial<TallrecError>;
    const retry = e.retryAfterSeconds;
    return new HttpError(code, String(e.message), { cause: err, ...(retry !== undefined ? { retryAfterSeconds: retry } : {}), extra: e.details && Object.keys(e.details).length > 0 ? { ...e.details } : {} });
  }

  /** The JSON body of the response. */
  body(): Record<string, unknown> {
    return { statusCode: this.statusCode, error: STATUS_CODES[this.statusCode] ?? "Error", code: this.code, message: this.message, ...this.extra };
  }
}

/** The code of an error Fastify raises itself (bad JSON, body too large, wrong content type...). */
export function frameworkCode(status: number): ErrorCode {
  if (status === 404) return "not_found";
  if (status === 413) return "too_large";
  if (status === 414) return "uri_too_long";
  if (status === 415) return "unsupported_media_type";
  return status >= 500 ? "internal" : "invalid_input";
}
/** The subset of an Ajv error object the formatter reads. */
export interface SchemaError {
  keyword: string;
  instancePath: string;
  schemaPath?: string;
  message?: string;
  params?: Record<string, unknown>;
  parentSchema?: { description?: string };
}

/**
 * One clear message for a schema validation failure, naming the field by its path under
 * `dataVar` ("body/items/3/target must be a string or { title, author }"):
 * - a missing property: `body/items is required`;
 * - an unknown property: `body/adaptr is not an allowed field`;
 * - a failed anyOf/oneOf: the alternatives' `description` (from the schema) instead of one line
 *   per branch;
 * - anything else: Ajv's message after the path (`body/items/0/input must be string`).
 */
export function formatSchemaErrors(errors: readonly SchemaError[] | null | undefined, dataVar: string): string {
  if (!errors || errors.length === 0) return `${dataVar} is invalid`;
  // with allErrors off, Ajv reports the branches of a failed anyOf/oneOf first and the anyOf itself last
  const last = errors[errors.length - 1];
  const e = last.keyword === "anyOf" || last.keyword === "oneOf" ? last : errors[0];
  const path = `${dataVar}${e.instancePath}`;
  switch (e.keyword) {
    case "required":
      return `${path}/${String(e.params?.missingProperty)} is required`;
    case "additionalProperties":
      return `${path}/${String(e.params?.additionalProperty)} is not an allowed field`;
    case "anyOf":
    case "oneOf":
      return e.parentSchema?.description ? `${path} must be ${e.parentSchema.description}` : `${path} ${e.message ?? "is invalid"}`;
    case "enum":
      return `${path} must be one of ${((e.params?.allowedValues as unknown[]) ?? []).map((v) => JSON.stringify(v)).join(", ")}`;
    default:
      return `${path} ${e.message ?? "is invalid"}`;
  }
}
