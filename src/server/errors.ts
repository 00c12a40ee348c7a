/** HTTP errors of the server, and the formatting of schema validation errors. */
import { STATUS_CODES } from "node:http";

/** An error answered with `statusCode` and `{ statusCode, error, code, message }` (plus `extra`). */
export class HttpError extends Error {
  constructor(
    readonly statusCode: number,
    message: string,
    readonly code: string = "TALLREC_ERROR",
    /** Response headers, e.g. Retry-After. */
    readonly headers: Record<string, string> = {},
    /** Further fields of the response body (e.g. per-item results). */
    readonly extra: Record<string, unknown> = {},
  ) {
    super(message);
    this.name = "HttpError";
  }

  /** The JSON body of the response. */
  body(): Record<string, unknown> {
    return { statusCode: this.statusCode, error: STATUS_CODES[this.statusCode] ?? "Error", code: this.code, message: this.message, ...this.extra };
  }
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
