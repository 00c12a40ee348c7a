/**
 * The error vocabulary of the whole library: every failure a caller can act on carries one of
 * these codes, the same word in the library (`TallrecError.code`, `ScoreFailure.code`), on the
 * command line (the exit status, from {@link exitCodeOf}) and over HTTP (the status, from
 * {@link httpStatusOf}, and `code` in the error body). The table in docs/errors.md is checked
 * against {@link ERROR_CODES} by test/error-codes.test.ts, so the two cannot drift apart.
 *
 * A leaf module: it imports nothing, so every layer (engine, recsys, converters, Chat-REC, server,
 * CLI) can use it without an import cycle.
 */

/**
 * Exit statuses of the CLI: 0 ok; 1 an error (its code says which, on stderr's one line); 2 the
 * command line names something wrong: an unknown option or a missing argument (found before any
 * work starts), or a user, item, session or adapter that does not exist; 3 the command finished but
 * some items failed (batch, score); 130 interrupted or aborted.
 */
export const EXIT = { OK: 0, FAILURE: 1, USAGE: 2, PARTIAL: 3, INTERRUPTED: 130 } as const;

interface CodeSpec {
  /** HTTP status the server answers with. */
  readonly http: number;
  /** Exit status of the CLI. */
  readonly exit: number;
  /** What it means, for the docs. */
  readonly meaning: string;
}

/** Every code, with its HTTP status, CLI exit status and meaning. */
export const ERROR_CODES = {
  // input of a call
  invalid_input: { http: 400, exit: EXIT.FAILURE, meaning: "a prompt, option, request field or argument is malformed (the message names it)" },
  empty: { http: 400, exit: EXIT.FAILURE, meaning: "a prompt, list or file that must hold something is empty" },
  too_long: { http: 413, exit: EXIT.FAILURE, meaning: "a prompt has more tokens than the context holds (raise the context size)" },
  too_many_items: { http: 413, exit: EXIT.USAGE, meaning: "a request holds more items than the server's limit or queue" },
  too_large: { http: 413, exit: EXIT.USAGE, meaning: "a request body is larger than the server's limit" },
  uri_too_long: { http: 414, exit: EXIT.USAGE, meaning: "a request URL or path parameter is longer than the server reads" },
  unknown_adapter: { http: 404, exit: EXIT.USAGE, meaning: "no LoRA adapter of that name is loaded" },
  adapter_required: { http: 400, exit: EXIT.USAGE, meaning: "several adapters are loaded and none is the default: the call must choose one" },
  adapter_exists: { http: 409, exit: EXIT.USAGE, meaning: "an adapter of that name is already loaded" },
  unknown_user: { http: 404, exit: EXIT.USAGE, meaning: "a user id the data or model has never seen" },
  unknown_item: { http: 404, exit: EXIT.USAGE, meaning: "an item id the data or model has never seen" },
  unknown_session: { http: 404, exit: EXIT.USAGE, meaning: "no chat session of that id (it expired or never existed)" },
  not_found: { http: 404, exit: EXIT.FAILURE, meaning: "a file, route or resource does not exist" },
  forbidden: { http: 403, exit: EXIT.USAGE, meaning: "the request is not allowed here (e.g. a path outside the models folder, runtime loading disabled)" },
  unauthorized: { http: 401, exit: EXIT.USAGE, meaning: "a missing or wrong API key" },
  // files and data
  invalid_file: { http: 422, exit: EXIT.FAILURE, meaning: "a model, adapter or checkpoint file is malformed, truncated or does not fit the model" },
  invalid_data: { http: 400, exit: EXIT.FAILURE, meaning: "a row of a data file is malformed (the message names file, line and field)" },
  unsupported: { http: 400, exit: EXIT.FAILURE, meaning: "a valid input that uses a feature tallrec does not support" },
  unsupported_media_type: { http: 415, exit: EXIT.USAGE, meaning: "a request body of a content type the server does not read (send application/json)" },
  // the computation
  non_finite: { http: 422, exit: EXIT.FAILURE, meaning: "the model computed non-finite logits (weights or an adapter scale overflow)" },
  backend: { http: 500, exit: EXIT.FAILURE, meaning: "llama.cpp or the native addon failed (out of memory, a failed decode, no usable GPU)" },
  not_ready: { http: 409, exit: EXIT.FAILURE, meaning: "an object was used before it was set up (e.g. a recommender before fit)" },
  busy: { http: 409, exit: EXIT.FAILURE, meaning: "the resource is in use by another request (e.g. a chat session mid-turn)" },
  // scheduling and life cycle
  aborted: { http: 499, exit: EXIT.INTERRUPTED, meaning: "the caller cancelled the call (an AbortSignal, a client that disconnected, Ctrl-C)" },
  timeout: { http: 503, exit: EXIT.FAILURE, meaning: "the call did not finish within its time limit" },
  queue_full: { http: 429, exit: EXIT.FAILURE, meaning: "the scheduler's queue is full: retry after the time given" },
  closed: { http: 503, exit: EXIT.FAILURE, meaning: "the engine or server is closed or shutting down" },
  loading: { http: 503, exit: EXIT.FAILURE, meaning: "the model is still loading: retry shortly" },
  unavailable: { http: 503, exit: EXIT.FAILURE, meaning: "a service the call needs is not available (the model failed to load, Chat-REC not configured, Redis down)" },
  internal: { http: 500, exit: EXIT.FAILURE, meaning: "a bug: please report it with the message" },
} as const satisfies Record<string, CodeSpec>;

export type ErrorCode = keyof typeof ERROR_CODES;

export function isErrorCode(code: unknown): code is ErrorCode {
  return typeof code === "string" && Object.hasOwn(ERROR_CODES, code);
}

export interface TallrecErrorOptions {
  cause?: unknown;
  /** Seconds after which a retry may succeed (queue_full, timeout, loading, closed). */
  retryAfterSeconds?: number;
  /** Further machine-readable fields (e.g. `tokens` for too_long); also sent in HTTP error bodies. */
  details?: Record<string, unknown>;
}

/** An error with a code from {@link ERROR_CODES} and a message a user can act on. */
export class TallrecError extends Error {
  readonly code: ErrorCode;
  readonly retryAfterSeconds: number | undefined;
  readonly details: Record<string, unknown>;

  constructor(code: ErrorCode, message: string, options: TallrecErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
    this.retryAfterSeconds = options.retryAfterSeconds;
    this.details = options.details ?? {};
  }

  /** HTTP status of this error. */
  get status(): number {
    return ERROR_CODES[this.code].http;
  }
}

/**
 * The code of any thrown value: a {@link TallrecError}'s own; an error from the native addon
 * (which sets `code` to one of ours); an AbortSignal's abort ("aborted"); "internal" otherwise.
 */
export function codeOf(err: unknown): ErrorCode {
  const code = (err as { code?: unknown } | null)?.code;
  if (isErrorCode(code)) return code;
  const name = (err as { name?: unknown } | null)?.name;
  if (name === "AbortError") return "aborted";
  if (name === "TimeoutError") return "timeout";
  return "internal";
}

/** HTTP status for an error (500 for anything without a known code). */
export function httpStatusOf(err: unknown): number {
  return ERROR_CODES[codeOf(err)].http;
}

/** CLI exit status for an error. */
export function exitCodeOf(err: unknown): number {
  return ERROR_CODES[codeOf(err)].exit;
}
