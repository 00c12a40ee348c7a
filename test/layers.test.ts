/**
 * What may import what (the README's "Where things are"): the folders of src/ form layers, each
 * importing only from the layers below it, and no module imports itself back through a cycle.
 * Read from the source files, so a new import that breaks the layering fails here.
 */
import { readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";

import { describe, expect, it } from "vitest";

const SRC = resolve(dirname(fileURLToPath(import.meta.url)), "..", "src");

/** Each part of src/ (a folder, or a top-level file) and the parts it may import. */
const MAY_IMPORT: Record<string, readonly string[]> = {
  errors: [],
  printable: [],
  gguf: ["errors", "printable"],
  io: ["errors", "printable"],
  engine: ["errors", "printable", "gguf"],
  recsys: ["errors", "printable", "io"],
  convert: ["errors", "printable", "gguf", "engine"],
  synth: ["errors", "printable", "gguf", "convert"],
  eval: ["errors", "printable", "engine"],
  distributed: ["errors", "printable", "engine", "io"],
  plots: ["errors", "printable", "recsys", "eval"],
  chatrec: ["errors", "printable", "engine", "recsys", "io", "eval"],
  server: ["errors", "printable", "gguf", "io", "engine", "chatrec", "distributed", "plots", "recsys", "eval"],
  cli: ["errors", "printable", "gguf", "io", "engine", "recsys", "convert", "synth", "eval", "distributed", "plots", "chatrec", "server"],
  index: ["errors", "engine", "convert", "chatrec", "recsys", "eval"],
};

function sourceFiles(dir: string, out: string[] = []): string[] {
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) sourceFiles(p, out);
    else if (name.endsWith(".ts")) out.push(p);
  }
  return out;
}

/** The part of src/ a file belongs to: its top folder, or its name for a top-level file. */
function partOf(file: string): string {
  const rel = relative(SRC, file).split(/[\\/]/);
  return rel.length > 1 ? rel[0] : rel[0].replace(/\.ts$/, "");
}

/** Relative imports of a file (static and dynamic), resolved to .ts paths. */
function importsOf(file: string): string[] {
  const text = readFileSync(file, "utf8");
  const specs = [...text.matchAll(/(?:from\s+|import\(\s*)["'](\.{1,2}\/[^"']+)["']/g)].map((m) => m[1]);
  return specs.map((s) => resolve(dirname(file), s).replace(/\.js$/, ".ts"));
}

const files = sourceFiles(SRC);
const graph = new Map(files.map((f) => [f, importsOf(f)]));

describe("layers of src/", () => {
  it("every part of src/ is in the table", () => {
    const parts = [...new Set(files.map(partOf))].sort();
    expect(parts).toEqual(Object.keys(MAY_IMPORT).sort());
  });

  it("each part imports only from the parts below it", () => {
    const wrong: string[] = [];
    for (const [file, deps] of graph) {
      const from = partOf(file);
      for (const dep of deps) {
        const to = partOf(dep);
        if (to !== from && !MAY_IMPORT[from]?.includes(to)) wrong.push(`${relative(SRC, file)} imports ${relative(SRC, dep)} (${from} may import: ${MAY_IMPORT[from]?.join(", ") || "nothing"})`);
      }
    }
    expect(wrong).toEqual([]);
  });

  it("the table itself has no cycle, and no module imports itself back", () => {
    // the parts' table: a depth-first walk that never comes back to a part on its path
    const walk = (part: string, path: string[]): void => {
      expect(path, `cycle ${[...path, part].join(" -> ")}`).not.toContain(part);
      for (const next of MAY_IMPORT[part] ?? []) walk(next, [...path, part]);
    };
    for (const part of Object.keys(MAY_IMPORT)) walk(part, []);
    // the modules: iterative DFS colouring (grey = on the current path)
    const state = new Map<string, "grey" | "black">();
    const cycles: string[] = [];
    const visit = (f: string, path: string[]) => {
      if (state.get(f) === "black") return;
      if (state.get(f) === "grey") {
        cycles.push([...path.slice(path.indexOf(f)), f].map((p) => relative(SRC, p)).join(" -> "));
        return;
      }
      state.set(f, "grey");
      for (const d of graph.get(f) ?? []) if (graph.has(d)) visit(d, [...path, f]);
      state.set(f, "black");
    };
    for (const f of files) visit(f, []);
    expect(cycles).toEqual([]);
  });

  it("the checker sees a wrong import (it is not vacuous)", () => {
    // engine importing the server would break the layering
    expect(MAY_IMPORT.engine).not.toContain("server");
    const engineFiles = files.filter((f) => partOf(f) === "engine");
    expect(engineFiles.length).toBeGreaterThan(5);
    expect(graph.get(join(SRC, "engine", "engine.ts"))).toContain(join(SRC, "engine", "scheduler.ts"));
  });
});
