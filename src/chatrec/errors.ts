/**
 * Errors of the Chat-REC layer: {@link TallrecError}s with a code of the library's one vocabulary
 * (src/errors.ts), so the REPL can print one as a line and the HTTP routes answer it with the
 * status `ERROR_CODES` gives its code (`httpStatusOf`), without parsing messages.
 *
 * @module
 */
import { TallrecError, type ErrorCode, type TallrecErrorOptions } from "../errors.js";

/**
 * The codes Chat-REC raises: unknown_user, unknown_item, unknown_session (404), invalid_input (a
 * bad request, option or file: 400), busy (a session mid-turn elsewhere: 409), unavailable (the
 * model is still loading or failed: 503). An error of another layer that Chat-REC passes on with
 * its own message keeps that error's code (e.g. invalid_data for a malformed row).
 */
export type ChatRecErrorCode = "unknown_user" | "unknown_item" | "unknown_session" | "invalid_input" | "busy" | "unavailable";

/** An error a caller can show as it is: the message says what was wrong and what to do. */
export class ChatRecError extends TallrecError {
  constructor(code: ChatRecErrorCode | ErrorCode, message: string, options?: TallrecErrorOptions) {
    super(code, message, options);
  }
}
