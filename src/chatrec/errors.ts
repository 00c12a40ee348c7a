/**
 * Errors of the Chat-REC layer. Every one carries a stable `code` and the HTTP status it maps to,
 * so the REPL can print it as one line and the HTTP route can answer it without parsing messages.
 *
 * @module
 */

/** What went wrong, in a word. */
export type ChatRecErrorCode =
  | "unknown_user"
  | "unknown_item"
  | "unknown_session"
  | "bad_request"
  | "busy"
  | "no_model";

const STATUS: Record<ChatRecErrorCode, number> = {
  unknown_user: 404,
  unknown_item: 404,
  unknown_session: 404,
  bad_request: 400,
  busy: 409,
  no_model: 503,
};

/** An error a caller can show as it is: the message says what was wrong and what to do. */
export class ChatRecError extends Error {
  /** Stable machine-readable code. */
  readonly code: ChatRecErrorCode;
  /** HTTP status this error is answered with. */
  readonly status: number;

  constructor(code: ChatRecErrorCode, message: string) {
    super(message);
    this.name = "ChatRecError";
    this.code = code;
    this.status = STATUS[code];
  }
}
