import { describe, expect, it } from "vitest";

import { INSTRUCTIONS, parseInput, promptText, renderInput, renderPrompt } from "../src/engine/prompt.js";
import { hasRealTallrec, realTallrecRows, sampleRows, type TallrecRow } from "./helpers/data.js";

/** Each row renders from its parsed fields exactly as the row itself; returns how many had no liked items. */
function checkRows(domain: "movie" | "book", rows: readonly TallrecRow[]): number {
  let emptyLiked = 0;
  for (const row of rows) {
    expect(row.instruction).toBe(INSTRUCTIONS[domain]);
    const fields = parseInput(row.input);
    expect(fields, row.input).not.toBeNull();
    expect(fields!.domain).toBe(domain);
    expect(renderInput(fields!)).toBe(row.input);
    expect(promptText({ ...fields! })).toBe(renderPrompt(row));
    if (fields!.liked.length === 0) emptyLiked++;
  }
  return emptyLiked;
}

describe("TALLRec prompt", () => {
  it("is TALLRec's template byte for byte, noqa quirk included", () => {
    expect(renderPrompt({ instruction: "I", input: "X" })).toBe(
      "Below is an instruction that describes a task, paired with an input that provides further context. Write a response that appropriately completes the request.  # noqa: E501\n\n### Instruction:\nI\n\n### Input:\nX\n\n### Response:\n",
    );
    expect(renderPrompt({ instruction: "I", input: "" })).toBe(
      "Below is an instruction that describes a task. Write a response that appropriately completes the request.  # noqa: E501\n\n### Instruction:\nI\n\n### Response:\n",
    );
  });

  it("renders structured fields exactly as the sample's TALLRec rows (386 movie and book rows)", () => {
    let n = 0;
    let emptyLiked = 0;
    for (const domain of ["movie", "book"] as const) {
      emptyLiked += checkRows(domain, sampleRows(domain));
      n += sampleRows(domain).length;
    }
    expect(n).toBe(386);
    expect(emptyLiked).toBeGreaterThan(0);
  });

  it.skipIf(!hasRealTallrec)("renders structured fields exactly as every TALLRec test and valid row (6854 rows) (real data)", () => {
    let n = 0;
    let emptyLiked = 0;
    for (const domain of ["movie", "book"] as const) {
      for (const split of ["test", "valid"] as const) {
        emptyLiked += checkRows(domain, realTallrecRows(domain, split));
        n += realTallrecRows(domain, split).length;
      }
    }
    expect(n).toBe(6854);
    expect(emptyLiked).toBeGreaterThan(0);
  });

  it("renders movies quoted and books as title-by-author with the target quoted twice", () => {
    expect(renderInput({ domain: "movie", liked: ["A (1990)", "B, The (1991)"], disliked: [], target: "C (1992)" })).toBe(
      'User Preference: "A (1990)", "B, The (1991)"\nUser Unpreference: \nWhether the user will like the target movie "C (1992)"?',
    );
    expect(renderInput({ domain: "book", liked: [{ title: "Sula", author: "Toni Morrison" }], disliked: [{ title: "X", author: "Y" }], target: { title: "T", author: "A" } })).toBe(
      'User Preference: "Sula" written by Toni Morrison\nUser Unpreference: "X" written by Y\nWhether the user will like the target book ""T" written by A"?',
    );
  });

  it("parses a real movie row into its titles", () => {
    const row = sampleRows("movie")[0];
    const f = parseInput(row.input)!;
    expect(f.liked[0]).toBe("Paris, Texas (1984)");
    expect(f.liked).toHaveLength(9);
    expect(f.disliked).toEqual(["Kalifornia (1993)"]);
    expect(f.target).toBe("Perez Family, The (1995)");
    expect(parseInput("not a TALLRec input")).toBeNull();
  });
});
