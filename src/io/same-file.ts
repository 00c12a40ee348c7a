/**
 * Is an output file one of the inputs? Compared by identity (device and inode, after following
 * symbolic links), not by path text: `./in.csv`, `in.csv`, a symbolic link and a hard link to it
 * are all the same file, and writing to any of them would destroy the input while it is read.
 */
import { readdirSync, statSync, type BigIntStats } from "node:fs";
import { join } from "node:path";

function identity(path: string): BigIntStats | null {
  try {
    return statSync(path, { bigint: true });
  } catch {
    return null; // a missing file is nobody's input
  }
}

/** True when `a` and `b` both exist and are the same file (same device and inode). */
export function isSameFile(a: string, b: string): boolean {
  const x = identity(a);
  const y = identity(b);
  return x !== null && y !== null && x.dev === y.dev && x.ino === y.ino;
}

/**
 * The first of `inputs` that `output` is the same file as, or undefined. A directory among the
 * inputs stands for the files directly inside it (a checkpoint folder).
 */
export function sameFileAs(output: string, inputs: readonly string[]): string | undefined {
  const out = identity(output);
  if (out === null) return undefined;
  for (const input of inputs) {
    const st = identity(input);
    if (st === null) continue;
    if (st.isDirectory()) {
      if (out.dev === st.dev && out.ino === st.ino) return input;
      let names: string[];
      try {
        names = readdirSync(input);
      } catch {
        continue;
      }
      for (const n of names) if (isSameFile(output, join(input, n))) return join(input, n);
    } else if (out.dev === st.dev && out.ino === st.ino) return input;
  }
  return undefined;
}
