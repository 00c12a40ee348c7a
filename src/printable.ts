/**
 * Names that come from files (tensor names, metadata keys, checkpoint entries) shown in messages:
 * control characters, ANSI escape sequences and invisible line or direction marks are escaped, so
 * that a hostile file cannot rewrite a terminal or forge log lines.
 */

// C0 controls (but tab), DEL, C1 controls, line/paragraph separators, bidi and zero-width marks
const UNPRINTABLE = /[\u0000-\u0008\u000a-\u001f\u007f-\u009f\u200b-\u200f\u2028-\u202e\u2066-\u2069\ufeff]/g;

/** `s` with unprintable characters written as `\xNN` / `\uNNNN`, cut to `max` characters. */
export function printable(s: string, max = 200): string {
  let out = String(s).replace(UNPRINTABLE, (c) => {
    const code = c.charCodeAt(0);
    return code < 0x100 ? `\\x${code.toString(16).padStart(2, "0")}` : `\\u${code.toString(16).padStart(4, "0")}`;
  });
  if (out.length > max) out = `${out.slice(0, max)}...(${s.length} characters)`;
  return out;
}

/** Like {@link printable}, but for text that may hold line breaks (an error message): keeps "\n". */
export function printableText(s: string): string {
  return String(s)
    .split("\n")
    .map((line) => printable(line, Number.MAX_SAFE_INTEGER))
    .join("\n");
}

/** True when `s` holds characters {@link printable} would escape. */
export function hasUnprintable(s: string): boolean {
  UNPRINTABLE.lastIndex = 0;
  const r = UNPRINTABLE.test(s);
  UNPRINTABLE.lastIndex = 0;
  return r;
}
