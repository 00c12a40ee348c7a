/**
 * Minimal RFC 4180 style CSV tokenizer: quoted fields (with `""` escapes and
 * embedded delimiters / newlines), LF or CRLF line ends, optional UTF-8 BOM.
 * Blank lines are skipped.
 *
 * @module
 */

import { DataFormatError, InvalidArgumentError } from "./errors.js";

/** One CSV record with the 1-based line number it starts on. */
export interface CsvRecord {
  line: number;
  fields: string[];
}

/**
 * Splits `text` into records.
 * @param file label used in error messages.
 * @throws DataFormatError on an unterminated quoted field or a stray quote.
 */
export function* readCsv(text: string, file: string, delimiter = ","): Generator<CsvRecord> {
  if (delimiter.length !== 1 || delimiter === '"' || delimiter === "\n" || delimiter === "\r") {
    throw new InvalidArgumentError(`invalid CSV delimiter ${JSON.stringify(delimiter)}`);
  }
  let pos = text.charCodeAt(0) === 0xfeff ? 1 : 0;
  let line = 1;
  const n = text.length;
  while (pos < n) {
    const start = line;
    const fields: string[] = [];
    let field = "";
    let blank = true;
    let ended = false;
    while (!ended) {
      if (pos >= n) {
        fields.push(field);
        break;
      }
      let ch = text[pos];
      if (ch === '"' && field === "") {
        blank = false;
        // Quoted field.
        pos++;
        for (;;) {
          if (pos >= n) throw new DataFormatError(file, start, `column ${fields.length + 1}`, "unterminated quoted field");
          ch = text[pos];
          if (ch === '"') {
            if (text[pos + 1] === '"') {
              field += '"';
              pos += 2;
              continue;
            }
            pos++;
            break;
          }
          if (ch === "\n") line++;
          field += ch;
          pos++;
        }
        ch = text[pos];
        if (pos < n && ch !== delimiter && ch !== "\n" && ch !== "\r") {
          throw new DataFormatError(file, line, `column ${fields.length + 1}`, "unexpected text after a closing quote");
        }
        continue;
      }
      if (ch === delimiter) {
        blank = false;
        fields.push(field);
        field = "";
        pos++;
      } else if (ch === "\n" || ch === "\r") {
        fields.push(field);
        pos += ch === "\r" && text[pos + 1] === "\n" ? 2 : 1;
        line++;
        ended = true;
      } else {
        if (ch === '"') throw new DataFormatError(file, line, `column ${fields.length + 1}`, "stray quote inside an unquoted field");
        blank = false;
        field += ch;
        pos++;
      }
    }
    if (blank && fields.length === 1 && fields[0] === "") continue;
    yield { line: start, fields };
  }
}
