/**
 * Atomic file writes: a temporary file renamed over the target once complete. It lives in gguf/
 * because the GGUF writer and the converters (`convert/`, which may import gguf/) both use it.
 *
 * @module
 */
import { open, rename, rm } from "node:fs/promises";

/**
 * Writes `path` atomically: the chunks go to `path + ".tmp-<pid>"`, which is renamed to `path`
 * once complete and synced; on failure (of a write, or of the chunks' iteration) the temporary
 * file is removed and `path` is untouched.
 */
export async function writeFileAtomic(path: string, chunks: Iterable<Uint8Array> | AsyncIterable<Uint8Array>): Promise<void> {
  const tmp = `${path}.tmp-${process.pid}`;
  const fh = await open(tmp, "w");
  let ok = false;
  try {
    for await (const c of chunks) await fh.write(c);
    await fh.sync();
    ok = true;
  } finally {
    await fh.close();
    if (!ok) await rm(tmp, { force: true });
  }
  await rename(tmp, path);
}
