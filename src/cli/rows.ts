/**
 * From input rows (CSV, JSONL, JSON) to prompts and labels: which columns hold what.
 *
 * Two layouts are understood:
 * - TALLRec rows: an instruction column and an input column (`instruction`, `input`);
 * - structured rows: liked, disliked and target columns (lists in CSV are separated by `--sep`,
 *   JSON arrays are taken as they are) and a domain (`--domain`, or a domain column).
 */
import type { ScoreInput } from "../engine/engine.js";
import { isDomain, type Domain } from "../engine/prompt.js";
import { TallrecError } from "../errors.js";
import { CliError, EXIT, splitList } from "./common.js";

export interface ColumnOptions {
  instructionCol: string;
  inputCol: string;
  likedCol: string;
  dislikedCol: string;
  targetCol: string;
  domain: Domain;
  domainCol?: string;
  sep: string;
  userCol?: string;
}

export const DEFAULT_COLUMNS: ColumnOptions = {
  instructionCol: "instruction",
  inputCol: "input",
  likedCol: "liked",
  dislikedCol: "disliked",
  targetCol: "target",
  domain: "movie",
  sep: ";",
};

export type RowToPrompt = (values: Record<string, unknown>) => ScoreInput;

function field(values: Record<string, unknown>, col: string): unknown {
  if (!(col in values)) throw new Error(`missing column "${col}"`);
  return values[col];
}

function text(values: Record<string, unknown>, col: string): string {
  const v = field(values, col);
  if (typeof v !== "string") throw new Error(`column "${col}" must be text, found ${v === null ? "null" : typeof v}`);
  return v;
}

function list(values: Record<string, unknown>, col: string, sep: string): string[] {
  const v = col in values ? values[col] : "";
  if (v === null || v === undefined) return [];
  if (Array.isArray(v)) {
    v.forEach((x, i) => {
      if (typeof x !== "string") throw new Error(`column "${col}" item ${i} must be text`);
    });
    return v as string[];
  }
  if (typeof v !== "string") throw new Error(`column "${col}" must be text or a list`);
  return splitList(v, sep);
}

/**
 * Chooses the layout from the columns present and returns the row converter; a row that does not
 * fit throws an Error naming the column.
 */
export function promptReader(columns: readonly string[], o: ColumnOptions): { mode: "instruction" | "structured"; toPrompt: RowToPrompt } {
  const has = (c: string) => columns.includes(c);
  if (has(o.instructionCol) || has(o.inputCol)) {
    return { mode: "instruction", toPrompt: (v) => ({ instruction: text(v, o.instructionCol), input: text(v, o.inputCol) }) };
  }
  if (has(o.targetCol)) {
    return {
      mode: "structured",
      toPrompt: (v) => {
        let domain = o.domain;
        if (o.domainCol) {
          const d = text(v, o.domainCol);
          if (!isDomain(d)) throw new TallrecError("invalid_data", `column "${o.domainCol}" must be "movie" or "book", found ${JSON.stringify(d)}`);
          domain = d;
        }
        const target = text(v, o.targetCol);
        if (target.trim() === "") throw new Error(`column "${o.targetCol}" is empty`);
        return { domain, liked: list(v, o.likedCol, o.sep), disliked: list(v, o.dislikedCol, o.sep), target };
      },
    };
  }
  throw new CliError(
    `cannot find the prompt columns: expected "${o.instructionCol}" and "${o.inputCol}", or "${o.targetCol}" (with "${o.likedCol}", "${o.dislikedCol}"); found ${columns.map((c) => JSON.stringify(c)).join(", ") || "no columns"}`,
    EXIT.USAGE,
  );
}

/** Reads a 0/1 label: "Yes."/"No." (TALLRec), yes/no, true/false, 1/0. */
export function parseLabel(v: unknown, col: string): 0 | 1 {
  if (v === true || v === 1) return 1;
  if (v === false || v === 0) return 0;
  if (typeof v === "string") {
    const s = v.trim().toLowerCase().replace(/\.$/, "");
    if (s === "yes" || s === "1" || s === "true") return 1;
    if (s === "no" || s === "0" || s === "false") return 0;
  }
  throw new Error(`column "${col}" must be a label (Yes./No., yes/no, 1/0, true/false), found ${JSON.stringify(v)}`);
}
